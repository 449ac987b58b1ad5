"""Validation curve of a Flatland training run: its kept checkpoints scored on held-out validation clips.

    python scripts/flatland_validate.py RUN [--step N ...] [--seed 2000] [--samples 8] [--num-steps 20]
        [--shift 1.0] [--ema] [--threads N] [--retrieval camera] [--view-snap TOL]

For each checkpoint in RUN/checkpoints (all of them, or the `--step`s named; train with `--keep-every N` so that
milestones survive `--keep-checkpoints`), this exports the model as `hydra-wm export` does (raw weights, or the EMA
with `--ema`), generates `--samples` clips of Flatland world seed `--seed` with the demo's path
(`flatland.model.run_clip`: the same numbers `hydra-wm demo --weights EXPORTED --seed S --samples N --no-video`
prints) and averages the exact metrics. Seeds: training uses world seed 0, the results table (docs/results.md) 1000,
validation 2000.

Results go to RUN/validation/SETTINGS.json (one file per setting: seed, samples, sampling steps and shift, raw or
EMA, retrieval, view snapping), keyed by checkpoint step; checkpoints already scored there are not scored again,
so re-running after more training adds only the new ones. Prints a markdown table (PSNR, after re-entry,
background revisited beyond the window's reach, subject presence and missing after re-entry, and for memory
models how often the top-1 retrieved memory frame shows the same view, with chance).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from hydra_wm.config import RETRIEVAL_MODES
from hydra_wm.errors import HydraError, InputError
from hydra_wm.flatland import render_clip
from hydra_wm.flatland.model import FlatlandModel, ModelCard, mean_scores, run_clip
from hydra_wm.io_utils import read_json, write_text_atomic
from hydra_wm.models.codecs import PixelCodec
from hydra_wm.models.loading import load_dit
from hydra_wm.training import export_checkpoint
from hydra_wm.training.checkpoint import CHECKPOINT_DIR, checkpoint_step

VALIDATION_SEED = 2000
COLUMNS = [
    ("psnr", "PSNR"),
    ("psnr_reentry", "PSNR re-entry"),
    ("background_psnr_revisit", "bg PSNR revisited"),
    ("presence_reentry", "presence re-entry"),
    ("missing_reentry", "missing re-entry"),
    ("retrieval_same_view", "same view"),
    ("retrieval_same_view_chance", "chance"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `hydra-wm train flatland:PRESET` output folder")
    parser.add_argument("--step", type=int, action="append", help="score only this checkpoint step (repeatable)")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED, help="Flatland world seed of the clips")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--shift", type=float, default=1.0, help="sampling time shift")
    parser.add_argument("--ema", action="store_true", help="score the EMA weights (default: raw, as shipped)")
    parser.add_argument("--retrieval", choices=RETRIEVAL_MODES, help="override a memory model's ranking")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--view-snap", type=float, default=0.0, help="sample with view snapping at this tolerance (0: off)"
    )
    return parser.parse_args(argv)


def checkpoints(run: Path, steps: list[int] | None) -> dict[int, Path]:
    """{step: path} of the run's checkpoints (only `steps` when given: each must exist)."""
    found = {checkpoint_step(p): p for p in sorted((run / CHECKPOINT_DIR).glob("step_*.safetensors"))}
    found.pop(-1, None)
    if not found:
        raise InputError(f"{run / CHECKPOINT_DIR}: no training checkpoints (expected step_*.safetensors)")
    if steps:
        missing = sorted(set(steps) - set(found))
        if missing:
            raise InputError(f"{run / CHECKPOINT_DIR}: no checkpoint for --step {missing[0]} (have {sorted(found)})")
        found = {s: found[s] for s in sorted(set(steps))}
    return found


def card_for_run(run: Path, args: argparse.Namespace) -> ModelCard:
    config = read_json(run / "config.json")
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, str) or not data.startswith("flatland:"):
        raise InputError(f"{run / 'config.json'}: data: expected a Flatland run (flatland:PRESET), got {data!r}")
    factor = config.get("flatland_codec_factor", 2)
    return ModelCard(
        flatland_preset=data.removeprefix("flatland:"),
        codec_factor=factor,
        num_steps=args.num_steps,
        shift=args.shift,
        view_snap=args.view_snap,
    )


def score_checkpoint(path: Path, card: ModelCard, args: argparse.Namespace) -> dict:
    """Mean exact metrics of one checkpoint on the validation clips (the demo path, in this process)."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = export_checkpoint(path, Path(tmp) / "model.safetensors", use_ema=args.ema)
        dit = load_dit(weights, dtype=torch.float32, **({"retrieval": args.retrieval} if args.retrieval else {}))
    model = FlatlandModel(dit.eval(), PixelCodec(card.codec_factor), card, path)
    scores = []
    for index in tqdm(range(args.samples), desc=f"step {checkpoint_step(path)}", unit="clip", leave=False):
        scores.append(run_clip(model, render_clip(model.flatland, args.seed, index), noise_seed=0).scores)
    return mean_scores(scores)


def markdown(results: dict[str, dict]) -> str:
    shown = [(key, name) for key, name in COLUMNS if any(key in r for r in results.values())]
    lines = ["| step | " + " | ".join(name for _, name in shown) + " |", "|---:|" + "---:|" * len(shown)]
    for step, scores in sorted(results.items(), key=lambda item: int(item[0])):
        values = [scores.get(key, math.nan) for key, _ in shown]
        lines.append(f"| {int(step):,} | " + " | ".join("–" if math.isnan(v) else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.samples < 1 or args.num_steps < 1:
            raise InputError(f"--samples and --num-steps: expected at least 1, got {args.samples}, {args.num_steps}")
        if args.view_snap < 0:
            raise InputError(f"--view-snap: expected a tolerance >= 0, got {args.view_snap}")
        card = card_for_run(args.run, args)
        found = checkpoints(args.run, args.step)
        if args.threads:
            torch.set_num_threads(args.threads)
        settings = {
            "seed": args.seed,
            "samples": args.samples,
            "num_steps": args.num_steps,
            "shift": args.shift,
            "weights": "ema" if args.ema else "raw",
            "retrieval": args.retrieval or "model",
        }
        if args.view_snap:  # files of plain sampling keep their earlier names
            settings["view_snap"] = args.view_snap
        name = "-".join(f"{k}{v}" for k, v in settings.items()) + ".json"
        out = args.run / "validation" / name
        results = read_json(out)["checkpoints"] if out.is_file() else {}
        todo = [step for step in found if str(step) not in results]
        print(
            f"flatland_validate: {args.run} ({card.flatland_preset}), {len(found)} checkpoint(s), "
            f"{len(todo)} to score on {args.samples} clip(s) of world seed {args.seed}"
        )
        for step in tqdm(todo, desc="checkpoints", unit="ckpt"):
            results[str(step)] = score_checkpoint(found[step], card, args)
            # written after every checkpoint: an interrupted validation keeps what it scored
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out, json.dumps({"settings": settings, "checkpoints": results}, indent=1, allow_nan=True))
        print(markdown({str(step): results[str(step)] for step in found}))
        print(f"wrote {out}")
    except HydraError as exc:
        print(f"flatland_validate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
