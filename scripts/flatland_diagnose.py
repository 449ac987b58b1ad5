"""Where a Flatland model's errors come from: the model (per noise level) or the sampler (steps, shift).

    python scripts/flatland_diagnose.py [WEIGHTS ...] [--attention memory] [--seed 2000] [--samples 8]
        [--steps 1 5 20 50 100] [--shifts 1 3] [--logit-scales 0.75 1.25] [--threads 2] [--json out.json]

For each model (the shipped ones by `--attention`, or DiT files), on `--samples` held-out clips of its world
(world seed `--seed`; training used 0, the README table 1000, validation 2000):

1. Per noise level sigma: the target latents noised to sigma (fixed noise), the context clean, one forward pass.
   Prints the velocity MSE (what training minimises with `--loss-weighting none`), the MSE of the clean-frame
   prediction x0 = x_t - sigma v in latent space, and the PSNR of that prediction decoded to pixels (also pooled
   over the background and over the subjects' pixels, and the PSNR of the input alone, c_skip * x_t). At sigma near
   1 the input holds no trace of the target, so the x0 PSNR there is what the model draws from the context alone:
   a model that copies the returning views scores close to the copy-the-closest-camera baseline; one that has
   learned the palette and layout only scores far below.
   `--logit-scales S ...` repeats the forward passes with every attention logit times S: if some S lowers the
   x0 MSE, the model's attention temperature is off for the objective it was trained on.
2. Samples: 20-step (etc.) Euler sampling with each number of steps and shift, scored with the demo's exact
   metrics (PSNR, background revisited beyond the window, subject presence after re-entry, retrieval).

If the x0 PSNR at high sigma is low, the grain comes from the model (it cannot tell the target from the context
and draws a blurred mean that sampling turns into speckle); if it is high but sampled frames score low, from the
sampler. Records the numbers with `--json`.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hydra_wm.flatland import clip_to_item, render_clip
from hydra_wm.flatland.model import ATTENTIONS, load_flatland_model, mean_scores, run_clip
from hydra_wm.metrics import psnr
from hydra_wm.models.dit import preconditioning

SIGMAS = (0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.98)


def _pooled_psnr(error: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB, pixels in [-1, 1]) of the mean squared error over the pixels where `mask` holds."""
    return float(10 * torch.log10(4.0 / error[mask].mean().clamp(min=1e-10))) if mask.any() else float("nan")


