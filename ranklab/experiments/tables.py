"""Results tables from a results summary: one row per method, and RESULTS.md with the papers'
numbers beside ours (joined by method and options, not by display label)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_text
from . import paper

Summary = dict[str, Any]
REFERENCES = {  # recipe -> the paper tables its rows are compared with
    "single_task": (("Table 1", paper.TABLE1_SINGLE), ("Table 2", paper.TABLE2_SINGLE)),
    "multi_task": (("Table 1", paper.TABLE1_MULTI),),
}


def recipe_runs(summary: Summary, recipe: str) -> list[dict[str, Any]]:
    return [r for r in summary["runs"] if r["recipe"] == recipe]


def main_score(run: dict[str, Any], task: str) -> float:
    """The task's main metric on the test split (validation where a task has no test split)."""
    return float(run["test"][task][run["main_metrics"][task]])


def run_options(run: dict[str, Any]) -> dict[str, Any]:
    """The adapter options a run was trained with.

    Summaries before format 2 did not store them: those runs take their recipe's options by
    label (a migration for the committed summary; new summaries carry ``adapter_config``).
    """
    if "adapter_config" in run:
        return {k: v for k, v in run["adapter_config"].items() if k != "method"}
    from .recipes import MULTI_TASK_METHODS, SINGLE_TASK_METHODS

    _, options = {**SINGLE_TASK_METHODS, **MULTI_TASK_METHODS}[run["label"]]
    return dict(options)


def results_frame(summary: Summary, recipe: str) -> pd.DataFrame:
    """One row per method label: main metric per task (x100), their average, params and time.

    Single-task recipes have one run per (method, task); their rows are merged per method."""
    rows: dict[str, dict[str, Any]] = {}
    tasks: list[str] = []
    for run in recipe_runs(summary, recipe):
        row = rows.setdefault(run["label"], {"method": run["label"], "adapter params": 0, "wall time (s)": 0.0})
        for task in run["tasks"]:
            row[task] = 100 * main_score(run, task)
            tasks += [task] if task not in tasks else []
        row["adapter params"] = max(row["adapter params"], run["params"].get("adapter_params", 0))
        row["wall time (s)"] += run["wall_time_s"]
    frame = pd.DataFrame(list(rows.values()))
    frame["avg"] = frame[tasks].mean(axis=1)
    return frame[["method", *tasks, "avg", "adapter params", "wall time (s)"]]


def paper_columns(summary: Summary, recipe: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus one column per paper table: the paper's average for each row's method + options."""
    first_run = {}
    for run in recipe_runs(summary, recipe):
        first_run.setdefault(run["label"], run)
    for table_name, table in REFERENCES[recipe]:
        averages = [paper.paper_average(table, first_run[label]["method"], run_options(first_run[label]))
                    for label in frame["method"]]
        frame[f"paper avg ({table_name})"] = ["-" if a is None else a for a in averages]
    return frame


def markdown_table(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = [f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, (int, np.integer)) else str(v)
                 for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_markdown(summary: Summary) -> str:
    scale = summary["scale"]
    parts = [f"# ranklab results ({scale} scale)", "", summary["description"], ""]
    for recipe in REFERENCES:
        if not recipe_runs(summary, recipe):
            continue
        frame = paper_columns(summary, recipe, results_frame(summary, recipe))
        parts += [f"## {recipe.replace('_', '-')}", "", markdown_table(frame), ""]
    parts += [
        "Our numbers: main metric x 100 on each task's test split, "
        f"{scale} scale, seed {summary['seed']}. The papers' averages are over GLUE tasks with RoBERTa "
        "(different backbone, tasks and budget): compare orderings, not values.", "",
        f"- {paper.MOR_CLAIM}", f"- {paper.LORA_PAPER}", "",
    ]
    return "\n".join(parts)


def write_results_markdown(summary: Summary, path: str | Path) -> Path:
    return write_text(path, results_markdown(summary))
