"""GPU check: the real-size HyDRA model's speed and memory on one GPU, in one command, written to one JSON file.

    python benchmarks/gpu_check.py --out gpu_check.json            # CUDA: real size, ~3-5 min on one H100
    python benchmarks/gpu_check.py --tiny --out gpu_check.json     # any machine: the same phases at a tiny size

Real size: the `wan2.1-t2v-1.3b` DiT with HyDRA's modules (2.06 B parameters) and the Wan2.1 VAE, random bf16
weights (no files needed), a 480x832 clip of 20 context + 20 target latent frames (77 + 77 video frames; 62,400
tokens), 512 text tokens. Without CUDA (or with `--tiny`) the `debug` DiT and VAE run at 2 + 2 latent frames of 4x4
(in float32 on a CPU), so that the test suite keeps this script working. Phases, each timed after a warm-up call,
each with its own CUDA peak (`torch.cuda.max_memory_allocated`), each recorded even when another fails (its error
is written instead):

1. `forward`: one DiT forward pass (batch 1) in `memory` mode (gathered keys, the default), in `memory` mode with
   `attention_backend="flex"` (FlexAttention with a block mask; its largest difference from the gather path is
   recorded) and in `full` mode (dense attention over every frame);
2. `generation`: classifier-free-guided denoising steps (`pipeline.denoise`, prompt and negative prompt batched),
   `--steps` of them timed, extrapolated to 50, plus one VAE encode of the 77-frame context clip and one decode of
   the 20 target latent frames: the time of a 50-step continuation without the text encoder (its one umT5 pass
   is not run: 5.7 B parameters of random weights would be 11 GB for a few milliseconds of compute);
3. `offload`: the peak GPU memory of one guided step plus one VAE decode with `--offload none | model | blocks`
   (`hydra_wm.offload`), the models loaded as `hydra-wm generate` loads them; the umT5 weights that `none` would
   also keep resident are added from their shapes (`t5_resident_gb`);
4. `train`: one training step at the clip size: float32 weights, bf16 autocast, activation checkpointing of every
   block (`training.parallel.apply_activation_checkpointing`), AdamW, the flow-matching MSE on the target frames.

The goals the JSON is checked against (`goals`): a 480p 77-frame continuation (50 steps, CFG) in at most 90 s, and
at most 24 GB of GPU memory with offload. A phase that would start after `--budget-s` seconds is skipped (recorded).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

GB = 1e9
REAL = {"dit": "wan2.1-t2v-1.3b", "vae": "wan2.1", "frames": 20, "height": 480, "width": 832, "text": (512, 4096)}
TINY = {"dit": "debug", "vae": "debug", "frames": 2, "height": 32, "width": 32, "text": (8, 16)}
GOAL_SECONDS, GOAL_OFFLOAD_GB, STEPS = 90.0, 24.0, 50


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


class Check:
    """Shared state of one run: sizes, device, dtype, the clock."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.size = TINY if args.tiny else REAL
        # bf16 as the real model runs on a GPU; float32 at the tiny size on a CPU (bf16 convolutions are slow there)
        self.dtype = torch.bfloat16 if self.cuda or not args.tiny else torch.float32
        self.steps = args.steps
        self.budget = args.budget_s
        self.start = time.perf_counter()
        self.latent = (self.size["frames"], self.size["height"] // 8, self.size["width"] // 8)

    # -------------------------------------------------------------------------------------------- helpers
    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        return self.torch.cuda.max_memory_allocated(self.device) / GB if self.cuda else None

    def timed(self, fn):
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        return out, time.perf_counter() - start

    def dit_config(self, **overrides):
        from hydra_wm.config import dit_config

        return dit_config(self.size["dit"], **overrides)

    def random_module(self, module, device, seed: int, dtype=None):
        """A meta-device module materialised on `device` with small random weights."""
        from hydra_wm.models.loading import random_weights

        return random_weights(module, dtype or self.dtype, device, seed)

    def dit(self, device=None, dtype=None, **overrides):
        from hydra_wm.models.dit import HydraDiT

        with self.torch.device("meta"):
            model = HydraDiT(self.dit_config(**overrides))
        return self.random_module(model, device or self.device, seed=0, dtype=dtype)

    def vae(self, device=None):
        from hydra_wm.models.vae import WanVAE, vae_config

        cfg = vae_config(self.size["vae"])
        channels = self.dit_config().in_dim  # the tiny DiT has 4 latent channels; the real one the VAE's 16
        if channels != cfg.z_dim:
            cfg = vae_config(self.size["vae"], z_dim=channels, latents_mean=(0.0,) * channels,
                             latents_std=(1.0,) * channels)  # fmt: skip
        with self.torch.device("meta"):
            model = WanVAE(cfg)
        return self.random_module(model, device or self.device, seed=1)

    def inputs(self, batch: int = 1, seed: int = 0) -> dict:
        """Latents [context ; target], timestep, text, cameras on the device."""
        torch = self.torch
        cfg = self.dit_config()
        frames, h, w = self.latent
        g = torch.Generator().manual_seed(seed)
        length, width = self.size["text"]
        return {
            "latents": torch.randn(batch, cfg.in_dim, 2 * frames, h, w, generator=g).to(self.device),
            "timestep": torch.tensor([500.0], device=self.device),
            "text": torch.randn(batch, length, width, generator=g).to(self.device),
            "cam_context": (0.1 * torch.randn(batch, frames, 12, generator=g)).to(self.device),
            "cam_target": (0.1 * torch.randn(batch, frames, 12, generator=g)).to(self.device),
        }

    def conditioning(self):
        from hydra_wm.pipeline import Conditioning

        x = self.inputs(batch=1, seed=1)
        frames = self.latent[0]
        return Conditioning(
            context_latents=x["latents"][:, :, :frames].cpu(),
            text=x["text"].cpu(),
            negative_text=self.torch.zeros_like(x["text"]).cpu(),
            cam_context=x["cam_context"].cpu(),
            cam_target=x["cam_target"].cpu(),
        )

    # -------------------------------------------------------------------------------------------- phases
    def model_info(self) -> dict:
        from hydra_wm.models.dit import HydraDiT

        with self.torch.device("meta"):
            model = HydraDiT(self.dit_config())
        params = sum(p.numel() for p in model.parameters())
        cfg = model.cfg
        frames, h, w = self.latent
        pt, ph, pw = cfg.patch_size
        return {
            "preset": self.size["dit"],
            "parameters": params,
            "parameters_billions": params / 1e9,
            "bf16_weights_gb": 2 * params / GB,
            "latent_frames": [frames, frames],
            "video_size": [self.size["height"], self.size["width"]],
            "tokens": 2 * frames // pt * (h // ph) * (w // pw),
            "head_dim": cfg.head_dim,
        }

    def forward(self) -> dict:
        torch = self.torch
        x = self.inputs()
        args = (x["latents"], x["timestep"], x["text"], x["cam_context"], x["cam_target"])
        results, outputs = {}, {}
        for name, overrides in (
            ("memory", {"attention": "memory"}),
            ("memory_flex", {"attention": "memory", "attention_backend": "flex"}),
            ("full", {"attention": "full"}),
        ):
            self.reset_peak()
            try:
                model = self.dit(**overrides)
                with torch.no_grad():
                    _, warm = self.timed(partial(model, *args))
                    self.reset_peak()
                    out, seconds = self.timed(partial(model, *args))
                results[name] = {"seconds": seconds, "first_call_seconds": warm, "peak_gb": self.peak_gb()}
                outputs[name] = out.float()
                del model, out
            except Exception as exc:  # recorded, the other variants still run
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        if "memory" in outputs and "memory_flex" in outputs:
            diff = (outputs["memory_flex"] - outputs["memory"]).abs()
            results["memory_flex"]["max_abs_diff_vs_gather"] = diff.max().item()
            results["memory_flex"]["output_max_abs"] = outputs["memory"].abs().max().item()
        return results

    def generation(self) -> dict:
        from hydra_wm.flow import FlowMatchSchedule
        from hydra_wm.pipeline import denoise, initial_noise

        torch = self.torch
        self.reset_peak()
        result = {}
        vae = self.vae()
        frames = self.latent[0]
        video_frames = 1 + 4 * (frames - 1)
        video = torch.rand(1, 3, video_frames, self.size["height"], self.size["width"], generator=None)
        video = (2 * video - 1).to(self.device)
        with torch.no_grad():
            _, result["vae_encode_seconds"] = self.timed(partial(vae.encode, video))
            latents = torch.randn(1, self.dit_config().in_dim, frames, *self.latent[1:], device=self.device)
            _, result["vae_decode_seconds"] = self.timed(partial(vae.decode, latents))
        result["vae_peak_gb"] = self.peak_gb()
        del vae, video
        self.reset_peak()
        dit = self.dit()
        cond = self.conditioning()
        noise = initial_noise(0, (1, self.dit_config().in_dim, *self.latent)).to(self.device)
        with torch.no_grad():
            _, result["first_step_seconds"] = self.timed(
                lambda: denoise(dit, FlowMatchSchedule(num_inference_steps=1), noise, cond, progress=False)
            )
            _, seconds = self.timed(
                lambda: denoise(dit, FlowMatchSchedule(num_inference_steps=self.steps), noise, cond, progress=False)
            )
        result["measured_steps"] = self.steps
        result["step_seconds"] = seconds / self.steps
        result["dit_peak_gb"] = self.peak_gb()
        result["dit_50_steps_seconds"] = STEPS * result["step_seconds"]
        result["continuation_seconds"] = (
            result["vae_encode_seconds"] + result["dit_50_steps_seconds"] + result["vae_decode_seconds"]
        )
        return result

    def offload(self) -> dict:
        from hydra_wm.flow import FlowMatchSchedule
        from hydra_wm.models.text_encoder import TextEncoderConfig, original_t5_shapes
        from hydra_wm.offload import OFFLOAD_MODES, ModelSlots, enable_block_offload
        from hydra_wm.pipeline import denoise, initial_noise

        torch = self.torch
        t5_params = sum(math.prod(s) for s in original_t5_shapes(TextEncoderConfig()).values())
        results = {"t5_resident_gb": 2 * t5_params / GB}
        for mode in OFFLOAD_MODES:
            self.reset_peak()
            try:

                def load_dit(mode=mode):
                    if mode != "blocks":
                        return self.dit()
                    dit = self.dit(device="cpu")
                    enable_block_offload(dit, self.device)
                    return dit

                slots = ModelSlots({"vae": self.vae, "dit": load_dit}, offload=mode, device=self.device)
                cond = self.conditioning()
                noise = initial_noise(0, (1, self.dit_config().in_dim, *self.latent)).to(self.device)
                start = time.perf_counter()
                with torch.no_grad():
                    with slots.use("vae") as vae:  # the encode step's place in the order of `hydra-wm generate`
                        del vae
                    with slots.use("dit") as dit:
                        target = denoise(dit, FlowMatchSchedule(num_inference_steps=1), noise, cond, progress=False)
                        del dit
                    with slots.use("vae") as vae:
                        vae.decode(target.to(self.device))
                        del vae
                self.sync()
                results[mode] = {"seconds": time.perf_counter() - start, "peak_gb": self.peak_gb()}
                slots.release_all()
                del slots
            except Exception as exc:
                results[mode] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        if "peak_gb" in results.get("none", {}) and results["none"]["peak_gb"] is not None:
            results["none"]["peak_with_t5_gb"] = results["none"]["peak_gb"] + results["t5_resident_gb"]
        return results

    def train(self) -> dict:
        from hydra_wm.training.parallel import apply_activation_checkpointing

        torch = self.torch
        self.reset_peak()
        model = self.dit(dtype=torch.float32).train().requires_grad_(True)
        apply_activation_checkpointing(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        x = self.inputs()
        frames = self.latent[0]
        target = torch.randn_like(x["latents"][:, :, frames:])

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                out = model(x["latents"], x["timestep"], x["text"], x["cam_context"], x["cam_target"])
            loss = (out[:, :, frames:].float() - target).pow(2).mean()
            loss.backward()
            optimizer.step()
            return loss.item()

        _, first = self.timed(step)
        loss, seconds = self.timed(step)
        return {"step_seconds": seconds, "first_step_seconds": first, "peak_gb": self.peak_gb(), "loss": loss}


def environment(check: Check) -> dict:
    torch = check.torch
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(check.device)}
    if check.cuda:
        props = torch.cuda.get_device_properties(check.device)
        env.update(gpu=props.name, gpu_memory_gb=props.total_memory / GB, cuda=torch.version.cuda)
    else:
        env["cpu"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def goals(result: dict, tiny: bool) -> dict:
    gen = result.get("generation", {})
    off = result.get("offload", {})
    peaks = [off[m]["peak_gb"] for m in ("model", "blocks") if (off.get(m) or {}).get("peak_gb") is not None]
    seconds = gen.get("continuation_seconds")
    return {
        "applies": not tiny and result["environment"]["device"].startswith("cuda"),
        "continuation_seconds_max": GOAL_SECONDS,
        "continuation_seconds": seconds,
        "continuation_met": None if seconds is None else seconds <= GOAL_SECONDS,
        "offload_peak_gb_max": GOAL_OFFLOAD_GB,
        "offload_peak_gb": min(peaks) if peaks else None,
        "offload_met": None if not peaks else min(peaks) <= GOAL_OFFLOAD_GB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="gpu_check.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON file to write")
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and clip (automatic without CUDA)")
    parser.add_argument("--steps", type=int, default=2, help="guided denoising steps to time (default 2)")
    parser.add_argument("--budget-s", type=float, default=360.0, help="start no phase after this many seconds")
    parser.add_argument(
        "--phases", nargs="+", choices=("forward", "generation", "offload", "train"),
        default=["forward", "generation", "offload", "train"],
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps: expected a positive integer, got {args.steps}")
    if not args.budget_s > 0:
        parser.error(f"--budget-s: expected a positive number of seconds, got {args.budget_s}")
    if not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: folder {args.out.parent} does not exist")

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device: expected cuda, cuda:N or cpu, got {args.device!r}")
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device: expected cuda, cuda:N or cpu, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    if device.type == "cpu":
        args.tiny = True  # the real size is hours of CPU time
    check = Check(args)
    result = {"tiny": args.tiny, "environment": environment(check), "model": check.model_info()}
    print(f"gpu_check: {result['environment']}, {'tiny' if args.tiny else 'real'} size", flush=True)
    for phase in args.phases:
        elapsed = time.perf_counter() - check.start
        if elapsed > args.budget_s:
            result[phase] = {"skipped": f"time budget: {elapsed:.0f} s > {args.budget_s:.0f} s"}
            continue
        try:
            result[phase] = getattr(check, phase)()
        except Exception as exc:  # recorded; the next phases still run
            result[phase] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        check.reset_peak()
        print(f"gpu_check: {phase} {json.dumps(result[phase])}", flush=True)
    result["total_seconds"] = time.perf_counter() - check.start
    result["goals"] = goals(result, args.tiny)
    from hydra_wm.io_utils import write_text_atomic

    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"gpu_check: wrote {args.out} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
