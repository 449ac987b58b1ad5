"""`hydra-wm flatland make OUT`: render a Flatland dataset in the published HM-World layout.

Sample i is rendered from (seed, i), so a set can be re-made sample by sample (a stopped run is resumed by the same
command: flatland.json first, each sample folder atomically, finished ones skipped), and
`hydra_wm.flatland.FlatlandDataset` with the same preset, options and seed yields the same clips in memory.
"""

from __future__ import annotations

import argparse
import time

from ..errors import InputError
from ..flatland import FLATLAND_PRESETS, SCENE_STYLES, flatland_config, write_dataset
from ..io_utils import check_output_dir


def _pair(text: str, cast, name: str) -> tuple:
    """``"8"`` or ``"8,30"`` → ``(8, 8)`` or ``(8, 30)``."""
    try:
        values = [cast(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"{name}: expected a number or LOW,HIGH, got {text!r}") from None
    if len(values) not in (1, 2):
        raise InputError(f"{name}: expected a number or LOW,HIGH, got {text!r}")
    return (values[0], values[-1])


def config_from_args(args: argparse.Namespace):
    """The preset named by ``--preset`` with every option the user gave applied on top."""
    overrides = {}
    for field in ("height", "width", "context_frames", "target_frames", "fov_deg", "fps"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    ranges = (
        ("subjects", "num_subjects", int),
        ("pan_range", "pan_range_deg", float),
        ("out_of_view", "out_of_view_frames", int),
        ("subject_height", "subject_height", float),
    )
    for option, field, cast in ranges:
        text = getattr(args, option)
        if text is not None:
            overrides[field] = _pair(text, cast, "--" + option.replace("_", "-"))
    if args.styles is not None:
        overrides["scene_styles"] = tuple(s.strip() for s in args.styles.split(",") if s.strip())
    return flatland_config(args.preset, **overrides)


def run_make(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    check_output_dir(args.out, "OUT")
    start = time.perf_counter()
    names = write_dataset(args.out, config, args.samples, args.seed, overwrite=args.overwrite, progress=not args.quiet)
    seconds = time.perf_counter() - start
    print(
        f"wrote {len(names)} Flatland samples ({config.height}x{config.width}, "
        f"{config.context_frames}+{config.target_frames} frames) to {args.out} in {seconds:.1f} s "
        f"({len(names) / seconds:.1f} clips/s)"
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flatland",
        help="render Flatland, a small world with exact ground truth (HM-World layout)",
        description="Flatland: a camera panning in a wrapping panorama while subjects walk out of view and "
        "back. Every clip holds at least one exit-entry event in its target clip.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = actions.add_parser(
        "make",
        help="write a dataset: sample_NNNNN/{cond,tgt}{,_mask}.mp4, camera/character/check/truth.json, caption.txt",
        description="Render N clips in the published HM-World layout. Ranges take LOW,HIGH or one number.",
    )
    make.add_argument(
        "out",
        help="output directory: absent or empty; the same command again resumes a stopped run (finished samples "
        "are kept); --overwrite replaces an earlier Flatland set",
    )
    make.add_argument("--samples", type=int, default=64, help="number of clips (default 64)")
    make.add_argument("--seed", type=int, default=0, help="dataset seed; sample i comes from (seed, i)")
    make.add_argument(
        "--preset",
        default="default",
        choices=sorted(FLATLAND_PRESETS),
        help="size and difficulty preset (default: 48x80, 21+21 frames)",
    )
    make.add_argument("--height", type=int, help="frame height in pixels")
    make.add_argument("--width", type=int, help="frame width in pixels")
    make.add_argument("--context-frames", type=int, help="frames in cond.mp4")
    make.add_argument("--target-frames", type=int, help="frames in tgt.mp4")
    make.add_argument("--fov-deg", type=float, help="horizontal field of view in degrees")
    make.add_argument("--fps", type=int, help="frame rate of the mp4 files")
    make.add_argument("--subjects", metavar="LOW,HIGH", help="subjects per clip, 1..3")
    make.add_argument("--pan-range", metavar="LOW,HIGH", help="camera pan amplitude, peak to peak, in degrees")
    make.add_argument(
        "--out-of-view",
        metavar="LOW,HIGH",
        help="frames the guaranteed exit-entry subject stays wholly out of view",
    )
    make.add_argument("--subject-height", metavar="LOW,HIGH", help="subject height as a fraction of the frame")
    make.add_argument("--styles", metavar="A,B", help=f"scene styles to use (of {', '.join(SCENE_STYLES)})")
    make.add_argument("--overwrite", action="store_true", help="replace an earlier Flatland set in OUT")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    make.set_defaults(func=run_make)
