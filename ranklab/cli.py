"""The ``ranklab`` command.  Each area adds its subcommands from its own module."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules exposing ``add_commands(subparsers)``; each subcommand sets ``func(args) -> int``.
COMMAND_MODULES = [
    "ranklab.demo",
    "ranklab.data.commands",
    "ranklab.train.commands",
    "ranklab.experiments.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ranklab", description="Study how LoRA-family adapters use their rank.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as error:  # bad input: a clear message, no traceback
        print(f"ranklab {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
