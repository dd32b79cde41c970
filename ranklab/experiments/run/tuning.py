"""The learning-rate search: one grid for every method, scored on validation, on seeds never reported.

Rule: for each ``tune_key`` (a method and its options, single- or multi-task), the score of a rate
is the mean over its task sets and tuning seeds of the search run's best validation score (the
mean of the tasks' main metrics); the highest score wins, a tie goes to the smaller rate.  Test
splits are never evaluated in the search.  A tune key is built from a method_id
(``single:lora_r8``); the record names each key's display label (``labels``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...train.records import RECORD_NAME, load_record
from ..protocol.recipes import RunSpec
from ..results.summary_format import read_summary, upgrade_tuning

TUNING_NAME = "tuning.json"
RULE = ("per method: the rate with the highest mean best-validation score over its task sets and the "
        "tuning seeds (never reported); ties go to the smaller rate; test never evaluated")


def choose_learning_rates(search: list[RunSpec], results: str | Path) -> dict[str, Any]:
    """Scores of every (tune_key, rate) of a finished search and the chosen rate per key."""
    scores: dict[str, dict[float, list[float]]] = {}
    curves, labels = {}, {}
    for run in search:
        labels.setdefault(run.tune_key, run.label)
        record = load_record(Path(results) / run.run_id / RECORD_NAME)
        scores.setdefault(run.tune_key, {}).setdefault(run.config.lr, []).append(record["best"]["score"])
        curves[run.run_id] = {"tune_key": run.tune_key, "lr": run.config.lr, "tasks": record["tasks"],
                              "steps": [e["step"] for e in record["evals"]],
                              "validation": [e["score"] for e in record["evals"]]}
    table = {key: {f"{lr:g}": float(np.mean(values)) for lr, values in sorted(by_lr.items())}
             for key, by_lr in scores.items()}
    chosen = {key: max(sorted(by_lr), key=lambda lr: (np.mean(by_lr[lr]), -lr)) for key, by_lr in scores.items()}
    grid = sorted({run.config.lr for run in search})
    seeds = sorted({run.seed for run in search})
    return {"grid": grid, "seeds": seeds, "rule": RULE, "scores": table, "chosen": chosen, "labels": labels,
            "curves": curves}


def read_tuning(path: str | Path) -> dict[str, Any]:
    """A search record (``tuning.json``) with the current tune keys (one of format 2 upgraded)."""
    return upgrade_tuning(json.loads(Path(path).read_text()))


def search_from_summary(path: str | Path | None, scale: str) -> dict[str, Any] | None:
    """The learning-rate search of ``scale`` as recorded in a results summary (None: no such record)."""
    try:
        summary = read_summary(path) if path is not None else {}
    except (OSError, ValueError, KeyError):
        return None
    tuning = summary.get("tuning") if summary.get("scale") == scale else None
    return tuning if tuning and tuning.get("chosen") else None


def learning_rates_from_summary(path: str | Path, scale: str) -> dict[str, float] | None:
    """The rates chosen by the full protocol, as recorded in a results summary (for ``--quick``)."""
    tuning = search_from_summary(path, scale)
    return None if tuning is None else {key: float(lr) for key, lr in tuning["chosen"].items()}
