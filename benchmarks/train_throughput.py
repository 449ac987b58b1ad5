"""Training throughput and memory: the `debug` preset measured on the CPU, the real size derived on paper.

    python benchmarks/train_throughput.py [--steps 20] [--threads 1] [--no-paper]

1. Measured: samples/s and peak resident memory of `hydra_wm.training.train` on the `debug` preset (one process,
   float32, batch 2 of 8 + 8 latent frames of 16x16 with 4 channels = 1,024 tokens), with and without per-block
   activation checkpointing. Each configuration runs in its own subprocess so that its peak RSS is its own.
2. On paper: memory per GPU of the real model (Wan2.1-T2V-1.3B + HyDRA) under FSDP at 62,400 tokens
   (40 latent frames of 30x52 tokens: 2 x 77 video frames at 480x832), batch 1 per GPU, bf16, per-block
   checkpointing. Parameter counts are exact (built on the meta device). Activations: the bytes one real-width
   block saves for its backward pass are measured at two small token counts under bf16 autocast on the CPU
   (saved-tensor hooks, each storage counted once, parameters excluded) and extrapolated linearly in tokens
   (every saved tensor is per token, or constant: the text keys/values and bf16 weight copies).

Wall-clock timings depend on what else the machine runs; report the machine with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TOKENS = 62_400  # 40 latent frames x 30 x 52 tokens
CHECKPOINT_DTYPE_BYTES = 2  # block inputs kept by activation checkpointing, bf16 under FSDP's bf16 parameters


def measure_debug(steps: int, checkpointing: bool, attention: str) -> dict:
    """Train the debug preset for `steps` steps in this process; returns samples/s and peak RSS."""
    import torch

    from hydra_wm.training import TrainConfig, train

    generator = torch.Generator().manual_seed(0)
    item = lambda: {  # noqa: E731
        "context_latents": torch.randn(4, 8, 16, 16, generator=generator),
        "target_latents": torch.randn(4, 8, 16, 16, generator=generator),
        "context_cameras": torch.randn(8, 12, generator=generator),
        "target_cameras": torch.randn(8, 12, generator=generator),
        "text": torch.randn(64, 16, generator=generator),
    }
    dataset = [item() for _ in range(16)]
    idle_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            out=out,
            preset="debug",
            attention=attention,
            steps=steps,
            batch_size=2,
            device="cpu",
            progress=False,
            log_every=5,
            activation_checkpointing=checkpointing,
            export=None,
        )
        start = time.perf_counter()
        train(config, dataset=dataset)
        seconds = time.perf_counter() - start
        log = [json.loads(line) for line in open(os.path.join(out, "train_log.jsonl"))]
    timed = log[1:]  # the first interval includes warm-up
    steps_timed = 5 * len(timed)
    step_seconds = sum(r["step_seconds"] * 5 for r in timed) / steps_timed
    return {
        "attention": attention,
        "activation_checkpointing": checkpointing,
        "samples_per_second": 2 / step_seconds,
        "step_seconds": step_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "idle_rss_gb": idle_gb,
        "wall_seconds": seconds,
    }


def parameter_counts() -> dict:
    """Exact parameter counts of the real model: total, trainable (reference set), per block."""
    import torch

    from hydra_wm.config import dit_config
    from hydra_wm.models.dit import HydraDiT
    from hydra_wm.training.loop import set_trainable

    with torch.device("meta"):
        model = HydraDiT(dit_config("wan2.1-t2v-1.3b"))
    trainable = set_trainable(model, "hydra")
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in trainable.values()),
        "block": sum(p.numel() for p in model.blocks[0].parameters()),
        "num_layers": model.cfg.num_layers,
        "dim": model.cfg.dim,
    }


def block_saved_bytes(frames: int, rows: int, cols: int) -> int:
    """Bytes one real-width DiT block saves for backward under bf16 autocast (CPU), each storage once."""
    import torch

    from hydra_wm.config import dit_config
    from hydra_wm.models.dit import DiTBlock, Rope3D

    cfg = dit_config("wan2.1-t2v-1.3b")
    torch.manual_seed(0)
    block = DiTBlock(cfg)
    tokens = frames * rows * cols
    x = torch.randn(1, tokens, cfg.dim, requires_grad=True)
    cameras = (torch.randn(1, frames // 2, 12), torch.randn(1, frames // 2, 12))
    rope = Rope3D(cfg.head_dim, cfg.rope_theta)
    kt, kh, kw = cfg.tokenizer_kernel
    tables = {
        "tokens": rope.grid(frames, rows, cols),
        "memory": rope.grid(frames // kt, rows // kh, cols // kw, strides=(kt, kh, kw), offsets=((kt - 1) / 2, 0, 0)),
    }
    storages: dict[int, int] = {}

    def pack(tensor):
        if not isinstance(tensor, torch.nn.Parameter):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        block(x, torch.randn(1, 512, cfg.dim), torch.randn(1, 6, cfg.dim), cameras, (frames, rows, cols), tables)
    return sum(storages.values())


def paper_figure(counts: dict) -> dict:
    """Memory per GPU under FSDP at 62,400 tokens (see the module docstring), in GB (1e9 bytes)."""
    small, large = (40, 2, 4), (40, 4, 4)  # 320 and 640 tokens: 40 latent frames as the real clips
    saved = [block_saved_bytes(*shape) for shape in (small, large)]
    per_token = (saved[1] - saved[0]) / 320
    constant = saved[0] - per_token * 320
    block_activations = constant + per_token * TOKENS
    checkpoints = counts["num_layers"] * TOKENS * counts["dim"] * CHECKPOINT_DTYPE_BYTES
    # Backward transients of the block being recomputed: its FFN hidden gradient (8960 wide) and ~3 fp32 (L, D)
    # gradients of the residual stream.
    transients = TOKENS * (8960 * 2 + 3 * counts["dim"] * 4)
    # Unsharded bf16 parameters of the block in use and the one prefetched, and one block's fp32 gradients
    # waiting for reduce-scatter.
    gathered = 2 * counts["block"] * 2 + counts["block"] * 4
    states = counts["total"] * 4 + counts["trainable"] * (4 + 8)  # fp32 weights; fp32 grads + AdamW m, v
    activations = checkpoints + block_activations + transients
    per_gpu = {n: (states / n + gathered + activations) / 1e9 for n in (1, 8, 32)}
    return {
        "saved_bytes_per_token_per_block": per_token,
        "block_activations_gb": block_activations / 1e9,
        "checkpoints_gb": checkpoints / 1e9,
        "transients_gb": transients / 1e9,
        "gathered_gb": gathered / 1e9,
        "states_gb": states / 1e9,
        "per_gpu_gb": per_gpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-paper", action="store_true", help="skip the real-size derivation (~20 s)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.one:
        attention, checkpointing = args.one.split(",")
        print(json.dumps(measure_debug(args.steps, checkpointing == "ac", attention)))
        return
    print(f"debug preset, CPU, {args.threads} threads, batch 2 x 1,024 tokens, float32, {args.steps} steps:")
    for attention, checkpointing in (("memory", "ac"), ("memory", "no-ac"), ("window", "ac"), ("full", "ac")):
        flags = ["--one", f"{attention},{checkpointing}", "--steps", str(args.steps), "--threads", str(args.threads)]
        done = subprocess.run([sys.executable, __file__, *flags], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.splitlines()[-1])
        print(
            f"  {attention:6s} checkpointing {'on ' if checkpointing == 'ac' else 'off'}: "
            f"{result['samples_per_second']:6.1f} samples/s ({result['step_seconds'] * 1e3:.0f} ms/step), "
            f"peak RSS {result['peak_rss_gb']:.2f} GB (after imports and data: {result['idle_rss_gb']:.2f} GB)"
        )
    if args.no_paper:
        return
    counts = parameter_counts()
    figure = paper_figure(counts)
    print(
        f"\nreal size on paper: {counts['total'] / 1e9:.3f} B parameters, {counts['trainable'] / 1e9:.3f} B trainable, "
        f"{TOKENS:,} tokens, batch 1 per GPU, FSDP bf16, per-block checkpointing"
    )
    print(f"  weights fp32 + grads/AdamW for trainable: {figure['states_gb']:.1f} GB, divided over N GPUs")
    print(f"  gathered block params/grads: {figure['gathered_gb']:.2f} GB")
    print(f"  block inputs kept by checkpointing: {figure['checkpoints_gb']:.2f} GB")
    print(
        f"  one block's saved activations (measured {figure['saved_bytes_per_token_per_block']:.0f} B/token, "
        f"extrapolated): {figure['block_activations_gb']:.2f} GB"
    )
    print(f"  backward transients: {figure['transients_gb']:.2f} GB")
    for n, gb in figure["per_gpu_gb"].items():
        print(f"  N = {n:2d} GPUs: {gb:.1f} GB per GPU")


if __name__ == "__main__":
    main()
