"""The ``actplug`` command line: one sub-command module each, wired here.

Sub-commands import their heavy dependencies (matplotlib, ...) only when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import cmd_bench, cmd_compare, cmd_finetune, cmd_info, cmd_list, cmd_plot

COMMANDS = (cmd_list, cmd_info, cmd_plot, cmd_bench, cmd_finetune, cmd_compare)


class CommandError(Exception):
    """A user error the CLI reports as one line on stderr with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="actplug",
        description="Activation functions from recent papers, as plugins for PyTorch frameworks.",
    )
    parser.add_argument("--version", action="version", version=f"actplug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``actplug`` console script and ``python -m actplug``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CommandError, KeyError, TypeError, ValueError) as exc:
        message = exc.message if hasattr(exc, "message") else str(exc)
        print(f"actplug {args.command}: error: {message}", file=sys.stderr)
        return 2
