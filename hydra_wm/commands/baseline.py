"""`hydra-wm baseline {repeat-last,closest-camera,oracle-frozen,oracle-walk-on} DATA OUT`: non-learned predictions
in generate's layout.

Writes ``OUT/NAME.mp4`` (context frames, then predicted frames) for every sample of the HM-World-layout
dataset DATA, ready for `hydra-wm eval OUT DATA`. See `hydra_wm.baselines`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..data.cameras import DEG_PER_METRE
    from ..evaluation.baselines import BASELINES

    p = sub.add_parser(
        "baseline",
        help="write non-learned predictions (repeat the last context frame / copy the closest-camera frame)",
        description="repeat-last: every target frame is the last context frame. closest-camera: each target "
        "frame is the context frame whose camera is closest (rotation angle in degrees + DEG_PER_METRE x "
        "translation in metres; ties: the latest frame). oracle-frozen / oracle-walk-on (Flatland sets only, "
        "reference points that read the truth): the true scenery and cameras, each subject standing where the "
        "last context frame had it / walking on at its last context step. Output: OUT/NAME.mp4 = context + "
        "predicted frames, lossless.",
    )
    p.add_argument("kind", choices=BASELINES, help="which predictor")
    p.add_argument("data", type=Path, help="HM-World-layout dataset (NAME/cond.mp4, tgt.mp4, camera.json)")
    p.add_argument("out", type=Path, help="output folder (NAME.mp4 files are replaced)")
    p.add_argument(
        "--deg-per-metre",
        type=float,
        default=DEG_PER_METRE,
        help=f"weight of camera translation against rotation (default {DEG_PER_METRE:g})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 3 (`SomeFailed`) when some samples could not be read: the others are written, the failed
    ones listed (stdout and OUT/failed.json)."""
    import json

    from ..errors import SomeFailed
    from ..evaluation.baselines import run_baseline
    from ..io_utils import check_output_dir, write_text_atomic

    check_output_dir(args.out, "OUT")
    start = time.perf_counter()
    failed: dict[str, str] = {}
    names = run_baseline(
        args.kind, args.data, args.out, deg_per_metre=args.deg_per_metre, progress=not args.quiet, failed=failed
    )
    print(f"wrote {len(names)} {args.kind} predictions to {args.out} in {time.perf_counter() - start:.1f} s")
    failures = Path(args.out) / "failed.json"
    if failed:
        for name, reason in failed.items():
            print(f"  failed: {name}: {reason}")
        write_text_atomic(failures, json.dumps(failed, indent=1))
        raise SomeFailed(f"{len(failed)} of {len(failed) + len(names)} samples failed; listed above and in {failures}")
    failures.unlink(missing_ok=True)
    return 0
