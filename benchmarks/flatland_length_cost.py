"""Flatland: where `memory` overtakes `full` in cost as a clip grows (one DiT forward, side by side).

    python benchmarks/flatland_length_cost.py [--frames 40,80,160,320] [--repeats 5] [--threads 1] [--json F]

The built-in models see 20 context + 20 target frames; at that length `full` (every token attends to all 40
frames) is cheap. HyDRA's cost per query is bounded (a window of frames plus top-k retrieved memory frames), dense
attention's grows with the clip. This benchmark builds the shipped `flatland-memory` and `flatland-full` DiTs
(or `--weights-memory` / `--weights-full`), feeds both the same random latents and cameras of F frames (half
context, half target, the shipped models' 32x32 frames), and times one forward pass (one sampling step, batch 1,
no grad) of each, alternating memory and full `--repeats` times per length so that whatever else the machine does
slows both alike. It prints the median seconds per forward and the memory/full ratio per length, and the first
length at which memory is the cheaper one. Quality at those lengths is another question (the models are trained
at 40 frames): see docs/rollout.md for long clips generated chunk by chunk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hydra_wm.flatland.model import load_flatland_model
from hydra_wm.io_utils import write_text_atomic


def inputs(model, frames: int, seed: int = 0) -> tuple:
    """Random latents, null text and random-yaw cameras for `frames` frames (half of them context)."""
    cfg = model.dit.cfg
    g = torch.Generator().manual_seed(seed)
    world = model.flatland
    h, w = world.height // model.codec.factor, world.width // model.codec.factor
    latents = torch.randn(1, cfg.in_dim, frames, h, w, generator=g)
    context_frames = frames // 2
    cams = torch.randn(1, frames, 12, generator=g) * 0.1
    text = torch.zeros(1, 1, cfg.text_dim)
    timestep = torch.tensor([500.0])
    return latents, timestep, text, cams[:, :context_frames], cams[:, context_frames:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="40,80,160,320", help="comma-separated clip lengths (even)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights-memory", default=None)
    parser.add_argument("--weights-full", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    try:
        lengths = [int(x) for x in args.frames.split(",")]
    except ValueError:
        parser.error(f"--frames: expected comma-separated integers, got {args.frames!r}")
    if any(n < 4 or n % 2 for n in lengths):
        parser.error(f"--frames: expected even lengths of at least 4, got {args.frames!r}")
    torch.set_num_threads(args.threads)
    models = {
        "memory": load_flatland_model("memory", args.weights_memory),
        "full": load_flatland_model("full", args.weights_full),
    }
    rows = []
    with torch.no_grad():
        for frames in lengths:
            feeds = {name: inputs(model, frames) for name, model in models.items()}
            times: dict[str, list[float]] = {name: [] for name in models}
            for i in range(args.repeats + 1):
                for name, model in models.items():
                    start = time.perf_counter()
                    model.dit(*feeds[name])
                    if i:  # the first round warms kernels and the allocator up
                        times[name].append(time.perf_counter() - start)
            row = {"frames": frames, **{name: statistics.median(t) for name, t in times.items()}}
            row["ratio"] = row["memory"] / row["full"]
            rows.append(row)
            print(
                f"{frames:5d} frames  memory {row['memory']:.3f} s  full {row['full']:.3f} s  "
                f"memory/full {row['ratio']:.2f}"
            )
    cheaper = next((row["frames"] for row in rows if row["ratio"] < 1), None)
    print(
        f"memory is cheaper than full from {cheaper} frames on"
        if cheaper
        else "memory is not cheaper than full at any length measured"
    )
    if args.json:
        write_text_atomic(
            args.json, json.dumps({"threads": args.threads, "rows": rows, "memory_cheaper_from": cheaper})
        )


if __name__ == "__main__":
    main()
