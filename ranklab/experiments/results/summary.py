"""The compact results summary every figure and table is drawn from (no model needed).

``collect`` reads the finished runs of the protocol from a results folder: per run its record
(metrics, learning curve, parameters), a slim analysis, and its per-example test predictions
(encoded compactly, so that the claims' paired statistics can be recomputed from the committed
summary alone); plus the learning-rate search and the task-embedding study.  Runs are named by
their stable ids (``run_id``, ``method_id``; ``summary_format`` says how, and reads older files).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...atomic import write_text
from ...train.records import PREDICTIONS_NAME, RECORD_NAME, load_predictions, load_record, package_versions
from ..protocol.recipes import CONTROL_IDS, ROUTER_ID, ROUTER_IDS, RunSpec, Scale, get_scale, recipe_runs
from ..run.runner import ANALYSIS_NAME, PROTOCOL_LOG, is_finished, run_folder
from ..run.tuning import TUNING_NAME, read_tuning
from .embedding_study import study
from .summary_format import SUMMARY_FORMAT, encode

REPORT_COLUMNS = ("name", "layer", "module", "task", "effective_rank", "stable_rank", "energy_rank", "sigma_1",
                  "delta_fro")
ROUTER_COLUMNS = ("name", "layer", "module", "task", "chosen_rank")


# --- one run ----------------------------------------------------------------------------------
def _rows(rows: list[dict[str, Any]] | None, columns: Sequence[str], digits: int = 4) -> list[dict[str, Any]]:
    def clean(v: Any) -> Any:
        return round(v, digits) if isinstance(v, float) else v
    return [{c: clean(r[c]) for c in columns if c in r} for r in rows or []]


def _spectrum(row: dict[str, Any]) -> list[float]:
    """A report row's singular values of ΔW, largest first (sigma_1, sigma_2, ... up to its rank)."""
    values = [row[f"sigma_{k}"] for k in range(1, 1 + sum(c.startswith("sigma_") for c in row))]
    return [float(f"{v:.5g}") for v in values if v is not None and np.isfinite(v)]


def _slim_analysis(analysis: dict[str, Any]) -> dict[str, Any]:
    """What the figures read from a run's analysis (the full one stays in the run folder); each
    report row keeps its whole spectrum where the analysis has it (format 4 on)."""
    slim = {k: analysis[k] for k in ("method", "tasks", "capabilities", "rank_curve") if k in analysis}
    slim["report"] = _rows(analysis.get("report"), REPORT_COLUMNS)
    if (analysis.get("format") or 0) >= 4:
        for row, full in zip(slim["report"], analysis.get("report") or []):
            row["spectrum"] = _spectrum(full)
    if "router" in analysis:
        slim["router"] = _rows(analysis["router"], ROUTER_COLUMNS)
    if analysis.get("gates"):
        last = max(r["layer"] for r in analysis["gates"] if r["layer"] is not None)
        slim["gates"] = _rows([r for r in analysis["gates"] if r["layer"] == last],
                              [k for k in analysis["gates"][0] if k != "n_samples"])
    return slim


def run_summary(run: RunSpec, folder: Path) -> dict[str, Any]:
    record = load_record(folder / RECORD_NAME)
    analysis = json.loads((folder / ANALYSIS_NAME).read_text())
    regression = {t: m in ("pearson", "spearman") for t, m in record["main_metrics"].items()}
    predictions = {}
    if (folder / PREDICTIONS_NAME).is_file():
        tasks = load_predictions(folder)["tasks"]
        predictions = {t: encode(p["predicted"], regression[t]) for t, p in tasks.items()}
    return {
        "run_id": run.run_id, "recipe": run.recipe, "method_id": run.method_id, "label": run.label, "seed": run.seed,
        "lr": run.config.lr,
        "tune_key": run.tune_key, "method": record["method"], "adapter_config": record.get("adapter_config", {}),
        "tasks": record["tasks"], "backbone": record["backbone"], "main_metrics": record["main_metrics"],
        "test": record.get("test") or {}, "best": record.get("best"), "params": record["params"],
        "steps": record["steps"], "wall_time_s": round(record["wall_time_s"], 1),
        "selectable_from": record.get("selectable_from", 0), "validation_sizes": record.get("validation_sizes", {}),
        "rank_history": [{"step": h["step"], "total": h["total"]} for h in record.get("rank_history", [])],
        "final_ranks": (record.get("rank_history") or [{}])[-1].get("per_module", {}),
        "evals": [{"step": e["step"], "score": round(e["score"], 5), "train_loss": round(e["train_loss"], 5)}
                  for e in record["evals"]],
        "predictions": predictions, "analysis": _slim_analysis(analysis),
        "config": run.config.to_dict(),  # what it was trained with: a later chunk elsewhere checks it
        "hardware": _machine(record),
    }


def _machine(record: dict[str, Any]) -> str:
    from ...hardware import describe

    return describe(record.get("hardware") or {})


