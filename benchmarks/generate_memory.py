"""Peak memory of one denoising step of the real-size HyDRA model, with and without offload.

Builds the real-size DiT (`dit_config("wan2.1-t2v-1.3b")` with HyDRA's modules: 2.06 B parameters) and the
real-size Wan2.1 VAE (127 M) with random weights (built on the meta device, then materialised; no files
written), and runs ONE step of `pipeline.denoise` (classifier-free guidance batched, B = 2, 512 text tokens)
at a reduced size. Each offload mode runs in a fresh subprocess, so `ru_maxrss` is that mode's own peak:

* `none`   - DiT and VAE resident together (models kept loaded), then the step;
* `model`  - sequential model offload: the VAE is loaded and released (`ModelSlots`), then the DiT alone;
* `blocks` - as `model`, with the DiT's blocks streamed by `enable_block_offload`. On a CPU-only machine the
  "device" is the CPU itself, so RSS cannot show the saving; the column "device weights" gives the block
  bytes the offloader held on the device at most (on CUDA: `torch.cuda.max_memory_allocated` is reported).

Not measured: the umT5-XXL text encoder (5.7 B parameters, 11.4 GB in bf16; printed from its layout) that
`none` would also keep resident, and VAE encode/decode (slow on CPU; context latents are random).

    python benchmarks/generate_memory.py                                    # float32, 5+5 latent frames, 128x224
    python benchmarks/generate_memory.py --dtype bfloat16 --latent-frames 1 --height 32 --width 32 --text-length 16
    python benchmarks/generate_memory.py --device cuda --dtype bfloat16 --height 480 --width 832 --latent-frames 20

bf16 matmuls are ~80x slower than float32 on CPUs without AVX512-BF16, so on such a CPU measure time and
activation growth in float32 and the bf16 weight footprint at a tiny size (second command).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import torch

from hydra_wm.models.loading import random_weights
from hydra_wm.offload import OFFLOAD_MODES

GB = 1e9


def rss_now() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GB
    return float("nan")


def peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # Linux: kilobytes


def materialise(module: torch.nn.Module, dtype: torch.dtype, device: str, seed: int) -> torch.nn.Module:
    """Allocate a meta-device module on `device` in `dtype` and fill it with small random weights."""
    return random_weights(module, dtype, device, seed)


def nbytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def run_mode(args: argparse.Namespace) -> dict:
    from hydra_wm.config import dit_config
    from hydra_wm.flow import FlowMatchSchedule
    from hydra_wm.models.dit import HydraDiT
    from hydra_wm.models.vae import WanVAE, vae_config
    from hydra_wm.offload import ModelSlots, enable_block_offload
    from hydra_wm.pipeline import Conditioning, denoise, initial_noise

    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    baseline = rss_now()

    def load_vae():
        with torch.device("meta"):
            vae = WanVAE(vae_config("wan2.1"))
        return materialise(vae, dtype, args.device, seed=1)

    def load_dit():
        with torch.device("meta"):
            dit = HydraDiT(dit_config("wan2.1-t2v-1.3b"))
        if args.mode != "blocks":
            return materialise(dit, dtype, args.device, seed=0)
        dit = materialise(dit, dtype, "cpu", seed=0)
        enable_block_offload(dit, device)
        return dit

    slots = ModelSlots({"vae": load_vae, "dit": load_dit}, offload="none" if args.mode == "none" else args.mode,
                       device=device)  # fmt: skip
    with slots.use("vae") as vae:  # stands in for the encode step
        vae_bytes = nbytes(vae)
    del vae
    frames, h, w = args.latent_frames, args.height // 8, args.width // 8
    g = torch.Generator().manual_seed(0)
    cond = Conditioning(
        context_latents=torch.randn(1, 16, frames, h, w, generator=g),
        text=torch.randn(1, args.text_length, 4096, generator=g),
        negative_text=torch.randn(1, args.text_length, 4096, generator=g),
        cam_context=0.1 * torch.randn(1, frames, 12, generator=g),
        cam_target=0.1 * torch.randn(1, frames, 12, generator=g),
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with slots.use("dit") as dit:
        offload = getattr(dit, "_block_offload", None)
        dit_bytes = nbytes(dit)
        block_bytes = sum(b.nbytes for b in offload.blocks) if offload else 0
        before_step = rss_now()
        start = time.perf_counter()
        out = denoise(dit, FlowMatchSchedule(num_inference_steps=1), initial_noise(0, (1, 16, frames, h, w)).to(device),
                      cond, guidance_scale=5.0, progress=False)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_s = time.perf_counter() - start
        device_weights = dit_bytes - block_bytes + (offload.peak_resident_bytes if offload else 0)
    assert torch.isfinite(out).all(), "non-finite output"
    device_weights += vae_bytes if args.mode == "none" else 0
    result = {
        "mode": args.mode,
        "dtype": args.dtype,
        "baseline_rss_gb": baseline,
        "rss_before_step_gb": before_step,
        "peak_rss_gb": peak_rss(),
        "dit_gb": dit_bytes / GB,
        "vae_gb": vae_bytes / GB,
        "device_weights_gb": device_weights / GB,
        "step_s": step_s,
    }
    if device.type == "cuda":
        result["cuda_peak_gb"] = torch.cuda.max_memory_allocated(device) / GB
    return result


def t5_gb(dtype: torch.dtype) -> float:
    from hydra_wm.models.text_encoder import TextEncoderConfig, original_t5_shapes

    params = sum(math.prod(s) for s in original_t5_shapes(TextEncoderConfig()).values())
    return params * torch.tensor([], dtype=dtype).element_size() / GB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=OFFLOAD_MODES, help="run one mode (internal; default: all)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--latent-frames", type=int, default=5, help="context latent frames = target latent frames")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--text-length", type=int, default=512)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    rows = []
    for mode in ("none", "model", "blocks"):
        cmd = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"mode {mode} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{mode}: done in {rows[-1]['step_s']:.1f} s", file=sys.stderr)
    tokens = 2 * args.latent_frames * (args.height // 16) * (args.width // 16)
    print(f"one denoising step, {args.latent_frames}+{args.latent_frames} latent frames at {args.height}x{args.width} "
          f"({tokens} tokens, CFG batch 2, {args.text_length} text tokens), {args.dtype}, {args.device}")  # fmt: skip
    print(f"DiT {rows[0]['dit_gb']:.2f} GB, VAE {rows[0]['vae_gb']:.2f} GB, umT5-XXL (not built) "
          f"{t5_gb(getattr(torch, args.dtype)):.2f} GB of weights")  # fmt: skip
    cuda = "cuda_peak_gb" in rows[0]
    head = "| offload | weights on device (GB) | peak RSS (GB) | peak RSS - baseline (GB) | step (s) |"
    print(head + (" CUDA peak (GB) |" if cuda else ""))
    print("|---" * (6 if cuda else 5) + "|")
    for r in rows:
        line = (f"| {r['mode']} | {r['device_weights_gb']:.2f} | {r['peak_rss_gb']:.2f} | "
                f"{r['peak_rss_gb'] - r['baseline_rss_gb']:.2f} | {r['step_s']:.1f} |")  # fmt: skip
        print(line + (f" {r['cuda_peak_gb']:.2f} |" if cuda else ""))


if __name__ == "__main__":
    main()