@torch.no_grad()
def noise_levels(model, clips, sigmas=SIGMAS, seed: int = 0) -> list[dict]:
    """Per sigma, one forward pass over `clips`: velocity MSE, x0 MSE (latents), x0 PSNR (pixels, dB; mean over
    frames), and pooled over all target pixels: the x0 PSNR on background and on subject pixels of the truth, and
    the PSNR of the best linear estimate from the input alone, c_skip * x_t (`models.dit.preconditioning`): what
    a model that passes its input through scores, the floor a denoiser should beat at low noise."""
    items = [clip_to_item(clip, model.flatland, model.codec.latent_stride) for clip in clips]
    context = torch.cat([model.codec.encode(item["context"][None]) for item in items])  # (B, C, Tc, h, w)
    target = torch.cat([model.codec.encode(item["target"][None]) for item in items])
    cam_context = torch.stack([item["context_cameras"] for item in items])
    cam_target = torch.stack([item["target_cameras"] for item in items])
    text = torch.zeros(len(items), 1, model.dit.cfg.text_dim)
    truth = model.codec.decode(target).clamp(-1, 1)  # (B, 3, Tt, H, W)
    subject = torch.stack([torch.from_numpy(clip.labels[context.shape[2] :] > 0) for clip in clips])  # (B, Tt, H, W)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        noise = torch.randn(target.shape, generator=generator)
        noisy = (1 - sigma) * target + sigma * noise
        timestep = torch.full((len(items),), 1000.0 * sigma)
        latents = torch.cat([context, noisy], dim=2)
        velocity = model.dit(latents, timestep, text, cam_context, cam_target)[:, :, context.shape[2] :]
        x0 = noisy - sigma * velocity
        pixels = model.codec.decode(x0).clamp(-1, 1)
        error = (pixels - truth).pow(2).mean(1)  # (B, Tt, H, W)
        skip = model.codec.decode(preconditioning(torch.tensor(sigma))[0] * noisy).clamp(-1, 1)
        rows.append(
            {
                "sigma": sigma,
                "velocity_mse": float((velocity - (noise - target)).pow(2).mean()),
                "x0_mse": float((x0 - target).pow(2).mean()),
                "x0_psnr": float(
                    torch.cat([psnr(p, t, max_db=100.0) for p, t in zip(pixels, truth, strict=True)]).mean()
                ),
                "x0_psnr_background": _pooled_psnr(error, ~subject),
                "x0_psnr_subjects": _pooled_psnr(error, subject),
                "input_psnr": _pooled_psnr((skip - truth).pow(2).mean(1), torch.ones_like(subject)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", nargs="*", help="DiT files (default: the shipped model of --attention)")
    parser.add_argument("--attention", choices=ATTENTIONS, default="memory")
    parser.add_argument("--seed", type=int, default=2000, help="Flatland world seed of the clips")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 20, 50, 100], help="sampling steps")
    parser.add_argument("--shifts", type=float, nargs="+", default=[1.0], help="sampling time shifts")
    parser.add_argument(
        "--logit-scales",
        type=float,
        nargs="*",
        default=[],
        help="also the x0 MSE per sigma with every attention logit times each S (DiTConfig.attention_logit_scale)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {}
    for weights in args.weights or [None]:
        model = load_flatland_model(args.attention, weights)
        name = str(model.path)
        clips = [render_clip(model.flatland, args.seed, index) for index in range(args.samples)]
        print(f"== {name}: {args.samples} clips of {model.card.flatland_preset}, world seed {args.seed}")
        levels = noise_levels(model, clips)
        print("sigma  velocity MSE  x0 MSE  x0 PSNR  background  subjects  input alone (dB)")
        for row in levels:
            print(
                f"{row['sigma']:.2f}   {row['velocity_mse']:.4f}      {row['x0_mse']:.4f}  {row['x0_psnr']:7.2f}  "
                f"{row['x0_psnr_background']:10.2f}  {row['x0_psnr_subjects']:8.2f}  {row['input_psnr']:.2f}"
            )
        calibration = {}
        for scale in args.logit_scales:  # is the attention temperature what the training objective wants?
            scaled = load_flatland_model(args.attention, weights, logit_scale=scale)
            calibration[scale] = [row["x0_mse"] for row in noise_levels(scaled, clips)]
            print(f"logits x {scale:g}: x0 MSE " + "  ".join(f"{m:.4f}" for m in calibration[scale]))
        sampled = []
        for shift in args.shifts:
            for steps in args.steps:
                start = time.perf_counter()
                scores = mean_scores([run_clip(model, clip, num_steps=steps, shift=shift).scores for clip in clips])
                row = {"shift": shift, "steps": steps, "seconds": time.perf_counter() - start}
                row.update({k: scores.get(k) for k in ("psnr", "background_psnr_revisit", "presence_reentry")})
                row["retrieval_same_view"] = scores.get("retrieval_same_view")
                sampled.append(row)
                print(
                    f"shift {shift:g}, {steps:3d} steps: PSNR {row['psnr']:.2f}, bg revisited "
                    f"{row['background_psnr_revisit']:.2f}, presence re-entry {row['presence_reentry']:.3f}"
                    + (f", top-1 same view {row['retrieval_same_view']:.2f}" if row["retrieval_same_view"] else "")
                )
        report[name] = {"noise_levels": levels, "logit_scales": calibration, "sampling": sampled}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
