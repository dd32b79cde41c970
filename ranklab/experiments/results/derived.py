"""Numbers derived from a results summary, shared by the figures and RESULTS.md: each method entry's
scores with intervals, the claims' verdicts, the EMD sweep and the chosen-rank consistency.

Runs are chosen by recipe and ``method_id`` (never by their display label); ``label_of`` gives the
label to show."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..protocol.recipes import CONTROLS, EMD_SWEEP, MULTI_TASK_METHODS, ROUTER_IDS, SINGLE_TASK_METHODS
from .claims import chance_tasks, judge_all, method_scores

Summary = dict[str, Any]
RECIPE_ORDER = {  # display order of the method entries of each recipe's results (others: by label)
    "single_task": list(SINGLE_TASK_METHODS),
    "multi_task": [*MULTI_TASK_METHODS, *CONTROLS],
}


def runs_of(summary: Summary, recipe: str, method_id: str | None = None) -> list[dict[str, Any]]:
    return [r for r in summary["runs"] if r["recipe"] == recipe and (method_id is None or r["method_id"] == method_id)]


def label_of(summary: Summary, recipe: str, method_id: str) -> str:
    """The display label of a method entry's runs (its method_id where it has none)."""
    return next((r["label"] for r in runs_of(summary, recipe, method_id)), method_id)


def recipe_scores(summary: Summary, recipe: str) -> dict[str, dict[str, Any]]:
    """method_id -> method_scores (per task and avg: mean, 95% interval, per-seed values)."""
    runs = runs_of(summary, recipe)
    present = {r["method_id"] for r in runs}
    by_label = sorted(present, key=lambda i: label_of(summary, recipe, i))
    ids = [i for i in RECIPE_ORDER.get(recipe, by_label) if i in present]
    return {method_id: s for method_id in ids if (s := method_scores(summary, recipe, method_id))}


def sweep_rows(summary: Summary) -> list[dict[str, Any]]:
    """EMD (a, b) at equal budget on the sweep's tasks and seeds: score (mean of tasks), effective
    rank of ΔW, params.  The a=4, b=12 runs come from single_task, restricted to the same tasks and seeds."""
    sweep = runs_of(summary, "emd_sweep")
    if not sweep:
        return []
    tasks, seeds = sorted({t for r in sweep for t in r["tasks"]}), sorted({r["seed"] for r in sweep})
    rows = []
    for method_id, (_, options) in EMD_SWEEP.items():
        recipe = "single_task" if method_id in SINGLE_TASK_METHODS else "emd_sweep"
        runs = [r for r in runs_of(summary, recipe, method_id) if r["seed"] in seeds and set(r["tasks"]) <= set(tasks)]
        score = method_scores(summary, recipe, method_id, seeds=seeds, tasks=tasks)
        if not runs or not score:
            continue
        ranks = [row["effective_rank"] for run in runs for row in run["analysis"]["report"]]
        rows.append({"method_id": method_id, "label": runs[0]["label"], "a": options["a"], "b": options["b"],
                     "score": score["scores"]["avg"], "seeds": score["seeds"], "tasks": tasks,
                     "effective_rank": float(np.mean(ranks)), "max_rank": min(options["a"], options["b"]),
                     "adapter_params": runs[0]["params"].get("adapter_params")})
    return rows


def collapsed_seeds(summary: Summary, recipe: str, method_id: str) -> list[int]:
    """Seeds whose run is at chance on at least half of its tasks."""
    labels = summary.get("labels", {})
    return sorted(r["seed"] for r in runs_of(summary, recipe, method_id)
                  if r.get("predictions") and 2 * len(chance_tasks(r, labels)) >= len(r["predictions"]))


def router_id(summary: Summary) -> str:
    """The rank router's method_id in this summary's multi-task recipe (embedded / smoke, or the paper scale's)."""
    present = {r["method_id"] for r in runs_of(summary, "multi_task")}
    return next((i for i in ROUTER_IDS if i in present), ROUTER_IDS[0])


def chosen_ranks(summary: Summary, method_id: str | None = None) -> dict[str, Any] | None:
    """Per task: the chosen rank of every layer.module (columns) for every seed (rows)."""
    method_id = method_id or router_id(summary)
    runs = [r for r in runs_of(summary, "multi_task", method_id) if r["analysis"].get("router")]
    if not runs:
        return None
    tasks = runs[0]["tasks"]
    frames = []
    for run in runs:
        table = pd.DataFrame(run["analysis"]["router"])
        table["column"] = [f"{layer}.{module.rsplit('.', 1)[-1]}" for layer, module in zip(table["layer"], table["module"])]
        table["seed"] = run["seed"]
        frames.append(table)
    table = pd.concat(frames)
    columns = list(dict.fromkeys(table.sort_values(["layer", "column"])["column"]))
    chosen = {tasks[t]: table[table["task"] == t].pivot_table(index="seed", columns="column", values="chosen_rank")
              .reindex(columns=columns).to_numpy() for t in range(len(tasks))}
    agreement = float(np.mean([np.mean(np.ptp(m, 0) == 0) for m in chosen.values()]))
    return {"tasks": tasks, "columns": columns, "chosen": chosen, "seeds": sorted(table["seed"].unique().tolist()),
            "all_seeds_agree": agreement}


def derive(summary: Summary, n_boot: int | None = None) -> dict[str, Any]:
    """Everything the figures and tables compute from the summary, computed once."""
    kwargs = {} if n_boot is None else {"n_boot": n_boot}
    recipes = list(dict.fromkeys([*RECIPE_ORDER, *(r["recipe"] for r in summary["runs"])]))
    scores = {recipe: recipe_scores(summary, recipe) for recipe in recipes}
    return {"scores": scores, "claims": judge_all(summary, **kwargs), "sweep": sweep_rows(summary),
            "chosen_ranks": chosen_ranks(summary)}
