"""Run recipes: train each run (resuming, never redoing finished ones), analyse it, collect results.

Layout of a results folder (never committed):
    <results>/<recipe>/<label>__<tasks>/   run folder: record.json, checkpoint, adapter, analysis.json
The compact summary the figures are drawn from is written by ``collect`` (and committed under
figures/ by ``make reproduce``, so ``make figures`` redraws without retraining).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from tqdm.auto import tqdm

from ..atomic import write_json
from ..distributed import is_main_process
from ..train import TrainConfig, train
from ..train.checkpoint import CHECKPOINT_NAME
from ..train.records import (
    RECORD_NAME,
    load_record,
    package_versions,
)
from .analysis import ANALYSIS_FORMAT, analyse_run
from .recipes import RunSpec, Scale, get_scale, recipe_runs

ANALYSIS_NAME = "analysis.json"
SUMMARY_FORMAT = 1


def run_folder(results: str | Path, run: RunSpec) -> Path:
    return Path(results) / run.run_id


def run_status(folder: Path) -> str:
    """"finished", "stale" (trained, but its analysis is missing or of an older format) or "todo"."""
    record = folder / RECORD_NAME
    try:
        if not (record.is_file() and load_record(record).get("status") == "completed"):
            return "todo"
    except (ValueError, OSError):
        return "todo"
    try:
        analysis = json.loads((folder / ANALYSIS_NAME).read_text())
    except (ValueError, OSError):
        return "stale"
    return "finished" if analysis.get("format") == ANALYSIS_FORMAT else "stale"


def is_finished(folder: Path) -> bool:
    """A run counts as done once its record says completed and its analysis is current."""
    return run_status(folder) == "finished"


def _synthetic_inputs(config: TrainConfig) -> dict[str, Any]:
    """The smoke scale's tasks (task i has i + 2 classes) and tiny random RoBERTa."""
    from ..train.synthetic import synthetic_task, tiny_roberta

    tasks = [synthetic_task(name, num_classes=2 + i, n_train=config.max_train or 64, n_eval=config.max_eval or 32,
                            seed=config.seed + 10 * i) for i, name in enumerate(config.tasks)]
    return {"tasks": tasks, "model_fn": tiny_roberta}


def execute(run: RunSpec, results: str | Path, scale: Scale, quiet: bool = True) -> dict[str, Any]:
    """Train (or resume) one run, then save its analysis; returns the record."""
    folder = run_folder(results, run)
    resume = (folder / CHECKPOINT_NAME).exists() or (folder / RECORD_NAME).exists()
    config = replace(run.config, output=str(folder), resume=resume, overwrite=False, quiet=quiet)
    inputs = _synthetic_inputs(config) if scale.synthetic else {}
    result = train(config, **inputs)
    analysis = analyse_run(result.model, result.tasks, config.method, result.collator,
                           config.eval_batch_size)
    if is_main_process():  # several processes (torchrun / accelerate launch): one writer
        write_json(folder / ANALYSIS_NAME, analysis)
    return result.record



def run_recipes(names: list[str] | None = None, scale: str = "embedded", results: str | Path = "results",
                seed: int = 0, runs: Iterable[RunSpec] | None = None, quiet: bool = True) -> list[Path]:
    """Train every run of the named recipes that is not finished yet; returns the run folders."""
    scale_spec = get_scale(scale)
    runs = list(runs) if runs is not None else recipe_runs(names, scale_spec, seed)
    folders = []
    bar = tqdm(runs, desc=f"{scale} runs", unit="run")
    for run in bar:
        folder = run_folder(results, run)
        bar.set_postfix_str(run.run_id)
        status = run_status(folder)
        if status == "finished":
            tqdm.write(f"  {run.run_id}: finished earlier, skipped")
        else:  # a stale run resumes at its last step: no training, only evaluation and analysis
            start = time.perf_counter()
            record = execute(run, results, scale_spec, quiet=quiet)
            score = record.get("best", {}) or {}
            done = "analysis recomputed" if status == "stale" else "done"
            tqdm.write(f"  {run.run_id}: {done} in {time.perf_counter() - start:.0f} s, "
                       f"best score {score.get('score', float('nan')):.4f}")
        folders.append(folder)
    return folders


def _run_summary(run: RunSpec, folder: Path) -> dict[str, Any]:
    record = load_record(folder / RECORD_NAME)
    analysis = json.loads((folder / ANALYSIS_NAME).read_text())
    test = record.get("test") or (record.get("best") or {}).get("metrics") or {}
    return {
        "run_id": run.run_id, "recipe": run.recipe, "label": run.label, "method": record["method"],
        "adapter_config": record.get("adapter_config", {}),
        "tasks": record["tasks"], "backbone": record["backbone"], "main_metrics": record["main_metrics"],
        "test": test, "best": record.get("best"), "params": record["params"], "steps": record["steps"],
        "wall_time_s": record["wall_time_s"], "rank_history": record.get("rank_history", []),
        "evals": [{"step": e["step"], "score": e["score"], "train_loss": e["train_loss"]} for e in record["evals"]],
        "analysis": analysis,
    }


def collect(scale: str, results: str | Path, seed: int = 0, names: list[str] | None = None) -> dict[str, Any]:
    """The compact summary of every finished run of the recipes (what the figures need)."""
    scale_spec = get_scale(scale)
    runs = [run for run in recipe_runs(names, scale_spec, seed) if is_finished(run_folder(results, run))]
    if not runs:
        raise ValueError(f"no finished runs of scale {scale!r} under {results}; run `ranklab reproduce --scale {scale}` first")
    return {
        "format": SUMMARY_FORMAT, "scale": scale, "description": scale_spec.description, "seed": seed,
        "versions": package_versions(), "runs": [_run_summary(run, run_folder(results, run)) for run in runs],
    }


def save_summary(summary: dict[str, Any], path: str | Path) -> Path:
    return write_json(path, summary)
