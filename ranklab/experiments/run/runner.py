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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from ...atomic import write_json
from ...distributed import broadcast_int, is_main_process, wait_for_everyone
from ...train.checkpoint import CHECKPOINT_NAME
from ...train.config import TrainConfig
from ...train.records import RECORD_NAME, load_record
from ..protocol.recipes import RunSpec, Scale, get_scale, recipe_runs, tuning_runs
from ..protocol.spec import recipe_kind
from .analysis import ANALYSIS_FORMAT
from .plan import blocked_reasons, run_waves, runnable_recipes
from .tuning import (TUNING_NAME, choose_learning_rates, extensions, learning_rates_from_summary, read_tuning,
                     run_curve, run_outcome, search_from_summary)

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


def run_cost(run: RunSpec, scale: Scale | None = None) -> float:
    """Examples a run is expected to train (the progress bar's unit; epochs count as 100 steps when
    unknown): its steps, or, for a run that stops at a plateau, the scale's ``typical_steps``."""
    c = run.config
    steps = c.max_steps or c.epochs * 100
    typical = (scale.typical_steps if scale is not None else {}).get(recipe_kind(run.recipe))
    if c.patience is not None and typical:
        steps = min(steps, typical)
    return steps * c.batch_size


@dataclass
class Budget:
    """``--max-minutes``: a run starts only when it is expected to end within the time left (its
    expected examples at the mean seconds per example of the runs finished in this session); until
    one has finished, runs start while time is left, and the session's first run always starts (so
    every chunk makes progress).  Runs never stop midway."""

    seconds: float | None = None  # None: no limit
    start: float = field(default_factory=time.monotonic)
    rates: list[float] = field(default_factory=list)  # seconds per trained example, per finished run
    left_out: int = 0  # runs left for a later chunk
    started: int = 0  # runs started in this session

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.monotonic() - self.start)

    def allows(self, examples: float) -> bool:
        if self.seconds is None or self.started == 0:
            return True
        if not self.rates:
            return self.left() > 0
        return examples * sum(self.rates) / len(self.rates) <= self.left()

    def take(self, examples: float) -> bool:
        """Whether a run of ``examples`` may start now (counted as started if so)."""
        if self.allows(examples):
            self.started += 1
            return True
        return False

    def measured(self, seconds: float, examples: int) -> None:
        if examples > 0:
            self.rates.append(seconds / examples)


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
            desc: str = "runs", jobs: int = 1, budget: Budget | None = None,
            finished_elsewhere: set[str] = frozenset()) -> list[Path]:
    """Train every run that is not finished; one progress bar (runs done / to do, time left).

    ``jobs > 1`` trains that many runs at once in worker processes, each with an equal share of
    the CPU threads (never under ``accelerate launch``, where the processes are already shared).
    ``budget``: start only the runs expected to fit (``Budget``; the others are left, counted in
    ``budget.left_out``).  ``finished_elsewhere``: run ids finished on another machine (in a
    committed summary), never trained again."""
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
    budget = budget or Budget()
    is_main_process()  # under accelerate launch: the process group exists before the first broadcast
    finished = {r.run_id for r in runs if run_status(run_folder(results, r), not r.tuning) == "finished"}
    finished |= _finished_sources(runs, results) | (set(finished_elsewhere) & {r.run_id for r in runs})
    todo = [r for wave in run_waves(runs, finished) for r in wave if r.run_id not in finished]
    if len(todo) < len(runs):
        tqdm.write(f"{desc}: {len(runs) - len(todo)} of {len(runs)} runs finished earlier (reused)")
    import multiprocessing

    bar = tqdm(total=sum(run_cost(r, scale) for r in todo), desc=desc, unit="ex", unit_scale=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
    progress = multiprocessing.get_context("spawn").Value("q", 0)  # examples trained, every process
    skipped, done = 0, 0  # skipped: expected examples a run did not train (resumed, or stopped at a plateau)

    def refresh() -> None:
        bar.n = min(bar.total, progress.value + skipped)
        bar.refresh()

    def report(run: RunSpec, seconds: float, score: float, trained: int) -> None:
        nonlocal done, skipped
        done += 1
        skipped += int(run_cost(run, scale)) - trained  # negative when a run trained longer than expected
        budget.measured(seconds, trained)
        tqdm.write(f"  {run.run_id}: done in {seconds:.0f} s, best validation {score:.4f}")
        bar.set_postfix_str(f"{done}/{len(todo)} runs done", refresh=False)
        refresh()

    def fits(run: RunSpec) -> bool:  # the main process's clock decides for every process
        return bool(broadcast_int(int(budget.take(run_cost(run, scale)))))

    bar.set_postfix_str(f"0/{len(todo)} runs done")
    started: set[str] = set()
    for wave in run_waves(todo, finished):  # a run's source is trained in an earlier wave
        wave = [r for r in wave if r.init_from is None or r.init_from in finished | started]
        if jobs <= 1 or len(wave) <= 1:
            for run in wave:
                if not fits(run):
                    continue
                started.add(run.run_id)
                report(run, *_execute_timed(run, str(results), scale, quiet,
                                            StepCounter(progress, run.config.batch_size, refresh)))
            continue
        started |= _run_wave(wave, str(results), scale, quiet, jobs, progress, report, refresh, fits)
    budget.left_out += len(todo) - len(started)
    if len(started) < len(todo):
        tqdm.write(f"{desc}: {len(todo) - len(started)} run(s) left for a later session (--max-minutes)")
    bar.close()
    return [run_folder(results, r) for r in runs]


def _run_wave(wave: list[RunSpec], results: str, scale: Scale, quiet: bool, jobs: int, progress: Any,
              report: Callable[..., None], refresh: Callable[[], None],
              fits: Callable[[RunSpec], bool] = lambda run: True) -> set[str]:
    """Train a wave's runs ``jobs`` at a time in worker processes, starting each one only if it
    ``fits``; the bar follows their steps.  Returns the run ids started."""
    import multiprocessing

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    queue, pending, started = list(wave), {}, set()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads, progress)) as pool:
        while queue or pending:
            while len(pending) < jobs and (run := next((r for r in queue if fits(r)), None)) is not None:
                queue.remove(run)
                started.add(run.run_id)
                pending[pool.submit(_execute_timed, run, results, scale, quiet)] = run
            if not pending:
                break  # nothing left fits the budget
            finished, _ = wait(set(pending), timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                report(pending.pop(future), *future.result())
            refresh()
    return started


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
        rates = read_tuning(tuning_file).get("chosen")  # none while the search is unfinished
    elif quick and summary_path is not None:
        rates = learning_rates_from_summary(summary_path, scale.name)
    return recipe_runs(names, scale, seeds, rates), rates


def log_session(results: str | Path, entry: dict[str, Any]) -> None:
    """Append one session's timing to ``<results>/protocol_log.json`` (atomically)."""
    path = Path(results) / PROTOCOL_LOG
    try:
        log = json.loads(path.read_text())
    except (OSError, ValueError):
        log = []
    write_json(path, [*log, entry])


def committed_summary(path: str | Path | None, scale: str) -> dict[str, Any] | None:
    """The results summary at ``path`` if it is one of ``scale`` (runs finished on another machine
    or in an earlier chunk), else None."""
    from ..results.summary_format import read_summary

    try:
        summary = read_summary(path) if path is not None and Path(path).is_file() else None
    except (OSError, ValueError, KeyError):
        return None
    return summary if summary and summary.get("scale") == scale else None


def finished_in_summary(runs: list[RunSpec], summary: dict[str, Any] | None) -> set[str]:
    """Run ids of ``runs`` that ``summary`` holds, trained with the same settings (reported runs, and
    search runs through the search record's outcomes)."""
    if not summary:
        return set()
    entries = {r["run_id"]: r.get("config") for r in summary.get("runs", [])}
    entries.update({run_id: o.get("config") for run_id, o in ((summary.get("tuning") or {}).get("runs") or {}).items()})
    done = set()
    for run in runs:
        config = entries.get(run.run_id)
        if config is not None and not TrainConfig.from_dict(config).same_run(run.config):
            done.add(run.run_id)
    return done


def _search(names: list[str] | None, scale: Scale, results: str | Path, previous: dict[str, Any] | None,
            quiet: bool, jobs: int, budget: Budget) -> bool:
    """The search of the named recipes, its grid extended where a winner sits on an edge
    (``scale.grid_step``; ``tuning.extensions``) until every winner is interior: each round trains
    what fits and writes ``tuning.json``.  True when the search is complete."""
    extra: dict[str, tuple[float, ...]] = {}
    while True:
        search = tuning_runs(names, scale, extra)
        if not search:
            return True
        if not _search_round(search, scale, results, previous, quiet, jobs, budget):
            return False
        more = extensions(read_tuning(Path(results) / TUNING_NAME), scale.grid_step, scale.lr_grid,
                          scale.max_extensions)
        if not more:
            return True
        for key, lr in sorted(more.items()):
            tqdm.write(f"{scale.name} lr search: {key} chose the edge of its rates; adding {lr:g}")
            extra[key] = (*extra.get(key, ()), lr)


def _search_round(search: list[RunSpec], scale: Scale, results: str | Path, previous: dict[str, Any] | None,
                  quiet: bool, jobs: int, budget: Budget) -> bool:
    """Train the search runs that fit, then write ``tuning.json``: the choices once every search run
    has finished (here or in ``previous``), else the outcomes so far.  True when the search is complete."""
    elsewhere = finished_in_summary(search, previous)
    known = {k: v for k, v in ((previous or {}).get("tuning") or {}).get("runs", {}).items() if k in elsewhere}
    run_all(search, results, scale, quiet, desc=f"{scale.name} lr search", jobs=jobs, budget=budget,
            finished_elsewhere=elsewhere)
    wait_for_everyone()  # the main process has written every search record
    here = {r.run_id for r in search if run_status(run_folder(results, r), needs_analysis=False) == "finished"}
    complete = bool(broadcast_int(int(all(r.run_id in here or r.run_id in known for r in search))))
    earlier = {k: v for k, v in (((previous or {}).get("tuning") or {}).get("curves") or {}).items() if k in known}
    if complete:
        record = choose_learning_rates(search, results, scale.search_rule, known)
    else:
        records = {r.run_id: load_record(run_folder(results, r) / RECORD_NAME) for r in search if r.run_id in here}
        record = {"rule_name": scale.search_rule, "complete": False, "labels": {r.tune_key: r.label for r in search},
                  "runs": {**known, **{k: run_outcome(v) for k, v in records.items()}},
                  "curves": {r.run_id: run_curve(r, records[r.run_id]) for r in search if r.run_id in records}}
    # in the plan's order, whichever machine trained them, each under the tune key this search gives
    # its run (a run reused from an earlier protocol keeps its outcome, not that protocol's key)
    curves = {**earlier, **record["curves"]}
    record["curves"] = {r.run_id: {**curves[r.run_id], "tune_key": r.tune_key} for r in search if r.run_id in curves}
    for run in search:  # each outcome says what it was trained with (a later chunk checks it)
        if run.run_id in record["runs"]:
            record["runs"][run.run_id] = {**record["runs"][run.run_id], "config": run.config.to_dict()}
    if is_main_process():
        write_json(Path(results) / TUNING_NAME, record)
    wait_for_everyone()  # every process reads the chosen rates from tuning.json next
    return complete


def run_protocol(names: list[str] | None = None, scale: str | Scale = "embedded", results: str | Path = "results",
                 seeds: tuple[int, ...] | None = None, quick: bool = False,
                 summary_path: str | Path | None = None, quiet: bool = True, jobs: int = 1,
                 max_minutes: float | None = None) -> list[Path]:
    """The learning-rate search (unless ``quick``), then every reported run; returns the run folders.
    Each session's wall time (search and reported runs) and the runs it trained are logged.

    Runs held by the committed summary at ``summary_path`` (same scale and settings) count as
    finished, so a protocol can be finished in chunks on other machines; ``max_minutes`` starts only
    the runs expected to end in time (``Budget``) and leaves the rest, the search first."""
    scale_spec = get_scale(scale) if isinstance(scale, str) else scale  # resolved once; the Scale goes down
    scale = scale_spec.name
    if names is None:  # every recipe this ranklab can train; named recipes that it cannot are refused
        names, blocked = runnable_recipes(scale_spec)
        for name, reasons in blocked.items():
            tqdm.write(f"{scale} recipe {name!r} left out: it needs {'; '.join(reasons)}")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {max_minutes}")
    budget = Budget(None if max_minutes is None else 60 * max_minutes)
    previous = None if quick else committed_summary(summary_path, scale)
    entry: dict[str, Any] = {"scale": scale, "quick": quick, "jobs": jobs, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if max_minutes is not None:
        entry["max_minutes"] = max_minutes
    start = time.perf_counter()
    searched = True
    if scale_spec.rates_from or quick:
        _take_rates(scale_spec, results, summary_path, scale_spec.rates_from or scale_spec.name)
        wait_for_everyone()  # every process reads the rates from tuning.json next
    else:
        searched = _search(names, scale_spec, results, previous, quiet, jobs, budget)
        entry["search_runs_trained"] = len(budget.rates)
    entry["search_s"] = round(time.perf_counter() - start, 1)
    runs: list[RunSpec] = []
    if searched:
        runs, _ = protocol_runs(names, scale_spec, results, seeds, quick, summary_path)
        before = len(budget.rates)
        run_all(runs, results, scale_spec, quiet, desc=f"{scale} runs", jobs=jobs, budget=budget,
                finished_elsewhere=finished_in_summary(runs, previous))
        entry["runs_trained"] = len(budget.rates) - before
    entry["left_for_later"] = budget.left_out
    entry["total_s"] = round(time.perf_counter() - start, 1)
    if is_main_process():
        log_session(results, entry)
    return [run_folder(results, r) for r in runs]


def _take_rates(scale: Scale, results: str | Path, summary_path: str | Path | None, source: str) -> None:
    """A run without a search of its own (a scale with ``rates_from``, or ``--quick``): its results
    folder gets the search record of the ``source`` scale, read from that scale's results summary
    (a quick run without one trains at the scale's default rate)."""
    target = Path(results) / TUNING_NAME
    if target.is_file():
        return
    tuning = search_from_summary(summary_path, source)
    if tuning is None and source == scale.name:
        return
    if tuning is None:
        raise ValueError(f"the {scale.name} scale takes the learning rates chosen by the {scale.rates_from} protocol, "
                         f"but {summary_path} is not a {scale.rates_from} results summary with its search; run "
                         f"`ranklab reproduce --scale {scale.rates_from}` first (or restore figures/results_summary.json)")
    tuning = {k: v for k, v in tuning.items() if k != "runs"}  # the choices; its runs are the other scale's
    tuning["taken_from"] = f"{summary_path} (the {source} scale's search)"
    tuning["rule"] = f"taken from the {source} scale's search: {tuning.get('rule', '')}"
    if is_main_process():
        write_json(target, tuning)


def run_recipes(names: list[str] | None = None, scale: str = "embedded", results: str | Path = "results",
                seeds: tuple[int, ...] | None = None, runs: Iterable[RunSpec] | None = None,
                quiet: bool = True) -> list[Path]:
    """Train the given runs (default: the reported runs of the named recipes, no search)."""
    scale_spec = get_scale(scale)
    runs = list(runs) if runs is not None else recipe_runs(names, scale_spec, seeds)
    return run_all(runs, results, scale_spec, quiet, desc=f"{scale} runs")
