"""The README's picture: a few frames of one `make demo` clip, context | generated | ground truth, as one PNG.

    make demo && python scripts/demo_picture.py [demo_out] [--sample sample_00001] [--out docs/images/demo.png]

Reads the side-by-side video `hydra-wm demo` writes (``DEMO_OUT/NAME.mp4``: context | generated | ground truth,
4x upscaled, labelled) and stacks the chosen target frames under each other, each row marked with its frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hydra_wm.data.video import read_frames

MARGIN = 64
"""Width of the left column that names each row's frame."""


def picture(video: Path, frames: list[int], context_frames: int) -> Image.Image:
    """One PNG: the label row of the side-by-side video once, then one row per chosen target frame."""
    side_by_side = read_frames(video)  # [Tt, 12 + H, W, 3]: a caption row, then the three panels
    header = 12
    missing = [t for t in frames if not 0 <= t < len(side_by_side)]
    if missing:
        raise SystemExit(f"{video}: has {len(side_by_side)} target frames, not {missing}")
    rows = [side_by_side[frames[0], :header]] + [side_by_side[t, header:] for t in frames]
    body = np.concatenate(rows)
    canvas = Image.new("RGB", (MARGIN + body.shape[1], body.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(body), (MARGIN, 0))
    draw = ImageDraw.Draw(canvas)
    panel = side_by_side.shape[1] - header
    for row, t in enumerate(frames):
        draw.text((4, header + row * panel + panel // 2 - 6), f"frame {context_frames + t + 1}", fill=(0, 0, 0))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", nargs="?", type=Path, default=Path("demo_out"), help="what `make demo` wrote")
    parser.add_argument("--sample", default="sample_00001", help="which clip (default sample_00001)")
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 6, 12, 19], help="target frames to show, 0-based")
    parser.add_argument("--context-frames", type=int, default=20, help="context frames before the target (20)")
    parser.add_argument("--out", type=Path, default=Path("docs/images/demo.png"))
    args = parser.parse_args()
    video = args.demo_out / f"{args.sample}.mp4"
    if not video.is_file():
        raise SystemExit(f"{video}: not found; run `make demo` first")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture(video, args.frames, args.context_frames).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
