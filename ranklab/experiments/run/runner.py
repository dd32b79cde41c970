"""Run the protocol: the learning-rate search, then every reported run (resuming, never redoing
finished ones), each analysed once; progress shows runs done / to do and the time left.

Layout of a results folder (never committed):
    <results>/tuning/<recipe>/<method_id>__<tasks>__s<seed>__lr<lr>/   search runs (validation only)
    <results>/tuning.json                                             the search's scores and choices
    <results>/<recipe>/<method_id>__<tasks>__s<seed>/                 record.json, predictions.json,
                                                                      checkpoint, adapter, analysis.json
(``RunSpec.run_id``; the method_id is the method entry's stable id, never its display label.)
The compact summary the figures are drawn from is written by ``experiments.results.summary.collect``
(committed under figures/ by ``make reproduce``, so ``make figures`` redraws without training).
The trainer and the analysis (Accelerate, Transformers) are imported only when a run is trained,
so reading a results folder (``results.summary``) does not import them.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from ...atomic import write_json
from ...distributed import is_main_process
from ...train.checkpoint import CHECKPOINT_NAME
from ...train.config import TrainConfig
from ...train.records import RECORD_NAME, load_record
from ..protocol.recipes import RunSpec, Scale, get_scale, recipe_runs, tuning_runs
from .analysis import ANALYSIS_FORMAT
from .plan import blocked_reasons, run_waves, runnable_recipes
from .tuning import TUNING_NAME, choose_learning_rates, learning_rates_from_summary, read_tuning, search_from_summary

ANALYSIS_NAME = "analysis.json"
PROTOCOL_LOG = "protocol_log.json"  # one entry per `reproduce` session: wall time, runs trained, jobs


def run_folder(results: str | Path, run: RunSpec) -> Path:
    return Path(results) / run.run_id


def run_config(run: RunSpec, results: str | Path) -> TrainConfig:
    """The run's config with ``init_from`` resolved to its source run's adapter folder in ``results``."""
    if not run.init_from:
        return run.config
    return replace(run.config, init_from=str(Path(results) / run.init_from / "adapter"))


def _init_key(path: str | None) -> tuple[str, ...] | None:
    """The source run and folder of an ``init_from`` path (recipe, run, adapter): the same in a moved results folder."""
    return None if path is None else Path(path).parts[-3:]


def config_conflict(folder: Path, config: TrainConfig) -> list[str]:
    """Fields in which the run already in ``folder`` differs from ``config`` (empty: same run or none)."""
    try:
        saved = TrainConfig.from_dict(load_record(folder / RECORD_NAME)["config"])
    except (ValueError, OSError, KeyError, TypeError):
        return []
    differ = config.same_run(saved)
    if "init_from" in differ and _init_key(config.init_from) == _init_key(saved.init_from):
        differ.remove("init_from")
    return differ


def run_status(folder: Path, needs_analysis: bool = True) -> str:
    """"finished", "stale" (trained, but its analysis is missing or of an older format) or "todo"."""
    record = folder / RECORD_NAME
    try:
        if not (record.is_file() and load_record(record).get("status") == "completed"):
            return "todo"
    except (ValueError, OSError):
        return "todo"
    if not needs_analysis:
        return "finished"
    try:
        analysis = json.loads((folder / ANALYSIS_NAME).read_text())
    except (ValueError, OSError):
        return "stale"
    return "finished" if analysis.get("format") == ANALYSIS_FORMAT else "stale"


def _failure(folder: Path) -> str | None:
    """Why the run in ``folder`` failed, if its record says it did."""
    try:
        record = load_record(folder / RECORD_NAME)
    except (ValueError, OSError):
        return None
    return record.get("error", "no reason recorded") if record.get("status") == "failed" else None


def is_finished(folder: Path, needs_analysis: bool = True) -> bool:
    """A run counts as done once its record says completed and (for reported runs) its analysis is current."""
    return run_status(folder, needs_analysis) == "finished"


def _synthetic_inputs(config: TrainConfig) -> dict[str, Any]:
    """The smoke scale's tasks (task i has i + 2 classes) and tiny random RoBERTa."""
    from ...train.synthetic import synthetic_task, tiny_roberta

    tasks = [synthetic_task(name, num_classes=2 + i, n_train=config.max_train or 64, n_eval=config.max_eval or 32,
                            seed=config.seed + 10 * i) for i, name in enumerate(config.tasks)]
    return {"tasks": tasks, "model_fn": tiny_roberta}


