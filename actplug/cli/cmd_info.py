"""``actplug info NAME``: formula, paper, defaults and parameters of one activation."""

from __future__ import annotations

import argparse
import inspect

from rich.console import Console
from rich.markup import escape


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="details of one activation", description=__doc__)
    p.add_argument("name", help="a registered name or alias")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import registry

    info = registry.info(args.name)
    console = Console()
    # Metadata and docstrings come from plugins: print them verbatim (no rich markup, no hard wraps),
    # so that e.g. a formula "x in [lo, hi]" is not eaten as a markup tag.
    console.print(f"[bold]{escape(info.name)}[/bold]  ({escape(f'{info.cls.__module__}.{info.cls.__qualname__}')})")
    rows = {
        "aliases": ", ".join(info.aliases) or "-",
        "formula": info.formula or "-",
        "paper": info.paper or "-",
        "defaults": ", ".join(f"{k}={v!r}" for k, v in info.defaults.items()) or "-",
        "trainable parameters": ", ".join(info.parameters) or "-",
        "plugin": info.plugin,
    }
    for key, value in rows.items():
        console.print(f"  {key:>21}: {value}", highlight=False, markup=False, soft_wrap=True)
    doc = inspect.cleandoc(info.cls.__doc__ or "")
    if doc:
        console.print()
        console.print(doc, highlight=False, markup=False, soft_wrap=True)
    return 0
