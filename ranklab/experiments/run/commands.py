"""`ranklab reproduce` and `ranklab figures`.

This module is in ``run/`` because `reproduce` is how the shell runs the protocol (search, runs,
miniature, plan: all of ``run/``); it ends by drawing, as `figures` does, and imports ``results/``
only inside the function that draws, so starting the CLI does not import the drawing code.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..protocol.recipes import SCALES, get_scale, recipes_for

SUMMARY_NAME = "results_summary.json"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    reproduce = subparsers.add_parser(
        "reproduce", help="the protocol at a scale: learning-rate search, every run at every seed "
                          "(finished runs are reused), then the figures, claims and RESULTS.md")
    reproduce.add_argument("--scale", default="embedded", choices=list(SCALES),
                           help="embedded: MiniLM-L6 on the offline tasks, CPU (make reproduce); embedded-x4: its "
                                "runs with 4x the steps at the rates embedded chose (a training-length check); "
                                "smoke: tiny synthetic (tests); paper: each paper's setting (hub and GPU)")
    reproduce.add_argument("--recipes", default=None,
                           help="comma list of the scale's recipes (default: every one this ranklab can train); "
                                + "; ".join(f"{name}: {', '.join(recipes_for(scale))}" for name, scale in SCALES.items()))
    reproduce.add_argument("--results", default="results",
                           help="run folders (records, checkpoints, weights); a derived scale (embedded-x4) "
                                "uses results/<scale> unless given")
    reproduce.add_argument("--figures", default=None,
                           help="where figures and RESULTS.md go (default: figures/; with --quick: <results>/figures, "
                                "so a quick run never replaces the committed full-protocol figures)")
    reproduce.add_argument("--seeds", default=None,
                           help="comma list of reported seeds for every recipe (default: the scale's, "
                                "e.g. 1-5 single-task and 1-3 multi-task at the embedded scale)")
    reproduce.add_argument("--quick", action="store_true",
                           help="one seed (the first), no learning-rate search: the rates chosen by the full "
                                "protocol are read from the figures folder's results summary (a workshop run)")
    reproduce.add_argument("--jobs", type=int, default=None,
                           help="runs trained side by side (default: 2 on a CPU with 2+ cores, 1 on a GPU)")
    reproduce.add_argument("--max-minutes", type=float, default=None,
                           help="train only what is expected to fit in this many minutes (runs never stop midway; "
                                "the first runs always start), then write a consistent summary: runs in the "
                                "committed summary count as finished, so later sessions or machines go on from it")
    reproduce.add_argument("--verbose", action="store_true", help="show each run's own progress bar")
    reproduce.add_argument("--plan", action="store_true",
                           help="print every run (task, method, options, optimisation, seed, init-from), its optimizer "
                                "steps and estimated GPU hours, then stop (nothing is trained or downloaded)")
    reproduce.add_argument("--miniature", action="store_true",
                           help="train every run of the recipes in miniature (tiny random backbones, GLUE-schema fixture "
                                "files, 3 steps; first seed) into --results: the full runs' code path and order, offline, "
                                "in about a minute on a CPU")
    reproduce.set_defaults(func=_reproduce)

    figures = subparsers.add_parser("figures", help="redraw figures/ from results (no training)")
    figures.add_argument("--results", default="results", help="collect finished runs from here if present")
    figures.add_argument("--figures", default="figures")
    figures.add_argument("--scale", default="embedded", choices=list(SCALES))
    figures.add_argument("--seeds", default=None, help="comma list of seeds to collect (default: the scale's)")
    figures.set_defaults(func=_figures)


def _recipes(text: str | None, scale: str) -> list[str] | None:
    """The named recipes (None: the scale's default set)."""
    if text is None:
        return None
    valid = recipes_for(get_scale(scale))
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise ValueError(f"unknown recipe(s) {unknown or text!r} at the {scale} scale; valid recipes: {', '.join(valid)}")
    return names


def parse_seeds(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds must be a comma list of integers, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must list distinct integers >= 0, got {text!r}")
    return seeds


def _reproduce(args: argparse.Namespace) -> int:
    from .runner import default_jobs, run_protocol

    names, seeds = _recipes(args.recipes, args.scale), parse_seeds(args.seeds)
    scale = get_scale(args.scale)
    if args.plan:
        return _plan(names, scale, seeds)
    from ...output_paths import check_output_folder

    # before any output (a progress bar included): a results or figures folder it cannot write loses nothing
    check_output_folder(args.results, "--results", allow_existing=True)  # existing runs are resumed
    check_output_folder(args.figures or "figures", "--figures", allow_existing=True)  # figures are redrawn
    if args.miniature:
        return _miniature(names, args, seeds)
    searched = get_scale(scale.rates_from) if scale.rates_from else scale  # whose tuning seeds chose the rates
    if seeds is not None and set(searched.tuning_seeds) & set(seeds):
        tuning = sorted(set(searched.tuning_seeds) & set(seeds))
        raise ValueError(f"seed(s) {tuning}: the {searched.name} scale's tuning seeds {list(searched.tuning_seeds)} are "
                         "never reported; choose other seeds")
    if args.quick:
        seeds = seeds[:1] if seeds else scale.seeds[:1]
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be > 0, got {args.max_minutes}")
    _say_precision(scale)
    start = time.perf_counter()
    if scale.rates_from:  # a derived scale: rates from the committed summary, its runs and figures apart
        args.results, figures = _apart(scale.name, args.results, args.figures)
        committed = Path("figures") / SUMMARY_NAME
    elif scale.apart and not args.quick:  # its own folders; its committed summary is in its figures folder
        args.results, figures = _apart(scale.name, args.results, args.figures)
        committed = Path(figures) / SUMMARY_NAME
    else:
        figures = args.figures or (str(Path(args.results) / "figures") if args.quick else "figures")
        protocol_figures = _apart(scale.name, "results", None)[1] if scale.apart else "figures"
        committed = Path(args.figures or protocol_figures) / SUMMARY_NAME  # the full protocol's chosen rates
    run_protocol(names, args.scale, args.results, seeds, quick=args.quick, summary_path=committed,
                 quiet=not args.verbose, jobs=jobs, max_minutes=args.max_minutes)
    _draw(args.results, figures, args.scale, seeds, names)
    print(f"reproduce ({args.scale}{', quick' if args.quick else ''}) finished in {time.perf_counter() - start:.0f} s")
    if args.quick:
        print(f"--quick is a workshop run, not the protocol: one seed, no learning-rate search (the committed rates), "
              f"so its figures in {figures}/ carry no verdicts you can cite; the protocol's are in the committed figures")
    return 0


def _say_precision(scale: Any) -> None:
    """Once per `reproduce`: on hardware without native bf16 a scale that would use it trains in fp32."""
    from ...hardware import describe, hardware_info, native_bf16

    if scale.synthetic or native_bf16() or scale.train.get("mixed_precision") != "no":
        return
    print(f"{describe(hardware_info())}: no native bf16 here, so the {scale.name} scale trains in fp32; "
          "a results folder trained in bf16 is refused, never mixed with these runs")


def _plan(names: list[str] | None, scale: Any, seeds: tuple[int, ...] | None) -> int:
    from ..protocol.recipes import recipe_runs, tuning_runs
    from .plan import plan_text

    print(plan_text(tuning_runs(names, scale) + recipe_runs(names, scale, seeds), scale.name))  # search first
    return 0


def _miniature(names: list[str] | None, args: argparse.Namespace, seeds: tuple[int, ...] | None) -> int:
    from .miniature import run_miniature

    start = time.perf_counter()
    folders = run_miniature(names, args.scale, args.results, seeds, quiet=not args.verbose)
    figures = args.figures or str(Path(args.results) / "figures")
    _draw(args.results, figures, args.scale, seeds or get_scale(args.scale).seeds[:1], names)
    print(f"{len(folders)} runs of the {args.scale} scale trained in miniature in {time.perf_counter() - start:.0f} s "
          f"under {args.results}/ (tiny random models: the numbers mean nothing, the wiring is what was checked)")
    return 0


def _apart(scale: str, results: str, figures: str | None) -> tuple[str, str]:
    """A derived scale's default folders: results/<scale> and figures/<scale>, apart from the runs and
    figures of the scale it derives from (whose run ids its runs share)."""
    return (f"results/{scale}" if results == "results" else results,
            f"figures/{scale}" if figures in (None, "figures") else figures)


def _figures(args: argparse.Namespace) -> int:
    if get_scale(args.scale).apart:
        args.results, args.figures = _apart(args.scale, args.results, args.figures)
    _draw(args.results, args.figures, args.scale, parse_seeds(args.seeds))
    return 0


def update_summary(results: str | Path, figures: str | Path, scale: str, seeds: tuple[int, ...] | None = None,
                   names: list[str] | None = None) -> dict[str, Any]:
    """Collect the finished runs of ``results`` into ``figures/results_summary.json``, keeping the
    runs of an earlier summary of the scale there (chunks trained elsewhere); with nothing in
    ``results``, the saved summary as it is."""
    from ..results.summary import collect, save_summary
    from ..results.summary_format import read_summary
    from .runner import committed_summary

    summary_path = Path(figures) / SUMMARY_NAME
    previous = committed_summary(summary_path, scale)
    if names is None and previous:  # `ranklab figures`: the recipes the saved summary was trained on, not every one
        names = list(previous["seeds"])
    try:  # runs of earlier chunks (other machines) in the saved summary stay in it
        summary = collect(scale, results, names, seeds, previous=previous)
    except ValueError:  # no finished runs here: redraw from the saved summary if there is one
        if not summary_path.is_file():
            raise ValueError(f"no results to draw: {results}/ has no finished {scale} runs and {summary_path} "
                             f"does not exist; run `ranklab reproduce --scale {scale}` first") from None
        try:
            return read_summary(summary_path)
        except ValueError as error:
            raise ValueError(f"{summary_path}: {error}") from None
    save_summary(summary, summary_path)
    return summary


def _draw(results: str, figures: str, scale: str, seeds: tuple[int, ...] | None = None,
          names: list[str] | None = None) -> None:
    """Collect finished runs into figures/results_summary.json (if any), then draw from it."""
    from ...distributed import is_main_process
    from ..results.figures import draw_all

    if not is_main_process():  # several processes: the main one draws
        return
    summary = update_summary(results, figures, scale, seeds, names)
    if not summary["runs"]:
        print(f"{Path(figures) / SUMMARY_NAME}: the learning-rate search is unfinished "
              f"({len((summary.get('tuning') or {}).get('runs', {}))} runs so far); only its figure and RESULTS.md: "
              f"run `ranklab reproduce --scale {scale}` again to go on")
    written = draw_all(summary, figures)
    print(f"wrote {len(written)} files to {figures}/: " + ", ".join(sorted({p.stem for p in written})))