class StepCounter:
    """A training callback adding each step's examples to a shared count, so the protocol's one
    progress bar moves with every step, also of runs trained in worker processes."""

    def __init__(self, count: Any, batch_size: int, refresh: Callable[[], None] | None = None) -> None:
        self.count, self.batch_size, self.refresh, self.trained = count, batch_size, refresh, 0

    def __call__(self, step: int, model: Any) -> None:
        if step > 0:
            with self.count.get_lock():
                self.count.value += self.batch_size
            self.trained += self.batch_size
            if self.refresh is not None:
                self.refresh()


def execute(run: RunSpec, results: str | Path, scale: Scale, quiet: bool = True,
            counter: StepCounter | None = None) -> dict[str, Any]:
    """Train (or resume) one run, then save its analysis (reported runs); returns the record."""
    from ...train import train
    from .analysis import InitialState, analyse_run

    folder = run_folder(results, run)
    resume = (folder / CHECKPOINT_NAME).exists() or (folder / RECORD_NAME).exists()
    failed = _failure(folder)
    if failed:
        tqdm.write(f"  {run.run_id} failed earlier ({failed}); trying again from its last checkpoint")
    config = replace(run_config(run, results), output=str(folder), resume=resume, overwrite=False, quiet=quiet)
    inputs = _synthetic_inputs(config) if scale.synthetic else {}
    initial = InitialState()
    result = train(config, callbacks=[initial] + ([counter] if counter is not None else []), **inputs)
    if not run.tuning:
        analysis = analyse_run(result.model, result.tasks, config.method, result.collator,
                               config.eval_batch_size, initial=initial.state)
        if is_main_process():  # several processes (torchrun / accelerate launch): one writer
            write_json(folder / ANALYSIS_NAME, analysis)
    return result.record


def run_cost(run: RunSpec) -> float:
    """Examples a run trains (the progress bar's unit; epochs count as 100 steps when unknown)."""
    c = run.config
    return (c.max_steps or c.epochs * 100) * c.batch_size


def default_jobs() -> int:
    """Runs trained side by side: on a CPU, two single-threaded runs use two cores better than one
    two-threaded run (about 13% more throughput measured on 2 cores; benchmarks/); on a GPU, one."""
    import torch

    if torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


_PROGRESS: Any = None  # a worker process's shared step count (set by _worker_init)


def _worker_init(threads: int, progress: Any) -> None:
    import torch

    global _PROGRESS
    torch.set_num_threads(threads)
    _PROGRESS = progress


def _execute_timed(run: RunSpec, results: str, scale: Scale, quiet: bool,
                   counter: StepCounter | None = None) -> tuple[float, float, int]:
    """(seconds, best validation score, examples trained now) of one run; in a worker process the
    steps go to the pool's shared count."""
    if counter is None and _PROGRESS is not None:
        counter = StepCounter(_PROGRESS, run.config.batch_size)
    start = time.perf_counter()
    record = execute(run, results, scale, quiet=quiet, counter=counter)
    trained = counter.trained if counter is not None else int(run_cost(run))
    return time.perf_counter() - start, (record.get("best") or {}).get("score", float("nan")), trained


