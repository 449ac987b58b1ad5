"""`hydra-wm parity`: check the DiT against the reference forward-pass fixtures."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parity", help="reproduce the reference DiT forward-pass fixtures")
    p.add_argument(
        "prefixes",
        nargs="*",
        type=Path,
        default=[DEFAULT_FIXTURES / "official_dit_parity", DEFAULT_FIXTURES / "official_dit_hd128"],
        help="fixture prefixes (<prefix>_state.safetensors and <prefix>_io.safetensors)",
    )
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.parity import MAX_ABS_TOL, REL_L2_TOL, run_parity

    failed = 0
    for prefix in args.prefixes:
        result = run_parity(prefix, DTYPES[args.dtype])
        verdict = "ok" if result.ok else "FAIL"
        print(
            f"{result.name}: max abs err {result.max_abs:.2e} (tol {MAX_ABS_TOL:g}), "
            f"rel L2 err {result.rel_l2:.2e} (tol {REL_L2_TOL:g}), forward {result.seconds:.2f} s [{verdict}]"
        )
        failed += not result.ok
    return 1 if failed else 0
