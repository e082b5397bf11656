"""``actplug plot NAME... [--derivative] [-o FILE.png]``: curves like Fig. 1-2 of smu.txt and lpflu.txt.

A NAME may carry constructor arguments: ``smu:alpha=0.01,mu=2.5``.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot activations (and derivatives) against the ReLU / Leaky ReLU they approximate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="+", metavar="NAME[:k=v,...]", help="registered names, with optional kwargs")
    p.add_argument("--derivative", action="store_true", help="add a panel with the first derivatives")
    p.add_argument("-o", "--output", default="actplug-activations.png", help="PNG file to write")
    p.add_argument("--xlim", nargs=2, type=float, default=(-4.0, 4.0), metavar=("LO", "HI"))
    p.set_defaults(run=run)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"smu:alpha=0.01,mu=2.5"`` -> ``("smu", {"alpha": 0.01, "mu": 2.5})``."""
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in _split_items(rest))):
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"cannot read {item!r} in {spec!r}; write NAME:key=value,key=value")
        key = key.strip()
        if key in kwargs:
            raise ValueError(f"{key!r} is given twice in {spec!r}")
        try:
            kwargs[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            kwargs[key] = raw.strip()
    return name.strip(), kwargs


def _split_items(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes, so that ``dim=(1,2)`` stays one item."""
    items, current, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth <= 0:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return items


def run(args: argparse.Namespace) -> int:
    from ..plotting import plot_activations

    specs = [parse_spec(s) for s in args.names]
    path = plot_activations(specs, Path(args.output), derivative=args.derivative, xlim=tuple(args.xlim))
    print(f"wrote {path}")
    return 0
