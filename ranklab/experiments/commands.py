"""`ranklab reproduce` and `ranklab figures`."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .recipes import RECIPES, SCALES

SUMMARY_NAME = "results_summary.json"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    reproduce = subparsers.add_parser(
        "reproduce", help="train every recipe at a scale (resuming finished runs) and draw the figures")
    reproduce.add_argument("--scale", default="embedded", choices=list(SCALES))
    reproduce.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    reproduce.add_argument("--results", default="results", help="run folders (records, checkpoints, weights)")
    reproduce.add_argument("--figures", default="figures", help="where figures and RESULTS.md go")
    reproduce.add_argument("--seed", type=int, default=0)
    reproduce.add_argument("--verbose", action="store_true", help="show each run's own progress bar")
    reproduce.set_defaults(func=_reproduce)

    figures = subparsers.add_parser("figures", help="redraw figures/ from results (no training)")
    figures.add_argument("--results", default="results", help="collect finished runs from here if present")
    figures.add_argument("--figures", default="figures")
    figures.add_argument("--scale", default="embedded", choices=list(SCALES))
    figures.add_argument("--seed", type=int, default=0)
    figures.set_defaults(func=_figures)


def _recipes(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe(s) {unknown}; valid recipes: {', '.join(RECIPES)}")
    return names


def _reproduce(args: argparse.Namespace) -> int:
    from .runner import run_recipes

    start = time.perf_counter()
    run_recipes(_recipes(args.recipes), args.scale, args.results, args.seed, quiet=not args.verbose)
    _draw(args.results, args.figures, args.scale, args.seed)
    print(f"reproduce ({args.scale}) finished in {time.perf_counter() - start:.0f} s")
    return 0


def _figures(args: argparse.Namespace) -> int:
    _draw(args.results, args.figures, args.scale, args.seed)
    return 0


def _draw(results: str, figures: str, scale: str, seed: int) -> None:
    """Collect finished runs into figures/results_summary.json (if any), then draw from it."""
    from .figures import draw_all
    from ..distributed import is_main_process
    from .runner import collect, save_summary

    if not is_main_process():  # several processes: the main one draws
        return

    summary_path = Path(figures) / SUMMARY_NAME
    try:
        save_summary(collect(scale, results, seed), summary_path)
    except ValueError:  # no finished runs here: redraw from the saved summary if there is one
        if not summary_path.is_file():
            raise ValueError(f"no results to draw: {results}/ has no finished {scale} runs and {summary_path} "
                             f"does not exist; run `ranklab reproduce --scale {scale}` first") from None
    written = draw_all(json.loads(summary_path.read_text()), figures)
    print(f"wrote {len(written)} files to {figures}/: " + ", ".join(sorted({p.stem for p in written})))
