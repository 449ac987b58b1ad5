"""`hydra-wm demo`: the main job on the built-in default.

Until the built-in Flatland world model ships (issue 8), the demo reproduces the reference DiT forward
passes from the fixtures, which exercises checkpoint loading, hybrid-memory retrieval and the full DiT.
"""

from __future__ import annotations

import argparse

from .parity import DEFAULT_FIXTURES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in demo (currently: DiT parity on the reference fixtures)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import parity

    print("hydra-wm demo: reproducing the reference HyDRA DiT forward passes (float32, CPU)")
    args.prefixes = [DEFAULT_FIXTURES / "official_dit_parity", DEFAULT_FIXTURES / "official_dit_hd128"]
    args.dtype = "float32"
    return parity.run(args)
