"""``actplug info NAME``: formula, paper, defaults and parameters of one activation."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="details of one activation", description=__doc__)
    p.add_argument("name", help="a registered name or alias")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import registry

    info = registry.info(args.name)
    console = Console()
    console.print(f"[bold]{info.name}[/bold]  ({info.cls.__module__}.{info.cls.__qualname__})")
    rows = {
        "aliases": ", ".join(info.aliases) or "-",
        "formula": info.formula or "-",
        "paper": info.paper or "-",
        "defaults": ", ".join(f"{k}={v!r}" for k, v in info.defaults.items()) or "-",
        "trainable parameters": ", ".join(info.parameters) or "-",
        "plugin": info.plugin,
    }
    for key, value in rows.items():
        console.print(f"  {key:>21}: {value}", highlight=False)
    doc = (info.cls.__doc__ or "").strip()
    if doc:
        console.print()
        console.print(doc, highlight=False)
    return 0
