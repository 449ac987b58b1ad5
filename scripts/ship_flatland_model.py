"""Ship a trained Flatland run as a built-in model: weights + machine-readable model card in
`hydra_wm/flatland/weights/`.

    python scripts/ship_flatland_model.py RUN [--num-steps 20] [--shift 1.0] [--view-snap 1.0] [--no-ema]
        [--table runs/flatland-table] [--previous-card CARD.json] [--dest DIR]

1. `hydra-wm export RUN` (EMA weights when the run kept them) to
   ``hydra_wm/flatland/weights/flatland-ATTENTION.safetensors``;
2. the card ``flatland-ATTENTION.json``: Flatland preset and sampling settings (read by `hydra-wm demo`), the
   exact training command (rebuilt from the run's config.json), steps, wall time (sum of the logged step times),
   the final logged loss, the results table's row (docs/results.md) for this model when `--table` has one, and the
   ``regression`` record `tests/test_builtin_model.py` checks: what the shipped weights score on clip 0 of world
   seed 1000 with the plain sampler; with `--view-snap TOL` (the demo's view snapping, `pipeline.ViewSnap`) the
   card's ``view_snap`` and a second record, ``regression_snap``, with the card's sampler.
   A run trained on rollout chunks (`--flatland-chunk-frames N`) ships as ``flatland-ATTENTION-rollout`` with
   ``chunk_frames`` on its card, and its ``regression`` record is a rollout of `REGRESSION_CHUNKS` chunks of
   held-out long clip 0 (`flatland.rollout.rollout_clip`, memory history).
3. With `--previous-card CARD.json` (the card of the weights RUN started from with `--init`), the card also gets
   ``lineage``: every training phase so far (command, steps, wall time), oldest first, and ``total_steps`` /
   ``total_wall_seconds`` over all phases.

`--dest DIR` writes weights and card to DIR instead of the package (a candidate that is not shipped:
`hydra-wm demo --weights DIR/flatland-ATTENTION.safetensors` runs it, `scripts/flatland_device_train.py --from DIR`
and `hydra-wm train --init` continue it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open

from hydra_wm.flatland import flatland_config, render_clip
from hydra_wm.flatland.model import HELD_OUT_SEED, WEIGHTS_DIR, load_flatland_model, run_clip, weights_path
from hydra_wm.flatland.rollout import rollout_clip, score_rollout
from hydra_wm.io_utils import read_json, write_text_atomic
from hydra_wm.models.loading import config_from_metadata
from hydra_wm.rollout import RolloutConfig
from hydra_wm.training import export_checkpoint
from hydra_wm.training.checkpoint import latest_checkpoint, read_checkpoint
from hydra_wm.training.config import field_defaults
from hydra_wm.training.loop import logged_step_seconds, read_train_log

REGRESSION_CHUNKS = 3
"""Chunks of the regression rollout of a chunk-trained model (`tests/test_builtin_model.py`)."""


def rollout_regression(model, chunks: int = REGRESSION_CHUNKS) -> dict:
    """What a chunk-trained `model` scores rolling out `chunks` chunks of held-out long clip 0 (memory history, 8
    recent + the rest of the context pre-selected, noise seed 0): the record `tests/test_builtin_model.py` checks."""
    trained = model.flatland
    config = flatland_config(model.card.flatland_preset, target_frames=chunks * trained.target_frames)
    history = RolloutConfig.for_context(trained.context_frames, trained.target_frames)
    clip = render_clip(config, HELD_OUT_SEED, 0)
    result = rollout_clip(model, clip, history, noise_seed=0)
    scores = score_rollout(result.generated, clip, config, result.chunk_frames)
    return {
        "seed": HELD_OUT_SEED,
        "index": 0,
        "noise_seed": 0,
        "chunks": chunks,
        "psnr": scores["psnr"],
        "background_psnr": scores["background_psnr"],
    }


def train_command(config: dict, steps: int, name: str, ema: bool = True) -> str:
    """The command lines that reproduce a run that stopped at `steps`: `hydra-wm train` (options that differ from
    TrainConfig's defaults) with `--stop-after steps`, then `hydra-wm export`."""
    defaults = field_defaults()
    parts = ["hydra-wm", "train", config["data"]]
    for key, value in config.items():
        same = value == defaults.get(key)
        if key in ("data", "resume", "stop_after", "progress") or same:
            continue
        option = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(option if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            parts += [option, *map(str, value)]
        else:
            parts += [option, str(value)]
    parts += ["--stop-after", str(steps)]
    return (
        " ".join(parts) + f" && hydra-wm export {config['out']} --out {name}.safetensors" + ("" if ema else " --no-ema")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--num-steps", type=int, default=20, help="sampling steps the demo uses")
    parser.add_argument("--shift", type=float, default=1.0, help="sampling time shift")
    parser.add_argument("--view-snap", type=float, default=0.0, help="the demo's view snapping tolerance (0: off)")
    parser.add_argument("--no-ema", action="store_true")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoints/step_*.safetensors of RUN (default: latest)")
    parser.add_argument("--table", type=Path, help="folder of benchmarks/flatland_table.py (adds its row)")
    parser.add_argument(
        "--previous-card", type=Path, help="card of the weights RUN was initialised from (adds the lineage)"
    )
    parser.add_argument(
        "--dest", type=Path, default=WEIGHTS_DIR, help="folder for weights and card (default: the package's)"
    )
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    config = read_json(args.run / "config.json")
    checkpoint = args.checkpoint or latest_checkpoint(args.run)
    # A run started with --init keeps the checkpoint's attention (config "attention": null), so the file's name
    # comes from the exported model's own config: export under a scratch name, then rename.
    scratch = export_checkpoint(checkpoint, args.dest / ".export-in-progress.safetensors", use_ema=not args.no_ema)
    with safe_open(str(scratch), framework="pt") as f:
        attention = config_from_metadata(f.metadata(), scratch)["attention"]
    chunk_frames = config.get("flatland_chunk_frames", 0)
    out = scratch.replace(args.dest / weights_path(attention, rollout=bool(chunk_frames)).name)
    steps = read_checkpoint(checkpoint)[1]["step"]
    log = read_train_log(args.run, up_to=steps)
    seconds = logged_step_seconds(log)
    factor = config.get("flatland_codec_factor", 2)
    card = {
        "flatland_preset": config["data"].removeprefix("flatland:"),
        "codec_factor": factor,
        "num_steps": args.num_steps,
        "shift": args.shift,
        **({"view_snap": args.view_snap} if args.view_snap and not chunk_frames else {}),
        "attention": attention,
        **({"chunk_frames": chunk_frames} if chunk_frames else {}),
        "data": f"{config['flatland_samples']} Flatland clips of preset {config['data']} (world seed "
        f"{config['flatland_seed']}), rendered and encoded by PixelCodec({factor}) on the fly; null text",
        "train_command": train_command(config, steps, out.stem, ema=not args.no_ema),
        "steps": steps,
        "samples_seen": steps * config["batch_size"] * config["grad_accum"],
        "wall_seconds": round(seconds),
        "final_loss": log[-1]["loss"],
        "ema": not args.no_ema and config["ema_decay"] > 0,
    }
    if args.previous_card:
        previous = read_json(args.previous_card)
        phase_keys = ("train_command", "steps", "samples_seen", "wall_seconds", "final_loss")
        phases = previous.get("lineage") or [{k: previous[k] for k in phase_keys if k in previous}]
        card["lineage"] = [*phases, {k: card[k] for k in phase_keys}]
        card["total_steps"] = sum(phase["steps"] for phase in card["lineage"])
        card["total_wall_seconds"] = sum(phase["wall_seconds"] for phase in card["lineage"])
    if args.table and (args.table / "table.json").is_file():
        table = read_json(args.table / "table.json")
        card["metrics"] = table["rows"].get(f"{attention}-{args.num_steps}")
        if attention == "memory":
            card["retrieval"] = table["retrieval"].get(f"{attention}-{args.num_steps}")
    write_text_atomic(out.with_suffix(".json"), json.dumps(card, indent=1))
    # regression record: one held-out clip through the whole demo path (a rollout for a chunk-trained model)
    torch.set_num_threads(1)
    model = load_flatland_model(attention, out)
    if chunk_frames:
        card["regression"] = rollout_regression(model)
    else:
        clip = render_clip(model.flatland, HELD_OUT_SEED, 0)
        keep = ["psnr", "background_psnr", "background_psnr_revisit"]
        keep += ["retrieval_hit"] if attention == "memory" else []
        where = {"seed": HELD_OUT_SEED, "index": 0, "noise_seed": 0}
        scores = run_clip(model, clip, noise_seed=0, view_snap=0.0).scores
        card["regression"] = {**where, **{k: scores[k] for k in keep}}
        if model.card.view_snap > 0:
            scores = run_clip(model, clip, noise_seed=0).scores  # the card's sampler
            card["regression_snap"] = {**where, "view_snap": model.card.view_snap, **{k: scores[k] for k in keep}}
    write_text_atomic(out.with_suffix(".json"), json.dumps(card, indent=1))
    print(f"shipped {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}")
    print(json.dumps(card, indent=1))


if __name__ == "__main__":
    main()
