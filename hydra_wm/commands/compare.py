"""`hydra-wm compare A B`: paired, per-clip comparison of two `hydra-wm eval` reports of the same samples.

Prints, per metric, both means, the mean difference A − B with a bootstrap confidence interval, and A's
wins / ties / losses over the clips with a sign-test p-value; `--out FILE.json` also writes them. See
`hydra_wm.evaluation.compare`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="paired per-clip comparison of two eval reports (mean difference, bootstrap CI, wins, sign test)",
        description="Compare two `hydra-wm eval` reports (metrics.json or its folder) of the same samples clip "
        "by clip: mean A − B with a percentile-bootstrap confidence interval over the clips, and how many "
        "clips A wins, ties and loses (direction from the metric: lower is better for lpips, missing, "
        "position_error, identity) with the exact two-sided sign-test p-value.",
    )
    p.add_argument("a", type=Path, help="report A (metrics.json or the folder holding it)")
    p.add_argument("b", type=Path, help="report B, of the same samples")
    p.add_argument(
        "--metrics",
        nargs="+",
        help="metrics to compare (default: PSNR, background and re-entry subject metrics that both reports have)",
    )
    p.add_argument("--names", nargs=2, metavar=("NAME_A", "NAME_B"), help="column names (default: A B)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", type=Path, help="also write the results to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluation.compare import format_comparison, paired_comparison, read_report
    from ..io_utils import check_output_file, write_text_atomic

    if args.out:
        check_output_file(args.out, "--out")
    if args.resamples < 1:
        raise InputError(f"--resamples: expected a positive count, got {args.resamples}")
    if not 0.0 < args.level < 1.0:
        raise InputError(f"--level: expected a confidence level between 0 and 1, got {args.level}")
    names = tuple(args.names) if args.names else ("A", "B")
    results = paired_comparison(
        read_report(args.a),
        read_report(args.b),
        args.metrics,
        resamples=args.resamples,
        level=args.level,
        seed=args.seed,
        names=(str(args.a), str(args.b)),
    )
    print(format_comparison(results, names, args.level))
    if args.out:
        payload = {
            "a": str(args.a),
            "b": str(args.b),
            "names": list(names),
            "level": args.level,
            "resamples": args.resamples,
            "seed": args.seed,
            "results": [r.as_dict() for r in results],
        }
        write_text_atomic(args.out, json.dumps(payload, indent=1))
        print(f"wrote {args.out}")
    return 0
