"""DiT forward benchmark: time and peak memory, side by side in one run.

1. The reference fixture's shape (40 latent frames at 60x104, 62,400 tokens; the fixture's tiny model) in
   float32 and bfloat16, against a per-frame loop like the reference's (`attention_chunk_frames=1`: one
   attention call per frame, the same kernel).
2. A sweep over 40, 80 and 160 latent frames at a 30x52 latent (15x26 tokens per frame) for `memory` vs
   `full` attention, showing how the cost grows with the clip length.

Each case runs in its own process so that its peak RSS (the whole process: interpreter, torch, model,
inputs) is its own. Usage: `python benchmarks/dit_forward.py [--repeats 3] [--skip-sweep] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "official_dit_parity"


def run_case(case: dict) -> dict:
    """Runs inside the child process."""
    import torch
    from safetensors.torch import load_file

    import hydra_wm

    dtype = getattr(torch, case["dtype"])
    model = hydra_wm.load_dit(
        f"{FIXTURE}_state.safetensors",
        dtype=dtype,
        attention=case["attention"],
        attention_chunk_frames=case["chunk"],
    )
    io = load_file(f"{FIXTURE}_io.safetensors")
    frames, height, width = case["frames"], case["height"], case["width"]
    latents, cams = io["latents"], (io["cam_con"], io["cam_tgt"])
    if (frames, height, width) != tuple(latents.shape[2:]):  # sweep: random latents, cameras tiled in time
        g = torch.Generator().manual_seed(0)
        latents = torch.randn(1, latents.shape[1], frames, height, width, generator=g)
        reps = -(-frames // 2 // cams[0].shape[1])
        cams = tuple(c.repeat(1, reps, 1)[:, : frames // 2] for c in cams)
    args = (latents.to(dtype), io["timestep"], io["context"].to(dtype), cams[0].to(dtype), cams[1].to(dtype))
    times = []
    with torch.no_grad():
        for i in range(case["repeats"] + 1):
            start = time.perf_counter()
            out = model(*args)
            if i:  # the first call warms up kernels and allocator
                times.append(time.perf_counter() - start)
    result = {
        "seconds": statistics.median(times),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    if (frames, height, width) == tuple(io["latents"].shape[2:]):
        ref = io["output"]
        result["rel_l2_vs_reference"] = ((out.float() - ref).norm() / ref.norm()).item()
    return result


def spawn(case: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise SystemExit(f"case {case} failed:\n{proc.stderr}")
    return {**case, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return

    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    base = {"attention": "memory", "frames": 40, "height": 60, "width": 104, "repeats": args.repeats}
    results = []
    print("\n1. fixture shape (1x4x40x60x104 latents, 62,400 tokens; fixture model: dim 72, 3 heads, 2 blocks)")
    print(f"{'variant':44s} {'forward s':>10s} {'peak RSS GB':>12s} {'rel L2 vs ref':>14s}")
    for label, extra in [
        ("float32, batched retrieval (default)", {"dtype": "float32", "chunk": 4}),
        ("float32, per-frame loop (reference style)", {"dtype": "float32", "chunk": 1}),
        ("bfloat16, batched retrieval", {"dtype": "bfloat16", "chunk": 4}),
    ]:
        r = spawn({**base, **extra})
        results.append({"label": label, **r})
        print(f"{label:44s} {r['seconds']:10.2f} {r['peak_rss_gb']:12.3f} {r['rel_l2_vs_reference']:14.2e}")
    fixture_default, per_frame = results[0], results[1]
    print(f"per-frame loop / batched time ratio: {per_frame['seconds'] / fixture_default['seconds']:.2f}")

    if not args.skip_sweep:
        print("\n2. frames sweep at a 30x52 latent (390 tokens per frame), float32")
        print(f"{'frames':>6s} {'memory s':>9s} {'full s':>9s} {'full/memory':>12s}")
        sweep = {}
        for frames in (40, 80, 160):
            row = {}
            for attention in ("memory", "full"):
                case = {
                    **base,
                    "attention": attention,
                    "frames": frames,
                    "height": 30,
                    "width": 52,
                    "dtype": "float32",
                    "chunk": 4,
                    "repeats": 1,
                }
                row[attention] = spawn(case)["seconds"]
            sweep[frames] = row
            print(f"{frames:6d} {row['memory']:9.2f} {row['full']:9.2f} {row['full'] / row['memory']:12.2f}")
        for attention in ("memory", "full"):
            growth = sweep[160][attention] / sweep[40][attention]
            print(f"{attention}: 160 vs 40 frames costs {growth:.1f}x (linear = 4x, quadratic = 16x)")
        results.append({"sweep": sweep})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
