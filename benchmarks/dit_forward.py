"""DiT forward benchmark: our DiT against the authors' on the reference fixtures, side by side in one run.

    python benchmarks/dit_forward.py [--authors-src DIR] [--pairs 3] [--repeats 2] [--threads N]
        [--fixtures parity hd128] [--dtypes float32 bfloat16] [--profile] [--sweep] [--json OUT]

1. Both reference fixtures' shapes (1x4x40x60x104 latents, 62,400 tokens; `parity`: width 72, 3 heads of 24, 2
   blocks; `hd128`: width 256, 2 heads of 128 -- the real model's head dim --, 1 block), float32 and bfloat16: our
   forward time, process CPU time and peak RSS, and the relative L2 error against the fixture's reference output.
   With `--authors-src DIR` (a checkout of the authors' HyDRA repository: `DIR/diffsynth/models/wan_video_dit.py`)
   the authors' DiT runs on the same weights and inputs (torch's SDPA, their fallback without flash-attn), and
   the ratio ours / authors' is printed per case (median over the pairs, with the range). With `--baseline-src DIR`
   (an older hydra-wm checkout) that one runs as a third side, e.g. to compare against a previous commit.
   With `--profile`, one more forward pass per process runs under torch's profiler and reports the seconds spent in
   the attention kernel itself (`aten::_scaled_dot_product_*` ops' own time), and their share of the timed forward
   pass (the profiler slows the small ops around the kernel, so the profiled pass's own length is not used).
2. With `--sweep`: 40, 80 and 160 latent frames at a 30x52 latent (15x26 tokens per frame) for `memory` vs `full`
   attention, showing how the cost grows with the clip length (the parity fixture's model, float32).

Every measurement is a whole process of its own (so its peak RSS is its own: interpreter, torch, model, inputs), and
the sides alternate process by process, A B B A ..., so that whatever else the machine runs slows them alike. The
first forward pass of each process warms kernels and allocator up and is not counted; each process reports the
fastest of `--repeats` passes.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {
    "parity": ROOT / "tests" / "fixtures" / "official_dit_parity",
    "hd128": ROOT / "tests" / "fixtures" / "official_dit_hd128",
}
DTYPES = ("float32", "bfloat16")
AUTHORS_DIT = Path("diffsynth") / "models" / "wan_video_dit.py"
AUTHORS_GRID = (40, 30, 52)
"""The token grid the authors' `wan_video_dit.py` hard-codes (40 latent frames of 30x52 tokens, 20 of them context)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


# ------------------------------------------------------------------------------------------------- child side
def load_authors_dit(src: Path, state_path: Path):
    """The authors' `WanModel` from a checkout, built as their `infer_hydra.py` builds it (HyDRA modules added to
    every block, retrieval attention with top-k 10), with the fixture's weights loaded strictly."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    package = "_authors_dit"
    folder = src / AUTHORS_DIT.parent
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(folder)]
    sys.modules[package] = pkg
    for name in ("utils", "wan_video_dit"):  # their DiT imports `.utils` (a key hash) and nothing else of theirs
        spec = importlib.util.spec_from_file_location(f"{package}.{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    dit = sys.modules[f"{package}.wan_video_dit"]
    with safe_open(str(state_path), "pt") as f:
        config = {key: ast.literal_eval(value) for key, value in f.metadata().items()}
    model = dit.WanModel(**config)
    dim, heads = config["dim"], config["num_heads"]
    for block in model.blocks:
        block.self_attn.tokenizer = dit.MemoryTokenizer(dim)
        block.cam_encoder_con = torch.nn.Linear(12, dim)
        block.cam_encoder_tgt = torch.nn.Linear(12, dim)
        block.projector = torch.nn.Linear(dim, dim)
        block.self_attn.hydra = block.self_attn.change_sparse = True
        block.self_attn.attention_type = "sparse_frame"
        block.self_attn.attn = dit.DynamicRetrievalAttention(
            num_heads=heads, num_frames=AUTHORS_GRID[0], frame_hw=AUTHORS_GRID[1] * AUTHORS_GRID[2], top_k=10
        )
    model.load_state_dict(load_file(str(state_path)), strict=True)
    return model


def attention_kernel_seconds(call) -> tuple[float, float]:
    """(seconds of one profiled forward pass, seconds of it inside the attention kernels' own code)."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    seconds = time.perf_counter() - start
    kernel_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith("aten::_scaled_dot_product"))
    return seconds, kernel_us / 1e6


