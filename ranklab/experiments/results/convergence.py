"""The convergence check (issue 32): did the plateau rule stop runs that had finished learning?

A ``continuation`` run is a reported run's twin (same method, task, seed, rate) trained with no
stopping rule to the cap.  Replaying the plateau rule on its validation curve (``train.plateau``)
gives the step where the reported run stopped; what the best validation score gained after that,
against one standard error of that score (sqrt(p (1 - p) / n) on the n validation rows), is the
check, and it can fail.  The test score at the continued best checkpoint is set beside the reported
run's (the reported runs themselves are never touched).
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ...train.plateau import plateau_stop
from ..protocol.recipes import get_scale

Summary = dict[str, Any]
CHECK_TEXT = (
    "Convergence check (declared before its runs): seed {seed} of every method on each task trained again at its "
    "chosen rate with no stopping rule, to the {cap:,}-step cap. The plateau rule replayed on that curve gives the "
    "reported stop; converged = the best validation score after the stop gains less than one validation standard "
    "error (SE = sqrt(p (1 - p) / n), p the best score at the stop, n the validation rows) over the best at the stop. "
    "Test: the continued run's test score (at its best validation checkpoint over the whole run) minus the reported "
    "run's. 'same curve' says whether the continued run's evaluations up to the stop equal the reported run's (the "
    "same training, replayed).")


def _mean_score(metrics: dict[str, Any], main: dict[str, str]) -> float:
    return 100 * sum(metrics[t][m] for t, m in main.items()) / len(main)


def check_run(run: dict[str, Any], patience: int, min_delta: float,
              reported: dict[str, Any] | None) -> dict[str, Any]:
    """The check of one continuation run (scores x 100)."""
    evals, start = run["evals"], run.get("selectable_from", 0)
    stop = plateau_stop(evals, patience, min_delta, start)
    stop = len(evals) - 1 if stop is None else stop
    at_stop = max(e["score"] for e in evals[:stop + 1] if e["step"] >= start)
    after = max(e["score"] for e in evals if e["step"] >= start)
    n = sum((run.get("validation_sizes") or {}).values()) or None
    se = 100 * math.sqrt(at_stop * (1 - at_stop) / n) if n else float("nan")
    row = {"method": run["label"], "task": "+".join(run["tasks"]), "seed": run["seed"],
           "stop (replayed)": evals[stop]["step"], "steps run": run["steps"],
           "best val at stop": round(100 * at_stop, 2), "best val to the cap": round(100 * after, 2),
           "gain": round(100 * (after - at_stop), 2), "1 SE": round(se, 2),
           "converged": "yes" if 100 * (after - at_stop) < se else "no"}
    if reported is not None:
        mine = [(e["step"], round(e["score"], 5)) for e in evals[:stop + 1]]
        theirs = [(e["step"], round(e["score"], 5)) for e in reported["evals"]]
        row["reported stop"] = reported["steps"]
        row["same curve"] = "yes" if mine == theirs else "no"
        ours, its = _mean_score(run["test"], run["main_metrics"]), _mean_score(reported["test"], reported["main_metrics"])
        row["test reported"], row["test continued"] = round(its, 2), round(ours, 2)
        row["Δ test"] = round(ours - its, 2)
    return row


def convergence_frame(summary: Summary) -> pd.DataFrame | None:
    """One row per continuation run; None when the summary has none."""
    runs = [r for r in summary["runs"] if r["recipe"] == "continuation"]
    if not runs:
        return None
    rule = get_scale(summary["scale"]).train
    reported = {(r["method_id"], tuple(r["tasks"]), r["seed"]): r for r in summary["runs"] if r["recipe"] == "single_task"}
    return pd.DataFrame([check_run(r, rule["patience"], rule["min_delta"],
                                   reported.get((r["method_id"], tuple(r["tasks"]), r["seed"]))) for r in runs])


def method_verdicts(frame: pd.DataFrame) -> dict[str, bool]:
    """Per method: converged on every task it was checked on."""
    return {m: bool((g["converged"] == "yes").all()) for m, g in frame.groupby("method", sort=False)}


def convergence_notes(summary: Summary, frame: pd.DataFrame) -> tuple[str, list[str]]:
    """The declared check as text, and the lines after its table: progress and each method's verdict."""
    scale = get_scale(summary["scale"])
    verdicts = method_verdicts(frame)
    failed = [m for m, ok in verdicts.items() if not ok]
    methods = {r["method_id"] for r in summary["runs"] if r["recipe"] == "single_task"}
    planned = len(scale.continuation_seeds) * len(scale.single_tasks) * len(methods)
    after = [f"In progress: {len(frame)} of {planned} continuation runs.", ""] if len(frame) < planned else []
    after += [("Every method checked passes: " if not failed else
               f"Fails for {', '.join(failed)} (its rule is to be lengthened and its runs retrained); passes for: ")
              + (", ".join(m for m, ok in verdicts.items() if ok) or "none") + ".", ""]
    text = CHECK_TEXT.format(seed=", ".join(map(str, scale.continuation_seeds)), cap=scale.train["max_steps"])
    return text, after
