"""Flatland render speed: clips per second on one core, in memory and written to disk.

    python benchmarks/flatland_speed.py [--preset default] [--clips 200]

The target is at least 20 clips/s at the default size on one core. Timing is wall-clock on whatever
else the machine is doing; run it on a quiet machine and report the preset and the machine with the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

# One core: no BLAS or OpenMP threads (x264 is already pinned to one thread by the writer).
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

from hydra_wm.flatland import FlatlandDataset, flatland_config, render_clip, write_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--clips", type=int, default=200)
    args = parser.parse_args()
    config = flatland_config(args.preset)
    render_clip(config, 0, 0)  # warm-up (imports, first allocations)

    start = time.perf_counter()
    for index in range(args.clips):
        render_clip(config, 1, index)
    render = args.clips / (time.perf_counter() - start)

    dataset = FlatlandDataset(config, args.clips, seed=1, latent_stride=4 if config.context_frames % 4 == 1 else 1)
    start = time.perf_counter()
    for index in range(args.clips):
        dataset[index]
    items = args.clips / (time.perf_counter() - start)

    disk_clips = max(args.clips // 4, 1)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        write_dataset(out, config, disk_clips, seed=1, progress=False)
        disk = disk_clips / (time.perf_counter() - start)

    print(
        f"preset {args.preset}: {config.height}x{config.width}, {config.context_frames}+{config.target_frames} frames"
    )
    print(f"render_clip           {render:7.1f} clips/s")
    print(f"FlatlandDataset item  {items:7.1f} clips/s (tensors + relative cameras)")
    print(f"write_dataset         {disk:7.1f} clips/s (4 lossless mp4 + 4 json per clip)")


if __name__ == "__main__":
    main()