def run_all(runs: list[RunSpec], results: str | Path, scale: Scale, quiet: bool = True,
            desc: str = "runs", jobs: int = 1) -> list[Path]:
    """Train every run that is not finished; one progress bar (runs done / to do, time left).

    ``jobs > 1`` trains that many runs at once in worker processes, each with an equal share of
    the CPU threads (never under ``accelerate launch``, where the processes are already shared)."""
    blocked = {r.run_id: reasons for r in runs if (reasons := blocked_reasons(r))}
    if blocked:
        run_id, reasons = next(iter(blocked.items()))
        raise ValueError(f"{len(blocked)} run(s) need what this ranklab lacks, e.g. {run_id}: {'; '.join(reasons)}; "
                         "leave their recipe out (--recipes) or run it in miniature (--miniature)")
    for run in runs:  # a recipe changed since these folders were trained: never mix the two
        differ = config_conflict(run_folder(results, run), run_config(run, results))
        if differ:
            raise ValueError(f"{run_folder(results, run)} holds a run trained with other settings ({', '.join(differ)}); "
                             "delete it or use another --results folder")
    finished = {r.run_id for r in runs if run_status(run_folder(results, r), not r.tuning) == "finished"}
    finished |= _finished_sources(runs, results)
    todo = [r for wave in run_waves(runs, finished) for r in wave if r.run_id not in finished]
    if len(todo) < len(runs):
        tqdm.write(f"{desc}: {len(runs) - len(todo)} of {len(runs)} runs finished earlier (reused)")
    import multiprocessing

    bar = tqdm(total=sum(run_cost(r) for r in todo), desc=desc, unit="ex", unit_scale=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
    progress = multiprocessing.get_context("spawn").Value("q", 0)  # examples trained, every process
    skipped, done = 0, 0  # skipped: examples a resumed run did not train again

    def refresh() -> None:
        bar.n = min(bar.total, progress.value + skipped)
        bar.refresh()

    def report(run: RunSpec, seconds: float, score: float, trained: int) -> None:
        nonlocal done, skipped
        done += 1
        skipped += max(0, int(run_cost(run)) - trained)
        tqdm.write(f"  {run.run_id}: done in {seconds:.0f} s, best validation {score:.4f}")
        bar.set_postfix_str(f"{done}/{len(todo)} runs done", refresh=False)
        refresh()

    bar.set_postfix_str(f"0/{len(todo)} runs done")
    for wave in run_waves(todo, finished):  # a run's source is trained in an earlier wave
        if jobs <= 1 or len(wave) <= 1:
            for run in wave:
                report(run, *_execute_timed(run, str(results), scale, quiet,
                                            StepCounter(progress, run.config.batch_size, refresh)))
            continue
        _run_wave(wave, str(results), scale, quiet, jobs, progress, report, refresh)
    bar.close()
    return [run_folder(results, r) for r in runs]


def _run_wave(wave: list[RunSpec], results: str, scale: Scale, quiet: bool, jobs: int, progress: Any,
              report: Callable[..., None], refresh: Callable[[], None]) -> None:
    """Train a wave's runs ``jobs`` at a time in worker processes; the bar follows their steps."""
    import multiprocessing

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads, progress)) as pool:
        futures = {pool.submit(_execute_timed, run, results, scale, quiet): run for run in wave}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                report(futures[future], *future.result())
            refresh()


def _finished_sources(runs: list[RunSpec], results: str | Path) -> set[str]:
    """Sources named by ``init_from`` that are not among ``runs`` but finished in ``results``."""
    planned = {r.run_id for r in runs}
    return {r.init_from for r in runs if r.init_from and r.init_from not in planned
            and run_status(Path(results) / r.init_from, needs_analysis=False) == "finished"}


def protocol_runs(names: list[str] | None, scale: str | Scale, results: str | Path, seeds: tuple[int, ...] | None = None,
                  quick: bool = False, summary_path: str | Path | None = None
                  ) -> tuple[list[RunSpec], dict[str, float] | None]:
    """The reported runs of the protocol, with their chosen learning rates where known.

    After the search has run (``results/tuning.json``) its choices are used; ``quick`` skips
    the search and takes the choices recorded in a committed summary (``summary_path``)."""
    scale = get_scale(scale) if isinstance(scale, str) else scale
    rates = None
    tuning_file = Path(results) / TUNING_NAME
    if tuning_file.is_file():
        rates = read_tuning(tuning_file)["chosen"]
    elif quick and summary_path is not None:
        rates = learning_rates_from_summary(summary_path, scale.name)
    return recipe_runs(names, scale, seeds, rates), rates


