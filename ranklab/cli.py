"""The ``ranklab`` command.  Each area adds its subcommands from its own module."""
from __future__ import annotations

import argparse
import sys

# Each exposes ``add_commands(subparsers)``; each subcommand sets ``func(args) -> int``.
COMMAND_MODULES = ["ranklab.demo", "ranklab.data.commands", "ranklab.train.commands", "ranklab.experiments.run.commands",
                   "ranklab.inspect.commands"]


class Parser(argparse.ArgumentParser):
    """Bad input is one line naming what is wrong (and pointing to --help), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """Built at call time, so methods registered after import appear in ``ranklab train --help``."""
    parser = Parser(prog="ranklab", description="Study how LoRA-family adapters use their rank.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(subparsers)
    return parser


# Commands whose module is enough on its own: `ranklab inspect` on a 7B adapter should not spend
# seconds importing training, data and transformers (the full parser imports every area).
STANDALONE = {"inspect": "ranklab.inspect.commands", "compress": "ranklab.inspect.commands",
              "compare": "ranklab.inspect.commands", "checkpoints": "ranklab.inspect.commands",
              "merge-audit": "ranklab.inspect.commands"}


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    if argv and argv[0] in STANDALONE:
        import importlib

        parser = Parser(prog="ranklab", description="Study how LoRA-family adapters use their rank.")
        subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
        importlib.import_module(STANDALONE[argv[0]]).add_commands(subparsers)
        return parser
    return build_parser()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser_for(argv)
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
