"""``actplug plot NAME... [--derivative] [-o FILE.png]``: curves like Fig. 1-2 of smu.txt and lpflu.txt.

A NAME may carry constructor arguments: ``smu:alpha=0.01,mu=2.5`` (read by :func:`actplug.specs.parse_spec`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..specs import parse_spec


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


def run(args: argparse.Namespace) -> int:
    from ..plotting import plot_activations

    specs = [parse_spec(s) for s in args.names]
    path = plot_activations(specs, Path(args.output), derivative=args.derivative, xlim=tuple(args.xlim))
    print(f"wrote {path}")
    return 0
