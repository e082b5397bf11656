"""``actplug list``: a table of every registered activation."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table
from rich.text import Text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="table of registered activations", description=__doc__)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import registry

    table = Table(title="actplug activations", show_lines=False)
    for column in ("name", "aliases", "trainable parameters", "formula", "paper", "plugin"):
        table.add_column(column, overflow="fold")
    for info in registry:
        cells = (
            info.name,
            ", ".join(info.aliases) or "-",
            ", ".join(info.parameters) or "-",
            info.formula or "-",
            info.paper or "-",
            info.plugin,
        )
        table.add_row(*(Text(cell) for cell in cells))  # plugin metadata verbatim, not rich markup
    Console(width=max(Console().width, 160)).print(table)
    return 0
