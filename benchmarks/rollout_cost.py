"""Cost per chunk of a long rollout against the length of the history: `memory` (bounded) vs `full` (docs/rollout.md).

    python benchmarks/rollout_cost.py [--chunks 12] [--steps 20] [--threads 1] [--dense] [--out runs/rollout-cost]

One held-out `long-glance` clip (20 context frames, then `--chunks` chunks of 20) is continued by the shipped
Flatland memory model with `memory` history (8 recent + 12 pre-selected frames) and with `full` history (every frame
so far); with `--dense` also by the shipped `full`-attention model over the full history (dense attention: the
quadratic case). The rollouts advance side by side, one chunk of each in turn, so that whatever else the machine
does slows them alike; each chunk's wall time covers the history selection, the denoising and the decoding.
Memory: the bank's bytes, and the peak of the bytes allocated during one DiT forward pass at the DiT input length of
chunks 1, 10 and the last (torch's profiler allocation events: the working memory that length costs).
Prints a markdown table (and writes OUT/cost.json, OUT/cost.md); the goal is memory's chunk 10 within 1.3x of its
chunk 1.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from hydra_wm.data.cameras import camera_poses
from hydra_wm.flatland import flatland_config, render_clip
from hydra_wm.flatland.model import HELD_OUT_SEED, load_flatland_model
from hydra_wm.flatland.rollout import start_rollout
from hydra_wm.io_utils import write_text_atomic
from hydra_wm.rollout import RolloutConfig

CHUNK = 20


def peak_forward_mb(dit, frames: int) -> float:
    """Peak of the bytes allocated (MB) during one DiT forward pass over `frames` latent frames (20 of them target):
    the working memory that input length costs, from the profiler's allocation events (signed sizes, in order)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = dit.cfg
    latents, cams, text = torch.randn(1, cfg.in_dim, frames, 16, 16), torch.zeros(1, frames, 12), torch.zeros(1, 1, 8)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        dit(latents, torch.tensor([500.0]), text, cams[:, : frames - CHUNK], cams[:, frames - CHUNK :])
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    running = peak = 0
    for _, size in events:
        running += size
        peak = max(peak, running)
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per chunk (the model card's: 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dense", action="store_true", help="also the full-attention model over the full history")
    parser.add_argument("--index", type=int, default=0, help="held-out clip index")
    parser.add_argument("--repeats", type=int, default=1, help="rollouts of each kind; per chunk the fastest counts")
    parser.add_argument("--out", type=Path, default=Path("runs/rollout-cost"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = flatland_config("long-glance", target_frames=args.chunks * CHUNK)
    clip = render_clip(config, HELD_OUT_SEED, args.index)
    poses = camera_poses(clip.camera_to_world)
    runs = {"memory": ("memory", "memory"), "full": ("memory", "full")}
    if args.dense:
        runs["full, dense attention"] = ("full", "full")
    models = {name: load_flatland_model(attention) for name, (attention, _) in runs.items()}
    for name in runs:  # warm-up: first allocations, lazy initialisation
        peak_forward_mb(models[name].dit, 40)
    rows = {name: [] for name in runs}
    for repeat in range(args.repeats):
        rollouts = {}
        for name, (_, history) in runs.items():
            history_config = RolloutConfig.for_context(models[name].flatland.context_frames, CHUNK, history)
            rollouts[name] = start_rollout(
                models[name], clip, history_config, num_steps=args.steps, record_retrieval=False
            )
        for index in range(args.chunks):
            chunk_poses = poses[20 + CHUNK * index : 20 + CHUNK * (index + 1)]
            for name, rollout in rollouts.items():
                began = time.perf_counter()
                chunk = rollout.step(chunk_poses)
                seconds = time.perf_counter() - began
                frames = chunk.record.dit_frames
                print(f"run {repeat + 1} chunk {index + 1:2d} {name:>22}: {seconds:6.2f} s, DiT input {frames} frames",
                      flush=True)  # fmt: skip
                if repeat == 0:
                    rows[name].append(
                        {"seconds": seconds, "dit_frames": frames, "bank_mb": rollout.bank.nbytes() / 2**20}
                    )
                else:  # the fastest of the repeats: the least disturbed by the machine's other work
                    rows[name][index]["seconds"] = min(rows[name][index]["seconds"], seconds)
    for name in runs:
        for i in sorted({0, 9, args.chunks - 1} & set(range(args.chunks))):
            rows[name][i]["peak_forward_mb"] = peak_forward_mb(models[name].dit, rows[name][i]["dit_frames"])
    tokens = 64  # 8x8 tokens per latent frame (flatland-tiny on PixelCodec(2), 32x32 frames)
    lines = [
        f"CPU: {cpu_name()}, {args.threads} thread(s); {args.steps} steps per chunk; chunk = {CHUNK} frames; "
        f"one long-glance clip (seed {HELD_OUT_SEED}, index {args.index})",
        "",
        "| chunk | history frames | " + " | ".join(f"{n}: s (DiT frames)" for n in runs) + " |",
        "|---:|---:|" + "---:|" * len(runs),
    ]
    for i in range(args.chunks):
        cells = " | ".join(f"{rows[n][i]['seconds']:.2f} ({rows[n][i]['dit_frames']})" for n in runs)
        lines.append(f"| {i + 1} | {20 + CHUNK * i} | {cells} |")
    lines.append("")
    for name in runs:
        first, tenth, last = rows[name][0], rows[name][min(9, args.chunks - 1)], rows[name][-1]
        peaks = ", ".join(
            f"chunk {i + 1}: {r['peak_forward_mb']:.0f} MB ({r['dit_frames'] * tokens} tokens)"
            for i, r in enumerate(rows[name])
            if "peak_forward_mb" in r
        )
        tenth_ratio = f"chunk 10 / chunk 1 = {tenth['seconds'] / first['seconds']:.2f}x, " if args.chunks >= 10 else ""
        lines.append(
            f"- {name}: {tenth_ratio}chunk {args.chunks} / chunk 1 = {last['seconds'] / first['seconds']:.2f}x; peak "
            f"memory of one forward: {peaks}; bank after chunk {args.chunks}: {last['bank_mb']:.2f} MB"
        )
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "cost.md", text + "\n")
    write_text_atomic(args.out / "cost.json", json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
