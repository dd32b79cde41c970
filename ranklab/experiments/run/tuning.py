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
RULES = {
    "mean": ("per method: the rate with the highest mean best-validation score over its task sets and the "
             "tuning seeds (never reported); ties go to the smaller rate; test never evaluated"),
    "median_veto": ("per method: a rate scores the median over the tuning seeds (never reported) of each seed's "
                    "best-validation score (mean over its task sets); a rate at which any tuning run is at chance "
                    "on a validation task (MCC below 0.1 at its best checkpoint) is vetoed; the highest score "
                    "among the rest wins, ties go to the smaller rate; test never evaluated"),
    "median_veto_interior": ("per method (and task, where each task's rate is chosen on its own validation split): "
                             "a rate scores the median over the tuning seeds (never reported) of each seed's "
                             "best-validation score; a rate at which any tuning run is at chance on a validation "
                             "task (MCC below 0.1 at its best checkpoint) is vetoed; the highest score among the "
                             "rest wins; ties go to the higher mean over the tuning seeds, then to the tied rate "
                             "nearest the log-centre of the tied rates, then to the smaller; a winner on the edge "
                             "of the rates searched adds the rate 2x beyond it (same seeds and rule) until it is "
                             "interior or the rate beyond is vetoed; test never evaluated"),
}
RULE = RULES["mean"]


def run_outcome(record: dict[str, Any]) -> dict[str, Any]:
    """What the search keeps of one tuning run: its best validation score and step, its length and
    the lowest validation MCC over its classification tasks at the best checkpoint (None: no MCC)."""
    best = record.get("best") or {}
    mccs = [m["mcc"] for m in (best.get("metrics") or {}).values() if "mcc" in m]
    return {"score": best.get("score"), "best_step": best.get("step"), "steps": record.get("steps"),
            "min_mcc": min(mccs) if mccs else None}


def run_curve(run: RunSpec, record: dict[str, Any]) -> dict[str, Any]:
    """A search run's validation curve (the search figure draws it)."""
    return {"tune_key": run.tune_key, "lr": run.config.lr, "tasks": record["tasks"],
            "steps": [e["step"] for e in record["evals"]], "validation": [e["score"] for e in record["evals"]]}


def choose_learning_rates(search: list[RunSpec], results: str | Path, rule: str = "mean",
                          known: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Scores of every (tune_key, rate) of a finished search and the chosen rate per key (``rule``:
    a key of RULES).  ``known``: outcomes (``run_outcome``) of search runs finished elsewhere, by
    run_id (a committed summary's search), used where ``results`` lacks the run."""
    from ..results.claims import CHANCE_MCC

    if rule not in RULES:
        raise ValueError(f"unknown search rule {rule!r}; valid rules: {', '.join(RULES)}")
    known = known or {}
    per_seed: dict[str, dict[float, dict[int, list[float]]]] = {}
    outcomes, curves, labels, vetoed = {}, {}, {}, {}
    for run in search:
        labels.setdefault(run.tune_key, run.label)
        path = Path(results) / run.run_id / RECORD_NAME
        if path.is_file() or run.run_id not in known:
            record = load_record(path)
            outcome = run_outcome(record)
            curves[run.run_id] = run_curve(run, record)
        else:
            outcome = known[run.run_id]
        outcomes[run.run_id] = outcome
        per_seed.setdefault(run.tune_key, {}).setdefault(run.config.lr, {}).setdefault(run.seed, []).append(
            outcome["score"])
        if rule.startswith("median_veto") and outcome["min_mcc"] is not None and outcome["min_mcc"] < CHANCE_MCC:
            vetoed.setdefault(run.tune_key, {}).setdefault(f"{run.config.lr:g}", []).append(run.run_id)
    statistic = np.median if rule.startswith("median") else np.mean
    seed_scores = {key: {lr: [float(np.mean(v)) for v in seeds.values()] for lr, seeds in by_lr.items()}
                   for key, by_lr in per_seed.items()}
    table = {key: {f"{lr:g}": float(statistic(by_lr[lr])) for lr in sorted(by_lr)} for key, by_lr in seed_scores.items()}
    chosen = {}
    for key, by_lr in per_seed.items():
        allowed = [lr for lr in sorted(by_lr) if f"{lr:g}" not in vetoed.get(key, {})]
        if not allowed:
            raise ValueError(f"every rate of the search for {labels[key]} ({key}) was vetoed: a tuning run collapsed "
                             f"at each of {sorted(by_lr)} ({vetoed[key]}); widen the grid towards smaller rates")
        if rule == "median_veto_interior":
            chosen[key] = _interior_winner(allowed, table[key], seed_scores[key])
        else:
            chosen[key] = max(allowed, key=lambda lr: (table[key][f"{lr:g}"], -lr))
    grid = sorted({run.config.lr for run in search})
    seeds = sorted({run.seed for run in search})
    grids = {key: sorted(by_lr) for key, by_lr in per_seed.items()}
    return {"grid": grid, "grids": grids, "seeds": seeds, "rule": RULES[rule], "rule_name": rule, "scores": table,
            "chosen": chosen, "vetoed": vetoed, "labels": labels, "curves": curves, "runs": outcomes}


def _interior_winner(allowed: list[float], scores: dict[str, float], seed_scores: dict[float, list[float]]) -> float:
    """The highest-scoring rate; a tie goes to the higher mean over seeds, then to the tied rate
    nearest the log-centre of the tied rates, then to the smaller (never towards an edge by rule)."""
    best = max(scores[f"{lr:g}"] for lr in allowed)
    tied = [lr for lr in allowed if scores[f"{lr:g}"] >= best - 1e-12]
    top_mean = max(np.mean(seed_scores[lr]) for lr in tied)
    tied = [lr for lr in tied if np.mean(seed_scores[lr]) >= top_mean - 1e-12]
    centre = float(np.mean(np.log(tied)))
    return min(tied, key=lambda lr: (round(abs(np.log(lr) - centre), 9), lr))


def extensions(record: dict[str, Any], step: float | None, base: tuple[float, ...],
               max_extensions: int) -> dict[str, float]:
    """The rate each tune key adds to its search: ``step`` x beyond the edge its winner sits on (an
    edge of the rates searched for that key, vetoed ones included), at most ``max_extensions``
    rates beyond each edge of ``base``.  Empty when every winner is interior (or at the limit)."""
    if step is None:
        return {}
    more = {}
    for key, lr in record["chosen"].items():
        rates = record["grids"][key]
        if lr == rates[-1] and lr * step <= max(base) * step ** max_extensions * (1 + 1e-9):
            more[key] = _round_rate(lr * step)
        elif lr == rates[0] and lr / step >= min(base) / step ** max_extensions * (1 - 1e-9):
            more[key] = _round_rate(lr / step)
    return more


def edge_winners(record: dict[str, Any]) -> dict[str, float]:
    """Tune keys whose chosen rate is still on an edge of the rates searched (the extension limit)."""
    return {key: lr for key, lr in record.get("chosen", {}).items()
            if key in record.get("grids", {}) and lr in (record["grids"][key][0], record["grids"][key][-1])
            and len(record["grids"][key]) > 1}


def _round_rate(lr: float) -> float:
    """A rate to 3 significant digits (2.5e-4, 1.25e-4: the same float in every run id)."""
    return float(f"{lr:.3g}")


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
