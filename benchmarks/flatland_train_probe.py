"""Training-speed probe of the built-in Flatland model: `flatland-tiny` on pixel-codec latents, on the CPU.

    python benchmarks/flatland_train_probe.py [--attention memory|window|full] [--steps 50] [--batch 8]
        [--flatland small] [--clips 512] [--codec-factor 2] [--threads 2] [--lr 3e-4] [--timesteps sample]
        [--weighting none]

Trains a fresh `flatland-tiny` DiT (`--trainable all`, float32) with `hydra_wm.training.train` on an in-memory
`FlatlandDataset` (`small`: 32x32, 20 + 20 frames), each clip rendered and encoded on the fly by `PixelCodec`
(space-to-depth 2, one latent frame per video frame) with a null text embedding, through `EncodedDataset`
(`flatland.training.flatland_training_dataset`): the data `hydra-wm train flatland:small` trains on. Reports s/step and
samples/s (from the training log, first logged window dropped as warm-up) and the loss curve (mean of the
first and of the last 10 steps). Wall-clock figures depend on what else the machine runs: report it with them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from hydra_wm.config import ATTENTION_MODES, dit_config
from hydra_wm.flatland.training import flatland_training_dataset
from hydra_wm.training import TrainConfig, train
from hydra_wm.training.config import LOSS_WEIGHTING, TIMESTEP_SAMPLING

PRESET = "flatland-tiny"


def probe_config(out: str, **changes) -> TrainConfig:
    """The probe's training settings (fresh `flatland-tiny`, everything trains, float32 on the CPU)."""
    values = dict(
        out=out,
        preset=PRESET,
        trainable="all",
        attention="memory",
        steps=50,
        batch_size=8,
        lr=3e-4,
        timesteps="sample",
        loss_weighting="none",
        precision="fp32",
        device="cpu",
        activation_checkpointing=False,
        log_every=5,
        save_every=10**9,
        export=None,
        progress=False,
    )
    return TrainConfig(**{**values, **changes})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="memory", choices=ATTENTION_MODES)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--flatland", default="small", help="Flatland preset")
    parser.add_argument("--clips", type=int, default=512, help="clips in the training set")
    parser.add_argument("--codec-factor", type=int, default=2, help="PixelCodec space-to-depth factor")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--timesteps", default="sample", choices=TIMESTEP_SAMPLING)
    parser.add_argument("--weighting", default="none", choices=LOSS_WEIGHTING)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = flatland_training_dataset(
        args.flatland, args.clips, factor=args.codec_factor, text_dim=dit_config(PRESET).text_dim
    )
    first = dataset[0]
    with tempfile.TemporaryDirectory() as out:
        config = probe_config(
            out,
            attention=args.attention,
            steps=args.steps,
            batch_size=args.batch,
            lr=args.lr,
            timesteps=args.timesteps,
            loss_weighting=args.weighting,
        )
        start = time.perf_counter()
        result = train(config, dataset)
        wall = time.perf_counter() - start
        log = [json.loads(line) for line in open(f"{out}/train_log.jsonl")]
    steady = log[1:] or log
    seconds = float(np.average([r["step_seconds"] for r in steady], weights=[5] * len(steady)))
    losses = result.losses
    figures = {
        "attention": args.attention,
        "steps": result.step,
        "batch": args.batch,
        "threads": args.threads,
        "codec_factor": args.codec_factor,
        "latents": list(first["context_latents"].shape),
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "wall_seconds": round(wall, 1),
        "seconds_per_step": round(seconds, 3),
        "samples_per_second": round(args.batch / seconds, 2),
        "loss_first10": round(float(np.mean(losses[:10])), 4),
        "loss_last10": round(float(np.mean(losses[-10:])), 4),
        "loss_log": [(r["step"], round(r["loss"], 4)) for r in log],
    }
    for key, value in figures.items():
        print(f"{key}: {json.dumps(value)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
