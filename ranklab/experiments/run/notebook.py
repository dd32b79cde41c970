"""What notebooks 03-05 need: the results to draw from, without training unless asked.

By default a notebook opens on the committed full-protocol summary (figures/results_summary.json)
and trains nothing.  With ``train=True`` it first prints what it will train and an estimate of
the time, then runs the protocol (reusing finished runs) and draws from the new results.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..protocol.recipes import RunSpec, Scale, get_scale, tuning_runs
from ..results.summary import collect
from ..results.summary_format import read_summary
from .runner import default_jobs, protocol_runs, run_folder, run_protocol, run_status

SECONDS_PER_EXAMPLE = 0.011  # a training example on 2 CPU cores, evaluation included (measured, embedded scale)


def _estimate(run: RunSpec, committed: dict[str, Any] | None) -> float:
    """Seconds for a run: the committed protocol's time for the same method entry and recipe, else a rate."""
    if committed:
        times = [r["wall_time_s"] for r in committed["runs"]
                 if r["method_id"] == run.method_id and r["recipe"] == run.recipe]
        if times:
            return sum(times) / len(times)
    steps = run.config.max_steps or run.config.epochs * 100
    return steps * run.config.batch_size * SECONDS_PER_EXAMPLE


def training_plan(recipes: list[str], scale: str | Scale, results_dir: str | Path, quick: bool = False,
                  summary_path: str | Path | None = None) -> tuple[list[RunSpec], float]:
    """The runs still to train (search first, then reported runs) and their estimated seconds."""
    scale = get_scale(scale) if isinstance(scale, str) else scale
    committed = load_summary(summary_path) if summary_path and Path(summary_path).is_file() else None
    search = [] if quick else tuning_runs(recipes, scale)
    reported, _ = protocol_runs(recipes, scale, results_dir, scale.seeds[:1] if quick else None, quick, summary_path)
    todo = [r for r in search + reported if run_status(run_folder(results_dir, r), not r.tuning) != "finished"]
    return todo, sum(_estimate(r, committed) for r in todo)


def load_summary(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results summary at {path}: run `make reproduce`, or set train = True in the "
                         "notebook's parameters cell")
    try:
        return read_summary(path)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def notebook_results(recipes: list[str], scale: str = "embedded", train: bool = False,
                     results_dir: str | Path = "../results",
                     summary_path: str | Path = "../figures/results_summary.json", quick: bool = False) -> dict[str, Any]:
    """The results summary a notebook draws from: the committed one, or (``train=True``) a fresh one."""
    if not train:
        summary = load_summary(summary_path)
        print(f"Results: {summary_path} (the committed {summary['scale']}-scale protocol, "
              f"{len(summary['runs'])} runs); set train = True to train them here.")
        return summary
    spec = get_scale(scale)  # resolved once here; every step below takes the Scale
    todo, seconds = training_plan(recipes, spec, results_dir, quick, summary_path)
    jobs = default_jobs()
    if todo:  # a run's time was measured with the protocol's runs side by side: wall time = sum / jobs
        print(f"Training {len(todo)} runs of {', '.join(recipes)} ({scale} scale) into {results_dir}, {jobs} side by "
              f"side: about {seconds / jobs / 60:.0f} min here (finished runs are reused; stop and rerun to resume).")
        for run in todo[:5]:
            print(f"  {run.run_id}")
        if len(todo) > 5:
            print(f"  ... and {len(todo) - 5} more")
    seeds = spec.seeds[:1] if quick else None
    run_protocol(recipes, spec, results_dir, seeds, quick=quick, summary_path=summary_path, jobs=jobs)
    return collect(spec, results_dir, recipes, seeds)