def run_case(case: dict) -> dict:
    """Runs inside the child process: one side, one fixture, one dtype."""
    # `ours` is the checkout this script lives in, whatever hydra_wm is installed; `baseline` another checkout.
    sys.path.insert(0, case["src"] if case["side"] == "baseline" else str(ROOT))
    import torch
    from safetensors.torch import load_file

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    dtype = getattr(torch, case["dtype"])
    prefix = FIXTURES[case["fixture"]]
    io = load_file(f"{prefix}_io.safetensors")
    cams = (io["cam_con"].to(dtype), io["cam_tgt"].to(dtype))
    if case["side"] == "authors":
        model = load_authors_dit(Path(case["src"]), Path(f"{prefix}_state.safetensors")).to(dtype).eval()
        # As their pipeline calls it: every input in the model's dtype, the timestep too.
        args = (io["latents"].to(dtype), io["timestep"].to(dtype), cams[1], cams[0], io["context"].to(dtype))
    else:
        import hydra_wm

        model = hydra_wm.load_dit(f"{prefix}_state.safetensors", dtype=dtype, **case.get("overrides", {}))
        args = (io["latents"].to(dtype), io["timestep"], io["context"].to(dtype), *cams)
    times, cpu_times = [], []
    with torch.no_grad():
        for i in range(case["repeats"] + 1):
            start, cpu_start = time.perf_counter(), time.process_time()
            out = model(*args)
            if i:  # the first call warms up kernels and allocator
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
        ref = io["output"]
        result = {
            "seconds": min(times),
            "cpu_seconds": min(cpu_times),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rel_l2_vs_reference": ((out.float() - ref).norm() / ref.norm()).item(),
            "threads": torch.get_num_threads(),
        }
        if case.get("profile"):
            result["profiled_seconds"], result["attention_kernel_seconds"] = attention_kernel_seconds(
                lambda: model(*args)
            )
    return result