def _hardware(runs: list[dict[str, Any]]) -> dict[str, int]:
    """How many runs were trained on each machine (``ranklab.hardware.describe`` of its record)."""
    counts: dict[str, int] = {}
    for run in runs:
        machine = run.get("hardware", "not recorded")  # summaries before the runs said it
        counts[machine] = counts.get(machine, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _run_labels(folder: Path) -> dict[str, str | list]:
    if not (folder / PREDICTIONS_NAME).is_file():
        return {}
    record = load_record(folder / RECORD_NAME)
    return {task: encode(data["labels"], record["main_metrics"][task] in ("pearson", "spearman"))
            for task, data in load_predictions(folder)["tasks"].items()}


# --- the task-embedding study -----------------------------------------------------------------
def _tables(folders: list[Path], key: str) -> dict[tuple[int, str], np.ndarray]:
    tables = {}
    for folder in folders:
        analysis = json.loads((folder / ANALYSIS_NAME).read_text())
        source = analysis.get("initial", {}) if key == "initial" else analysis
        seed = load_record(folder / RECORD_NAME)["seed"]
        for module, table in (source.get("task_embedding_tables") or {}).items():
            tables[(seed, module)] = np.asarray(table)
    return tables


def embedding_studies(runs: list[RunSpec], results: str | Path) -> dict[str, Any]:
    """The study for the router (trained and at initialisation) and for its no-contrastive control."""
    out = {}
    router = next((i for i in ROUTER_IDS if any(r.method_id == i for r in runs)), ROUTER_ID)
    for name, method_id, key in (("trained", router, "trained"), ("initial", router, "initial"),
                                 ("no_contrastive", CONTROL_IDS[router], "trained")):
        picked = [r for r in runs if r.method_id == method_id and r.recipe == "multi_task"]
        tables = _tables([run_folder(results, r) for r in picked], key)
        if len(tables) >= 2:
            out[name] = {"method_id": method_id, "label": picked[0].label,
                         **study(tables, list(picked[0].config.tasks))}
    return out


def _sessions(results: str | Path, scale: str) -> list[dict[str, Any]]:
    """The protocol's `reproduce` sessions on this results folder (wall time, runs trained)."""
    try:
        log = json.loads((Path(results) / PROTOCOL_LOG).read_text())
    except (OSError, ValueError):
        return []
    return [entry for entry in log if entry.get("scale") == scale]


# --- everything -------------------------------------------------------------------------------
def collect(scale: str | Scale, results: str | Path, names: list[str] | None = None,
            seeds: tuple[int, ...] | None = None, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The compact summary of every finished reported run of the recipes (what the figures need).

    ``previous``: a summary of the same scale (the committed one); its runs that ``results`` lacks
    and that were trained with the planned settings are kept, so a protocol finished in chunks on
    several machines ends in the summary one session would have written."""
    from ..run.runner import finished_in_summary

    scale_spec = get_scale(scale) if isinstance(scale, str) else scale
    scale = scale_spec.name
    previous = previous if previous and previous.get("scale") == scale else None
    tuning_file = Path(results) / TUNING_NAME
    tuning = read_tuning(tuning_file) if tuning_file.is_file() else (previous or {}).get("tuning")
    planned = recipe_runs(names, scale_spec, seeds, (tuning or {}).get("chosen"))
    n_planned = len(planned)
    if scale_spec.tuning_seeds and tuning is not None and not tuning.get("chosen"):
        planned = []  # the search is unfinished: no run at a rate of its own belongs to the protocol yet
    runs = [run for run in planned if is_finished(run_folder(results, run))]
    here = {r.run_id for r in runs}
    kept = finished_in_summary([r for r in planned if r.run_id not in here], previous)
    if not runs and not tuning_file.is_file():  # nothing here: the caller keeps the saved summary as it is
        raise ValueError(f"no finished runs of scale {scale!r} under {results}; run `ranklab reproduce --scale {scale}` first")
    fresh, run_labels = {}, {}
    for run in runs:
        folder = run_folder(results, run)
        fresh[run.run_id] = run_summary(run, folder)
        run_labels[run.run_id] = _run_labels(folder)
    earlier_labels = (previous or {}).get("labels", {})
    earlier = {}
    for entry in (previous or {}).get("runs", []):
        if entry["run_id"] in kept:
            own = entry.get("labels", {})
            earlier[entry["run_id"]] = {k: v for k, v in entry.items() if k != "labels"}
            run_labels[entry["run_id"]] = {t: own.get(t, earlier_labels.get(t)) for t in entry["predictions"]}
    summaries = [fresh.get(r.run_id) or earlier[r.run_id] for r in planned if r.run_id in fresh or r.run_id in earlier]
    # test labels per task from the first run (in plan order) that has them: offline and GLUE test
    # splits are fixed, so one copy serves every run; a run whose labels differ (synthetic tasks
    # drawn per seed) keeps its own
    labels: dict[str, Any] = {}
    for summary in summaries:
        for task, encoded in run_labels[summary["run_id"]].items():
            labels.setdefault(task, encoded)
    for summary in summaries:
        own = {t: y for t, y in run_labels[summary["run_id"]].items() if y != labels.get(t)}
        if own:
            summary["labels"] = own
    studies = embedding_studies(runs, results)
    sessions = _sessions(results, scale)
    return {
        "format": SUMMARY_FORMAT, "scale": scale, "description": scale_spec.description,
        "seeds": {r["recipe"]: sorted({x["seed"] for x in summaries if x["recipe"] == r["recipe"]}) for r in summaries},
        "planned_runs": n_planned, "versions": package_versions(), "hardware": _hardware(summaries),
        "tuning": tuning,
        "sessions": [*((previous or {}).get("sessions") or []), *[e for e in sessions
                                                                 if e not in ((previous or {}).get("sessions") or [])]],
        "labels": labels,
        "task_embedding_study": studies or (previous or {}).get("task_embedding_study", {}),
        "runs": summaries,
    }


def summary_json(summary: dict[str, Any]) -> str:
    """Compact JSON with one line per run (small file, readable diffs)."""
    head = {k: v for k, v in summary.items() if k != "runs"}
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'), default=float)}," for k, v in head.items()]
    runs = [" " + json.dumps(r, separators=(",", ":"), default=float) for r in summary.get("runs", [])]
    lines.append(' "runs": [\n' + ",\n".join(runs) + "\n ]")
    return "\n".join(lines) + "\n}\n"


def save_summary(summary: dict[str, Any], path: str | Path) -> Path:
    return write_text(path, summary_json(summary))
