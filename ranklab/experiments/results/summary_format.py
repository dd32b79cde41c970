"""The results summary's format: its version, the compact per-example predictions (``encode``,
``decode``), reading a summary file, and upgrading older ones.

Format 3 joins runs on their stable ids: every run carries its ``method_id`` (the method entry of
its recipe, ``protocol.spec``) beside its display ``label``, its ``run_id`` and ``tune_key`` are
built from the method_id, and the search record names each tune key's label (``tuning.labels``).
Format 2 named runs, run folders and tune keys by their labels; ``upgrade_summary`` rewrites such a
summary (and ``upgrade_tuning`` such a search record) into format 3, mapping each label to its
method_id through the recipes' label tables, so summaries and results folders of either format
are read alike.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..protocol.paper_recipes import MNLI_INIT, MOR_AXIS_LABELS, PAPER_LABELS
from ..protocol.recipes import LABELS

SUMMARY_FORMAT = 3
_MNLI_LABEL = " (MNLI, init)"  # format 2's label of a run that only trains the MNLI adapter others start from
_OLD_TUNING_ID = re.compile(r"tuning/(?P<recipe>[^/]+)/(?P<slug>[a-z0-9-]+)__(?P<rest>.+__s\d+__lr.+)")


# --- compact per-example predictions --------------------------------------------------------------
def encode(values: Sequence[float | int], regression: bool) -> str | list[float]:
    """Class ids 0-9 as one digit string ("-" for -1: a causal LM's completion that is no label's);
    regression values as a list rounded to 4 decimals."""
    if regression:
        return [round(float(v), 4) for v in values]
    values = [int(v) for v in values]
    if values and (min(values) < -1 or max(values) > 9):
        raise ValueError("class ids outside -1..9 cannot be encoded as digits")
    return "".join("-" if v == -1 else str(v) for v in values)


def decode(data: str | list) -> np.ndarray:
    if isinstance(data, str):
        return np.array([-1 if c == "-" else int(c) for c in data])
    return np.asarray(data, dtype=float)


# --- older formats -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _ids_by_label() -> dict[str, str]:
    ids: dict[str, str] = {}
    for method_id, label in [*LABELS.items(), *PAPER_LABELS.items(), *MOR_AXIS_LABELS.items()]:
        if ids.setdefault(label, method_id) != method_id:
            raise ValueError(f"label {label!r} names two method entries: {ids[label]!r} and {method_id!r}")
    return ids


def method_id_of(label: str) -> str:
    """The method_id of a format-2 run label (one the recipes no longer declare: the label in lower case,
    other characters as _)."""
    if label.endswith(_MNLI_LABEL):
        return method_id_of(label[:-len(_MNLI_LABEL)]) + MNLI_INIT
    known = _ids_by_label().get(label)
    return known or "m_" + re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _old_slug(label: str) -> str:
    """Format 2's run-folder name of a label."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _tune_key(key: str) -> str:
    """A format-2 tune key (``single:LoRA r=8``) as format 3 names it (``single:lora_r8``)."""
    prefix, label = key.split(":", 1)
    return f"{prefix}:{method_id_of(label)}"


def upgrade_tuning(tuning: dict[str, Any] | None) -> dict[str, Any] | None:
    """A learning-rate search record (``tuning.json``, or a summary's ``tuning``) with format 3's tune
    keys and run ids; one that already has them (its ``labels``) is returned as it is."""
    if not tuning or "labels" in tuning:
        return tuning
    labels = {_tune_key(key): key.split(":", 1)[1] for key in tuning.get("scores", {})}
    slugs = {_old_slug(label): method_id_of(label) for label in set(labels.values()) | set(_ids_by_label())}
    out: dict[str, Any] = {}
    for name, value in tuning.items():
        if name in ("scores", "chosen"):
            value = {_tune_key(key): v for key, v in value.items()}
        elif name == "curves":
            value = {_tuning_run_id(run_id, slugs): {**curve, "tune_key": _tune_key(curve["tune_key"])}
                     for run_id, curve in value.items()}
        out[name] = value
        if name == "chosen":
            out["labels"] = labels
    out.setdefault("labels", labels)
    return out


def _tuning_run_id(run_id: str, slugs: dict[str, str]) -> str:
    found = _OLD_TUNING_ID.fullmatch(run_id)
    if found is None or found["slug"] not in slugs:
        return run_id
    return f"tuning/{found['recipe']}/{slugs[found['slug']]}__{found['rest']}"


def _upgrade_run(run: dict[str, Any]) -> dict[str, Any]:
    method_id = method_id_of(run["label"])
    out: dict[str, Any] = {}
    for name, value in run.items():
        if name == "run_id":
            value = f"{run['recipe']}/{method_id}__{'+'.join(run['tasks'])}__s{run['seed']}"
        elif name == "label":
            out["method_id"] = method_id
        elif name == "tune_key" and value:
            value = _tune_key(value)
        out[name] = value
    return out


def upgrade_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` in the current format (a format-2 summary rewritten, see the module docstring);
    a summary of another format is refused with what to do."""
    found = summary.get("format")
    if found == SUMMARY_FORMAT:
        return summary
    if found != 2:
        raise ValueError(f"a results summary of format {found} (this ranklab reads {SUMMARY_FORMAT} and 2); "
                         f"run `ranklab reproduce --scale {summary.get('scale', 'embedded')}` to rebuild it")
    out = dict(summary, format=SUMMARY_FORMAT)
    out["tuning"] = upgrade_tuning(summary.get("tuning"))
    out["task_embedding_study"] = {
        name: {"method_id": method_id_of(study["label"]), **study}
        for name, study in (summary.get("task_embedding_study") or {}).items()}
    out["runs"] = [_upgrade_run(run) for run in summary["runs"]]
    return out


def read_summary(path: str | Path) -> dict[str, Any]:
    """The results summary in ``path``, in the current format."""
    return upgrade_summary(json.loads(Path(path).read_text()))
