"""`ranklab train` and `ranklab results`."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .config import TrainConfig

# CLI flag -> method option key; only flags given on the command line reach the method config.
METHOD_FLAGS = {
    "r": int, "alpha": float, "a": int, "b": int, "r_min": int, "r_max": int, "n_experts": int,
    "selection": str, "dropout": float, "init_r": int, "target_r": int,
}


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"--option takes KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {key: getattr(args, key) for key in METHOD_FLAGS if getattr(args, key) is not None}
    if args.target_modules:
        options["target_modules"] = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    for text in args.option or []:
        key, value = _parse_option(text)
        options[key] = value
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        method=args.method, adapter=method_options(args), tasks=args.task, backbone=args.backbone,
        epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
        max_length=args.max_length, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
        eval_every=args.eval_every, patience=args.patience, seed=args.seed, max_train=args.max_train,
        max_eval=args.max_eval, sampling=args.sampling, mixed_precision=args.mixed_precision,
        data_dir=args.data_dir, cache_dir=args.cache_dir, output=args.output,
        resume=args.resume, overwrite=args.overwrite, quiet=args.quiet,
    )


def run_train(args: argparse.Namespace) -> int:
    from .trainer import train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.quiet:  # also silence the loading and tokenising bars of transformers and datasets
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    result = train(config_from_args(args))
    record = result.record
    print(f"best {record['best']['score']:.4f} at step {record['best']['step']} "
          f"({record['steps']} steps, {record['wall_time_s']:.0f} s)")
    for task, metrics in record["best"]["metrics"].items():
        print(f"  validation {task}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    for task, metrics in (record.get("test") or {}).items():
        print(f"  test       {task}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"  record: {result.output / 'record.json'}" if result.output else "  (no output folder)")
    return 0


def run_results(args: argparse.Namespace) -> int:
    from .records import results_table

    table = results_table(args.folder)
    if table.empty:
        print(f"no results records under {args.folder}")
        return 1
    print(table.to_string(index=False))
    return 0


def _add_train(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train an adapter on one or more tasks")
    p.add_argument("--method", default="lora", help="lora, emd, dylora, rank_router, mor, adalora, ...")
    p.add_argument("--task", default="movie", help="task name, or comma-separated names for multi-task")
    p.add_argument("--backbone", default="minilm-l6")
    p.add_argument("--output", default=None, help="run folder (record.json, checkpoint.pt, adapter/)")
    for key, kind in METHOD_FLAGS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, default=None, help=f"method option {key}")
    p.add_argument("--target-modules", default=None, help="comma-separated module-name suffixes")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="any other method option (JSON value)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.06)
    p.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: every epoch)")
    p.add_argument("--patience", type=int, default=None, help="early stop after this many evals without gain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train", type=int, default=None, help="cap training examples per task")
    p.add_argument("--max-eval", type=int, default=None, help="cap validation/test examples per task")
    p.add_argument("--sampling", default="proportional", help="multi-task sampling: proportional, uniform, temperature")
    p.add_argument("--mixed-precision", default="no", help="no, fp16 or bf16 (GPU)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)


def add_commands(subparsers: Any) -> None:
    _add_train(subparsers)
    p = subparsers.add_parser("results", help="print a table of the results records under a folder")
    p.add_argument("folder")
    p.set_defaults(func=run_results)
