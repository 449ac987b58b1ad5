"""PSNR over whole clips: each clip's squared error pooled over all its target frames and pixels, then averaged
over clips (docs/results.md). Unlike the mean of per-frame PSNR that `hydra-wm eval` reports, frames that come out
exact (capped at 100 dB there) do not dominate it.

    python scripts/pooled_psnr.py TABLE_OUT ROW [ROW ...]

TABLE_OUT is a `benchmarks/flatland_table.py` output folder; each ROW one of its prediction folders (e.g.
`memory-20`, `memory-snap-20`, `closest-camera`), scored against the clips of the first row's `data/`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from hydra_wm.data.video import read_frames


def pooled_psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """uint8 videos [T, H, W, 3] -> 10 log10(255^2 / MSE over every frame and pixel) (100 dB when identical)."""
    mse = float(((pred.astype(np.float64) - truth.astype(np.float64)) ** 2).mean())
    return 100.0 if mse == 0 else min(100.0, 10 * math.log10(255.0**2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table_out", type=Path)
    parser.add_argument("rows", nargs="+")
    args = parser.parse_args()
    data = args.table_out / args.rows[0] / "data"
    clips = sorted(p for p in data.iterdir() if p.is_dir())
    for row in args.rows:
        folder = args.table_out / row
        pred_dir = folder / "pred" if (folder / "pred").is_dir() else folder
        scores, exact, frames = [], 0, 0
        for clip in clips:
            truth = read_frames(clip / "tgt.mp4")
            pred = read_frames(pred_dir / f"{clip.name}.mp4")[-len(truth) :]  # the generated frames
            scores.append(pooled_psnr(pred, truth))
            exact += int(np.all(pred == truth, axis=(1, 2, 3)).sum())
            frames += len(truth)
        mean = float(np.mean(scores))
        print(f"{row}: PSNR over pooled clips {mean:.2f} dB ({len(clips)} clips); exact frames {exact} / {frames}")


if __name__ == "__main__":
    main()