def _todo(runs: list[RunSpec], results: str | Path) -> int:
    return sum(run_status(run_folder(results, r), not r.tuning) != "finished" for r in runs)


def log_session(results: str | Path, entry: dict[str, Any]) -> None:
    """Append one session's timing to ``<results>/protocol_log.json`` (atomically)."""
    path = Path(results) / PROTOCOL_LOG
    try:
        log = json.loads(path.read_text())
    except (OSError, ValueError):
        log = []
    write_json(path, [*log, entry])


def run_protocol(names: list[str] | None = None, scale: str = "embedded", results: str | Path = "results",
                 seeds: tuple[int, ...] | None = None, quick: bool = False,
                 summary_path: str | Path | None = None, quiet: bool = True, jobs: int = 1) -> list[Path]:
    """The learning-rate search (unless ``quick``), then every reported run; returns the run folders.
    Each session's wall time (search and reported runs) and the runs it trained are logged."""
    scale_spec = get_scale(scale)
    if names is None:  # every recipe this ranklab can train; named recipes that it cannot are refused
        names, blocked = runnable_recipes(scale_spec)
        for name, reasons in blocked.items():
            tqdm.write(f"{scale} recipe {name!r} left out: it needs {'; '.join(reasons)}")
    entry: dict[str, Any] = {"scale": scale, "quick": quick, "jobs": jobs, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    start = time.perf_counter()
    if scale_spec.rates_from:
        _take_rates(scale_spec, results, summary_path)
    elif not quick:
        search = tuning_runs(names, scale_spec)
        if search:
            entry["search_runs_trained"] = _todo(search, results)
            run_all(search, results, scale_spec, quiet, desc=f"{scale} lr search", jobs=jobs)
            chosen = choose_learning_rates(search, results, scale_spec.search_rule)
            if is_main_process():
                write_json(Path(results) / TUNING_NAME, chosen)
    entry["search_s"] = round(time.perf_counter() - start, 1)
    runs, _ = protocol_runs(names, scale_spec, results, seeds, quick, summary_path)
    entry["runs_trained"] = _todo(runs, results)
    folders = run_all(runs, results, scale_spec, quiet, desc=f"{scale} runs", jobs=jobs)
    entry["total_s"] = round(time.perf_counter() - start, 1)
    if is_main_process():
        log_session(results, entry)
    return folders


def _take_rates(scale: Scale, results: str | Path, summary_path: str | Path | None) -> None:
    """A scale without a search of its own (``rates_from``): its results folder gets the search
    record of the scale it derives from, read from that scale's results summary."""
    target = Path(results) / TUNING_NAME
    if target.is_file():
        return
    tuning = search_from_summary(summary_path, scale.rates_from)
    if tuning is None:
        raise ValueError(f"the {scale.name} scale takes the learning rates chosen by the {scale.rates_from} protocol, "
                         f"but {summary_path} is not a {scale.rates_from} results summary with its search; run "
                         f"`ranklab reproduce --scale {scale.rates_from}` first (or restore figures/results_summary.json)")
    tuning = dict(tuning)
    tuning["taken_from"] = f"{summary_path} (the {scale.rates_from} scale's search)"
    tuning["rule"] = f"taken from the {scale.rates_from} scale's search: {tuning.get('rule', '')}"
    if is_main_process():
        write_json(target, tuning)


def run_recipes(names: list[str] | None = None, scale: str = "embedded", results: str | Path = "results",
                seeds: tuple[int, ...] | None = None, runs: Iterable[RunSpec] | None = None,
                quiet: bool = True) -> list[Path]:
    """Train the given runs (default: the reported runs of the named recipes, no search)."""
    scale_spec = get_scale(scale)
    runs = list(runs) if runs is not None else recipe_runs(names, scale_spec, seeds)
    return run_all(runs, results, scale_spec, quiet, desc=f"{scale} runs")
