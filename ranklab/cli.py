"""The ``ranklab`` command.  Each area adds its subcommands from its own module."""
from __future__ import annotations

import argparse
import sys

from . import demo
from .data import commands as data_commands
from .experiments import commands as experiment_commands
from .inspect import commands as inspect_commands
from .train import commands as train_commands

# Each exposes ``add_commands(subparsers)``; each subcommand sets ``func(args) -> int``.
COMMAND_MODULES = [demo, data_commands, train_commands, experiment_commands, inspect_commands]


class Parser(argparse.ArgumentParser):
    """Bad input is one line naming what is wrong (and pointing to --help), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """Built at call time, so methods registered after import appear in ``ranklab train --help``."""
    parser = Parser(prog="ranklab", description="Study how LoRA-family adapters use their rank.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMAND_MODULES:
        module.add_commands(subparsers)
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