def run_sweep_case(case: dict) -> dict:
    """Runs inside the child process: the parity fixture's model on random latents of another length."""
    sys.path.insert(0, str(ROOT))
    import torch
    from safetensors.torch import load_file

    import hydra_wm

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    prefix = FIXTURES["parity"]
    model = hydra_wm.load_dit(f"{prefix}_state.safetensors", attention=case["attention"])
    io = load_file(f"{prefix}_io.safetensors")
    frames = case["frames"]
    latents = torch.randn(1, io["latents"].shape[1], frames, 30, 52, generator=torch.Generator().manual_seed(0))
    reps = -(-frames // 2 // io["cam_con"].shape[1])
    cams = [c.repeat(1, reps, 1)[:, : frames // 2] for c in (io["cam_con"], io["cam_tgt"])]
    with torch.no_grad():
        model(latents, io["timestep"], io["context"], *cams)
        start = time.perf_counter()
        model(latents, io["timestep"], io["context"], *cams)
    return {"seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------------------ parent side
def spawn(case: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"dit_forward.py: error: case {case['side']}/{case.get('fixture')} failed: {tail[0]}")
    return {**case, **json.loads(proc.stdout.strip().splitlines()[-1])}


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.3f} ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else f"{med:.3f}"


def fixtures_table(args, sides: list[tuple[str, str | None]]) -> list[dict]:
    results = []
    cases = [(fixture, dtype) for fixture in args.fixtures for dtype in args.dtypes]
    for pair in range(args.pairs):
        order = sides if pair % 2 == 0 else sides[::-1]  # A B, then B A: drift in the load slows both alike
        for fixture, dtype in cases:
            for side, src in order:
                case = {
                    "side": side,
                    "src": src,
                    "fixture": fixture,
                    "dtype": dtype,
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "profile": args.profile,
                    "pair": pair,
                }
                result = spawn(case)
                results.append(result)
                kernel = (
                    f"  attention kernel {result['attention_kernel_seconds']:.2f} s of {result['profiled_seconds']:.2f}"
                    if args.profile
                    else ""
                )
                print(
                    f"  pair {pair} {fixture:6s} {dtype:8s} {side:8s} {result['seconds']:7.2f} s "
                    f"(CPU {result['cpu_seconds']:6.2f} s) {result['peak_rss_mib']:6.0f} MiB{kernel}",
                    flush=True,
                )
    return results


def summarise(args, results: list[dict], sides: list[tuple[str, str | None]]) -> list[dict]:
    rows = []
    names = [side for side, _ in sides]
    print(
        f"\n{'fixture':7s} {'dtype':9s} {'side':9s} {'forward s':>9s} {'CPU s':>7s} {'peak RSS MiB':>12s} "
        f"{'rel L2 vs ref':>13s} {'attn kernel s':>13s}  ratio to authors' (median, range over pairs)"
    )
    for fixture in args.fixtures:
        for dtype in args.dtypes:
            by_side = {
                side: sorted(
                    (r for r in results if r["fixture"] == fixture and r["dtype"] == dtype and r["side"] == side),
                    key=lambda r: r["pair"],
                )
                for side in names
            }
            for side in names:
                runs = by_side[side]
                row = {
                    "fixture": fixture,
                    "dtype": dtype,
                    "side": side,
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
                    "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                    "rel_l2_vs_reference": runs[0]["rel_l2_vs_reference"],
                    "runs": runs,
                }
                kernel = ""
                if args.profile:
                    # The kernel's own seconds (from the profiled pass; the profiler slows the many small ops
                    # around it, not the kernel) against the timed, unprofiled forward.
                    row["attention_kernel_seconds"] = statistics.median(r["attention_kernel_seconds"] for r in runs)
                    row["attention_kernel_share"] = statistics.median(
                        r["attention_kernel_seconds"] / r["seconds"] for r in runs
                    )
                    kernel = f"{row['attention_kernel_seconds']:5.2f} {row['attention_kernel_share']:4.0%}"
                ratio = ""
                if side != "authors" and "authors" in by_side:
                    walls = [a["seconds"] / b["seconds"] for a, b in zip(runs, by_side["authors"], strict=True)]
                    cpus = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(runs, by_side["authors"], strict=True)]
                    row["wall_ratio_to_authors"], row["cpu_ratio_to_authors"] = walls, cpus
                    ratio = f"wall {spread(walls)}, CPU {spread(cpus)}"
                print(
                    f"{fixture:7s} {dtype:9s} {side:9s} {row['seconds']:9.2f} {row['cpu_seconds']:7.2f} "
                    f"{row['peak_rss_mib']:12.0f} {row['rel_l2_vs_reference']:13.2e} {kernel:>13s}  {ratio}"
                )
                rows.append(row)
    return rows


def sweep(args) -> dict:
    print("\n2. frames sweep at a 30x52 latent (390 tokens per frame), parity fixture model, float32")
    print(f"{'frames':>6s} {'memory s':>9s} {'full s':>9s} {'full/memory':>12s}")
    table = {}
    for frames in (40, 80, 160):
        row = {}
        for attention in ("memory", "full"):
            case = {"side": "sweep", "attention": attention, "frames": frames, "threads": args.threads}
            row[attention] = spawn(case)["seconds"]
        table[frames] = row
        print(f"{frames:6d} {row['memory']:9.2f} {row['full']:9.2f} {row['full'] / row['memory']:12.2f}")
    for attention in ("memory", "full"):
        growth = table[160][attention] / table[40][attention]
        print(f"{attention}: 160 vs 40 frames costs {growth:.1f}x (linear = 4x, quadratic = 16x)")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="dit_forward.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors-src", type=Path, help="checkout of the authors' HyDRA repository")
    parser.add_argument("--baseline-src", type=Path, help="another hydra-wm checkout (e.g. a previous commit)")
    parser.add_argument("--pairs", type=int, default=3, help="processes per side and case, interleaved")
    parser.add_argument("--repeats", type=int, default=2, help="timed forward passes per process (fastest counts)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    parser.add_argument("--fixtures", nargs="+", choices=sorted(FIXTURES), default=["parity", "hd128"])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--profile", action="store_true", help="also measure the attention kernel's own time")
    parser.add_argument("--sweep", action="store_true", help="also the memory-vs-full frames sweep")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        case = json.loads(args.child)
        print(json.dumps(run_sweep_case(case) if case["side"] == "sweep" else run_case(case)))
        return 0
    for name in ("pairs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    if args.threads < 0:
        parser.error(f"--threads: expected 0 (torch's default) or more, got {args.threads}")
    sides: list[tuple[str, str | None]] = [("ours", None)]
    for side, src in (("authors", args.authors_src), ("baseline", args.baseline_src)):
        if src is None:
            continue
        if side == "authors" and not (src / AUTHORS_DIT).is_file():
            parser.error(f"--authors-src {src}: {AUTHORS_DIT} not found (expected a checkout of H-EmbodVis/HyDRA)")
        if side == "baseline" and not (src / "hydra_wm" / "__init__.py").is_file():
            parser.error(f"--baseline-src {src}: hydra_wm/__init__.py not found (expected a hydra-wm checkout)")
        sides.append((side, str(src.resolve())))
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json {args.json}: folder {args.json.parent} does not exist")

    import torch

    load = os.getloadavg()
    print(
        f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"(CPU capability {torch.backends.cpu.get_cpu_capability()}), threads per process: "
        f"{args.threads or torch.get_num_threads()}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"\n1. reference fixtures, sides {', '.join(name for name, _ in sides)}; {args.pairs} pairs")
    results = fixtures_table(args, sides)
    summary = {"cpu": cpu_model(), "torch": torch.__version__, "load_before": load, "args": sys.argv[1:]}
    summary["fixtures"] = summarise(args, results, sides)
    if args.sweep:
        summary["sweep"] = sweep(args)
    summary["load_after"] = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in summary['load_after'])}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
