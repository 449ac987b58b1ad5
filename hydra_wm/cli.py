"""`hydra-wm` command line (also `python -m hydra_wm`).

Each sub-command lives in its own module under `hydra_wm/commands/` and exposes `add_parser(subparsers)`,
which registers its arguments and sets `func`, a function taking the parsed namespace.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import HydraError

# One module per sub-command, in the order `--help` lists them.
COMMAND_MODULES = [
    "hydra_wm.commands.parity",
    "hydra_wm.commands.demo",
    "hydra_wm.commands.cameras",
    "hydra_wm.commands.flatland",
    "hydra_wm.commands.preprocess",
    "hydra_wm.commands.train",
    "hydra_wm.commands.export",
    "hydra_wm.commands.eval",
    "hydra_wm.commands.compare",
    "hydra_wm.commands.baseline",
    "hydra_wm.commands.generate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydra-wm", description="HyDRA hybrid-memory video world model")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except HydraError as exc:
        print(f"hydra-wm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hydra-wm {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
