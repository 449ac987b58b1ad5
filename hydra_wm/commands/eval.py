"""`hydra-wm eval PRED GT`: score generated videos against an HM-World-layout dataset (Flatland included).

PRED holds ``NAME.mp4`` per ground-truth sample (what `generate` and `baseline` write: condition frames then
generated frames, or generated frames only, told apart by the frame count) or ``NAME/tgt.mp4``. Writes
``metrics.json``, ``metrics.csv`` and ``per_frame.png`` to ``--out`` (default ``PRED/eval``) and prints the
table. Metrics whose model is not given are reported as skipped. See `hydra_wm.evaluation.runner`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score predictions against ground truth (PSNR, SSIM, LPIPS, DSC, VBench; exact metrics on Flatland)",
        description="Score PRED (NAME.mp4 per sample, condition + generated frames or generated only; or "
        "NAME/tgt.mp4) against GT (HM-World layout: NAME/cond.mp4, tgt.mp4, cond_mask.mp4, tgt_mask.mp4). "
        "Per-frame PSNR is capped at 100 dB. Learned metrics need local weights; without them they are "
        "reported as skipped.",
    )
    p.add_argument("pred", type=Path, help="prediction folder")
    p.add_argument("gt", type=Path, help="ground-truth dataset folder (HM-World layout)")
    p.add_argument("--out", type=Path, help="where to write metrics.json/csv and per_frame.png (default PRED/eval)")
    p.add_argument(
        "--lpips-weights",
        nargs="+",
        metavar="PATH",
        default=[],
        help="LPIPS weights: one file with backbone and heads, or two files: torchvision alexnet/vgg16 "
        "(features.*) and the lpips heads (alex.pth/vgg.pth: lin0.model.1.weight ...)",
    )
    p.add_argument("--clip", help="CLIP ViT-B/16 folder (save_pretrained layout) for DSC and background consistency")
    p.add_argument("--background-clip", help="CLIP folder for background consistency only (VBench: ViT-B/32)")
    p.add_argument("--dino", help="DINO folder (ViTModel, e.g. dino-vitb16, or Dinov2Model) for subject consistency")
    p.add_argument("--frames", type=int, help="compare only the first N target frames")
    p.add_argument(
        "--context-frames",
        type=int,
        help="condition frames at the start of each prediction video (default: decided by the frame count)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=5,
        help="local attention window (frames) that defines the "
        "Flatland metric `background PSNR revisited beyond the window` (default 5, HyDRA's)",
    )
    p.add_argument("--device", default="cpu", help="torch device for the learned metrics (default cpu)")
    p.add_argument(
        "--resize",
        action="store_true",
        help="compare a prediction of another frame size with the ground truth resized to it (bilinear cover, "
        "centre crop; no exact Flatland metrics); without it such a prediction is an error",
    )
    p.add_argument("--per-sample", action="store_true", help="also print one line per sample")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluation.runner import EvalOptions, evaluate, format_table, write_report
    from ..io_utils import check_output_dir

    if len(args.lpips_weights) > 2:
        raise InputError(f"--lpips-weights: expected one or two files, got {len(args.lpips_weights)}")
    out = check_output_dir(args.out or args.pred / "eval", "--out")
    options = EvalOptions(
        lpips_weights=[str(p) for p in args.lpips_weights],
        clip=args.clip,
        dino=args.dino,
        background_clip=args.background_clip,
        frames=args.frames,
        context_frames=args.context_frames,
        window=args.window,
        device=args.device,
        resize=args.resize,
    )
    report = evaluate(args.pred, args.gt, options, progress=not args.quiet)
    paths = write_report(report, out)
    print(format_table(report, per_sample=args.per_sample))
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['plot']}")
    return 0
