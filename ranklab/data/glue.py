"""GLUE through ``datasets.load_dataset`` (hub), plus GLUE-schema fixtures for offline tests.

Split convention (GLUE test labels are hidden):
  test       = GLUE validation (``validation_matched`` for MNLI)
  validation = a fixed seeded held-out slice of GLUE train (10%, at most 5,000 rows)
  train      = the rest of GLUE train
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from datasets import ClassLabel, DatasetDict, Value, load_dataset

from ..atomic import write_text
from ..hub import hub_error, hub_reachable, offline_mode
from .cache import cache_root
from .tasks import TaskSpec, available_tasks, get_task

GLUE_HUB_ID = "nyu-mll/glue"  # canonical id of the "glue" dataset on the hub
SPLIT_SEED = 1234  # fixed: the held-out validation slice never depends on the run seed
HELD_OUT_FRACTION = 0.1
HELD_OUT_MAX = 5000


def _glue_eval_split(spec: TaskSpec) -> str:
    return "validation_matched" if spec.name == "mnli" else "validation"


def label_feature(spec: TaskSpec) -> ClassLabel | Value:
    return Value("float32") if spec.is_regression else ClassLabel(names=list(spec.label_names))


def standardize(dataset_dict: DatasetDict, spec: TaskSpec) -> DatasetDict:
    """Keep the text fields and ``label``; labels become ClassLabel (int) or float32 (regression)."""
    label_type = label_feature(spec)
    out = {}
    for split, ds in dataset_dict.items():
        missing = [c for c in (*spec.text_fields, "label") if c not in ds.column_names]
        if missing:
            raise ValueError(f"task {spec.name!r} split {split!r} lacks columns {missing}; has {ds.column_names}")
        ds = ds.select_columns([*spec.text_fields, "label"])
        out[split] = ds if ds.features["label"] == label_type else ds.cast_column("label", label_type)
    return DatasetDict(out)


def local_content_key(data_dir: str | os.PathLike) -> str:
    """A hash of every file's path and bytes under ``data_dir``: the datasets cache of a local folder
    is keyed by it, so a rewritten folder, or another folder of the same name, is never read stale."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data_dir {str(root)!r} is not a folder")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _load_raw(spec: TaskSpec, cache_dir: str | None, data_dir: str | os.PathLike | None) -> DatasetDict:
    if data_dir is not None:  # a local folder in the hub layout (README configs); same call as the hub
        local_cache = cache_root(cache_dir) / "glue-local" / local_content_key(data_dir)
        return load_dataset(str(data_dir), spec.name, cache_dir=str(local_cache))
    if not offline_mode() and not hub_reachable():
        raise hub_error(f"GLUE task {spec.name!r}")
    try:
        return load_dataset(GLUE_HUB_ID, spec.name, cache_dir=cache_dir)
    except (ConnectionError, OSError) as error:  # includes offline mode without a local copy
        raise hub_error(f"GLUE task {spec.name!r}", error) from error


def load_glue(name: str | TaskSpec, *, cache_dir: str | None = None,
              data_dir: str | os.PathLike | None = None) -> DatasetDict:
    """A GLUE task as train / validation (held out of train) / test (GLUE validation)."""
    spec = get_task(name)
    if spec.source != "glue":
        raise ValueError(f"{spec.name!r} is not a GLUE task; GLUE tasks: {', '.join(available_tasks('glue'))}")
    raw = _load_raw(spec, cache_dir, data_dir)
    eval_split = _glue_eval_split(spec)
    if "train" not in raw or eval_split not in raw:
        raise ValueError(f"GLUE {spec.name!r} needs splits 'train' and {eval_split!r}; found {list(raw)}")
    train = raw["train"]
    n_val = min(max(int(round(HELD_OUT_FRACTION * len(train))), 1), HELD_OUT_MAX)
    parts = train.train_test_split(test_size=n_val, shuffle=True, seed=SPLIT_SEED)
    splits = DatasetDict(train=parts["train"], validation=parts["test"], test=raw[eval_split])
    return standardize(splits, spec)


def _fixture_rows(spec: TaskSpec, n: int, rng: np.random.Generator, hidden: bool) -> list[dict]:
    words = ["good", "bad", "film", "plot", "great", "awful", "the", "a", "is", "was", "very", "not"]
    rows = []
    for i in range(n):
        row = {f: " ".join(rng.choice(words, size=int(rng.integers(3, 9)))) for f in spec.text_fields}
        if spec.is_regression:
            row["label"] = -1.0 if hidden else round(float(rng.uniform(0, 5)), 3)
        else:
            row["label"] = -1 if hidden else int(rng.integers(spec.num_labels))
        row["idx"] = i
        rows.append(row)
    return rows


def write_glue_fixture(folder: str | os.PathLike, names: list[str] | None = None, rows: int = 20,
                       seed: int = 0) -> Path:
    """Write small synthetic GLUE-schema files in the hub's layout (README configs + one folder per task).

    ``load_task(name, data_dir=folder)`` then goes through ``datasets.load_dataset`` like the hub does.
    """
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    configs = []
    for name in names or available_tasks("glue"):
        spec = get_task(name)
        evals = ["validation_matched", "validation_mismatched"] if spec.name == "mnli" else ["validation"]
        tests = ["test_matched", "test_mismatched"] if spec.name == "mnli" else ["test"]
        entries = []
        for split in ["train", *evals, *tests]:
            path = folder / spec.name / f"{split}.jsonl"
            n = rows if split == "train" else max(rows // 2, 2)
            text = "".join(json.dumps(r) + "\n" for r in _fixture_rows(spec, n, rng, split in tests))
            write_text(path, text)
            entries.append(f"  - split: {split}\n    path: {spec.name}/{split}.jsonl\n")
        configs.append(f"- config_name: {spec.name}\n  data_files:\n" + "".join(entries))
    write_text(folder / "README.md", "---\nconfigs:\n" + "".join(configs) + "---\nGLUE-schema fixture\n")
    return folder
