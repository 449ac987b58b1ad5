"""`hydra-wm demo`: the built-in world model on held-out Flatland clips, on the CPU, in about a minute.

For each clip: render it (a Flatland world seed the shipped models never trained on), continue it from its
context along its target cameras with the shipped `flatland-tiny` HyDRA model, and write

* ``OUT/NAME.mp4``: context | generated | ground truth, side by side (4x upscaled);
* ``OUT/NAME_retrieval.png`` and ``OUT/NAME_retrieval.safetensors``: which memory frames each generated frame
  retrieved, as a heat map and as the record of every step and block (`pipeline.save_retrieval`; memory model only);
* ``OUT/data/NAME/``: the clip in the HM-World layout, and ``OUT/pred/NAME.mp4``: context + generated frames
  (lossless), so that ``hydra-wm eval OUT/pred OUT/data`` recomputes every number;
* ``OUT/metrics.json``: the exact metrics per clip and their mean, also printed.

With ``--rollout N`` the clips are long ones (world `long-glance`: the model's context, then N chunks of the
model's target length) continued chunk after chunk by the rollout engine (`pipeline.Rollout`, docs/rollout.md),
each chunk drawing on a memory bank of every frame so far (``--history``); ``OUT/NAME_timeline.png`` shows what
each chunk drew on (``OUT/NAME_retrieval.json``: the chunk records, as `hydra-wm rollout`'s retrieval.json), and
the metrics add PSNR per chunk, background PSNR by how long it was out of view, and subject presence by how long
the subject was hidden. `hydra-wm viewer OUT` shows any of these folders in the browser.

Re-running into the same folder replaces that run: the clip files of an earlier run that this one did not write
(more clips, or videos that `--no-video` skips) are removed; nothing else in OUT is touched.

`hydra-wm parity` reproduces the reference DiT forward passes (what this demo ran before the model shipped).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..config import ATTENTION_MODES, RETRIEVAL_MODES
from ..rollout import HISTORY_MODES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the built-in Flatland world model on held-out clips: videos, retrieval heat maps, exact metrics",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--samples", type=int, default=4, help="held-out clips to generate (default 4)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Flatland world seed of the clips (default 1000; the shipped models trained on seed 0)",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument(
        "--attention",
        default="memory",
        choices=ATTENTION_MODES,
        help="which shipped model: memory (HyDRA) or the window / full baselines (default memory)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        help="a Flatland DiT file of your own (e.g. from `hydra-wm export`) "
        "instead of the shipped one; a model card FILE.json next to it is used when present",
    )
    p.add_argument(
        "--retrieval",
        choices=RETRIEVAL_MODES,
        help="how the memory model ranks memory frames: relevance (HyDRA's learned scores, the default) "
        "or camera (the paper's camera-FOV retrieval ablation, from the cameras)",
    )
    p.add_argument(
        "--logit-scale",
        type=float,
        metavar="S",
        help="multiply every self-attention logit by S (below 1: softer attention; an inference-time calibration, "
        "docs/deviations.md; default 1, the reference)",
    )
    p.add_argument(
        "--view-snap",
        type=float,
        metavar="TOL",
        help="sample with view snapping at this tolerance: wherever a step's clean-frame estimate is within TOL of "
        "the context frame of the closest viewing direction, it becomes that frame (docs/deviations.md; with "
        "--rollout, among each chunk's conditioning frames); 0 turns it off (default: the model card's)",
    )
    p.add_argument("--steps", type=int, help="sampling steps (default: the model card's)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the initial noise (default 0)")
    p.add_argument(
        "--rollout",
        type=int,
        metavar="N",
        help="long clips (world long-glance) continued in N chunks by the rollout engine (docs/rollout.md); the "
        "memory model is then the one fine-tuned on rollout chunks, flatland-memory-rollout, where shipped",
    )
    p.add_argument(
        "--history",
        choices=HISTORY_MODES,
        default="memory",
        help="with --rollout: what each chunk conditions on: memory (recent frames + frames pre-selected from the "
        "whole history), window (recent frames only) or full (every frame so far) (default memory)",
    )
    p.add_argument("--no-video", action="store_true", help="metrics only: skip the mp4s and heat maps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=run)


def owned_files(out: Path) -> list[Path]:
    """The per-clip files a demo run writes into `out` (`NAME.mp4`, `NAME_retrieval.png`, `pred/NAME.mp4` for
    Flatland sample names): what a later run into the same folder replaces or removes. `data/` is rewritten
    whole (`write_dataset(..., overwrite=True)`), `metrics.json` replaced."""
    patterns = (
        "sample_*.mp4",
        "sample_*_retrieval.png",
        "sample_*_retrieval.safetensors",
        "sample_*_retrieval.json",
        "sample_*_timeline.png",
        "pred/sample_*.mp4",
    )
    return [path for pattern in patterns for path in out.glob(pattern) if path.is_file()]


def _fmt(value: float, digits: int = 2) -> str:
    return "  n/a" if value != value else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..data.video import write_video
    from ..errors import InputError
    from ..evaluation.plots import plot_retrieval
    from ..flatland import render_clip, write_dataset
    from ..flatland.model import (
        HELD_OUT_SEED,
        load_flatland_model,
        load_rollout_model,
        mean_scores,
        run_clip,
        side_by_side,
    )
    from ..io_utils import check_output_dir, write_text_atomic
    from ..pipeline import save_retrieval

    if args.samples < 1:
        raise InputError(f"--samples: expected at least 1, got {args.samples}")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps: expected at least 1, got {args.steps}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads: expected at least 1, got {args.threads}")
    if args.rollout is not None and args.rollout < 1:
        raise InputError(f"--rollout: expected at least 1 chunk, got {args.rollout}")
    if args.logit_scale is not None and not args.logit_scale > 0:
        raise InputError(f"--logit-scale: expected a number > 0, got {args.logit_scale}")
    if args.view_snap is not None and not args.view_snap >= 0:
        raise InputError(f"--view-snap: expected a number >= 0, got {args.view_snap}")
    check_output_dir(args.out, "--out")
    if args.threads:
        torch.set_num_threads(args.threads)
    seed = HELD_OUT_SEED if args.seed is None else args.seed
    load = load_flatland_model if args.rollout is None else load_rollout_model
    model = load(args.attention, args.weights, retrieval=args.retrieval, logit_scale=args.logit_scale)
    config = model.flatland
    label = {"memory": "HyDRA (memory)", "window": "window only", "full": "full attention"}[model.attention]
    caption = label.split(" (")[0]  # the video's: one panel wide (128 pixels on small-glance)
    if model.attention == "memory" and model.dit.cfg.retrieval == "camera":
        label, caption = "memory, camera-FOV retrieval", "HyDRA, camera FOV"
    if model.dit.cfg.attention_logit_scale != 1.0:
        label = f"{label.split(' (')[0]}, logits x{model.dit.cfg.attention_logit_scale:g}"
        caption += f", logits x{model.dit.cfg.attention_logit_scale:g}"
    snap = model.card.view_snap if args.view_snap is None else args.view_snap
    if snap > 0:
        label = f"{label.split(' (')[0]}, view snap {snap:g}"
        caption += f", snap {snap:g}"
    parameters = sum(p.numel() for p in model.dit.parameters()) / 1e6
    if args.rollout is not None:
        print(f"hydra-wm demo: {model.path.name} ({label}, {parameters:.2f} M parameters, trained on preset "
              f"{model.card.flatland_preset!r}), world seed {seed}")  # fmt: skip
        return run_rollout(args, model, caption, seed, snap)
    print(
        f"hydra-wm demo: {model.path.name} ({label}, {parameters:.2f} M parameters) on {args.samples} held-out "
        f"Flatland clip(s) (preset {model.card.flatland_preset!r}, {config.height}x{config.width}, "
        f"{config.context_frames} context + {config.target_frames} target frames, world seed {seed})"
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    names = write_dataset(out / "data", config, args.samples, seed, overwrite=True, progress=False)
    results, seconds, written = {}, 0.0, set()
    for index, name in enumerate(tqdm(names, desc="generating", unit="clip")):
        clip = render_clip(config, seed, index)
        start = time.perf_counter()
        result = run_clip(model, clip, noise_seed=args.noise_seed, num_steps=args.steps, view_snap=snap)
        seconds += time.perf_counter() - start
        results[name] = result.scores
        written.add(out / "pred" / f"{name}.mp4")
        write_video(
            out / "pred" / f"{name}.mp4",
            result.frames_uint8(),
            config.fps,
            crf=0,
            pix_fmt="yuv444p",
            options={"preset": "veryfast", "threads": "1"},
        )
        if not args.no_video:
            written.add(out / f"{name}.mp4")
            write_video(out / f"{name}.mp4", side_by_side(result, caption), config.fps)
            if result.retrieval is not None:
                written.update({out / f"{name}_retrieval.png", out / f"{name}_retrieval.safetensors"})
                save_retrieval(out / f"{name}_retrieval.safetensors", result.retrieval)
                plot_retrieval(
                    result.retrieval,
                    out / f"{name}_retrieval.png",
                    title=f"{name}: memory frames retrieved by each generated frame",
                )
    mean = mean_scores(list(results.values()))
    report = {
        "model": str(model.path),
        "attention": model.attention,
        "retrieval": model.dit.cfg.retrieval,
        "attention_logit_scale": model.dit.cfg.attention_logit_scale,
        "view_snap": snap,
        "flatland_preset": model.card.flatland_preset,
        "seed": seed,
        "noise_seed": args.noise_seed,
        "generation_seconds": seconds,
        "mean": mean,
        "samples": results,
    }
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=1, allow_nan=True))
    for stale in sorted(set(owned_files(out)) - written):  # an earlier run's videos and heat maps, now unmatched
        stale.unlink(missing_ok=True)

    def line(name: str, s: dict) -> str:
        text = (
            f"{name:>14}  PSNR {_fmt(s['psnr'])} dB (repeat-last {_fmt(s['repeat_last_psnr'])})  "
            f"after re-entry {_fmt(s['psnr_reentry'])}  background revisited {_fmt(s['background_psnr_revisit'])}"
            f"  presence {_fmt(s['presence_reentry'])}  position error {_fmt(s['position_error_reentry'], 1)} px"
        )
        if "retrieval_hit" in s:
            text += (
                f"  retrieval hit {_fmt(s['retrieval_hit'])} (chance {_fmt(s['retrieval_hit_chance'])}),"
                f" same view {_fmt(s['retrieval_same_view'])} (chance {_fmt(s['retrieval_same_view_chance'])})"
            )
        return text

    for name, scores in results.items():
        print(line(name, scores))
    print(line("mean", mean))
    print(
        f"generation: {seconds:.1f} s for {len(names)} clip(s) ({seconds / len(names):.2f} s per clip, "
        f"{torch.get_num_threads()} threads)"
    )
    print(
        f"wrote {out}/: "
        + ("" if args.no_video else "NAME.mp4 (context | generated | truth), ")
        + ("NAME_retrieval.png, " if not args.no_video and model.attention == "memory" else "")
        + f"metrics.json; `hydra-wm eval {out / 'pred'} {out / 'data'}` recomputes the metrics"
    )
    return 0


def run_rollout(args: argparse.Namespace, model, caption: str, seed: int, view_snap: float) -> int:
    """`demo --rollout N`: long held-out clips continued in N chunks; videos, timelines, long-horizon metrics."""
    import torch
    from tqdm import tqdm

    from ..data.video import write_video
    from ..evaluation.plots import plot_rollout_timeline
    from ..flatland import flatland_config, render_clip, write_dataset
    from ..flatland.model import ClipResult, side_by_side
    from ..flatland.rollout import mean_rollout_scores, rollout_clip, score_rollout
    from ..io_utils import write_text_atomic
    from ..rollout import RolloutConfig

    trained = model.flatland
    chunk = trained.target_frames
    config = flatland_config(
        "long-glance",
        height=trained.height,
        width=trained.width,
        context_frames=trained.context_frames,
        target_frames=args.rollout * chunk,
    )
    kernel = model.dit.cfg.tokenizer_kernel[0]
    history = RolloutConfig.for_context(trained.context_frames, chunk, args.history, kernel=kernel)
    out: Path = args.out
    print(
        f"rollout: {args.samples} long clip(s) of world long-glance ({config.context_frames} context + "
        f"{config.target_frames} target frames), {args.rollout} chunk(s) of {chunk}, history {history.history} "
        f"({history.recent_frames} recent + {history.memory_frames} memory frames)"
    )
    out.mkdir(parents=True, exist_ok=True)
    names = write_dataset(out / "data", config, args.samples, seed, overwrite=True, progress=False)
    results, seconds, written = {}, [], set()
    for index, name in enumerate(tqdm(names, desc="rolling out", unit="clip")):
        clip = render_clip(config, seed, index)
        result = rollout_clip(
            model, clip, history, noise_seed=args.noise_seed, num_steps=args.steps, view_snap=view_snap
        )
        seconds.append(result.seconds)
        results[name] = score_rollout(result.generated, clip, config, result.chunk_frames)
        written.add(out / "pred" / f"{name}.mp4")
        frames = result.frames_uint8()
        options = {"preset": "veryfast", "threads": "1"}
        write_video(out / "pred" / f"{name}.mp4", frames, config.fps, crf=0, pix_fmt="yuv444p", options=options)
        if not args.no_video:
            written.update({out / f"{name}.mp4", out / f"{name}_timeline.png", out / f"{name}_retrieval.json"})
            write_text_atomic(out / f"{name}_retrieval.json", json.dumps([r.to_json() for r in result.records]))
            write_video(
                out / f"{name}.mp4", side_by_side(ClipResult(clip, result.generated, None, {}), caption), config.fps
            )
            plot_rollout_timeline(
                result.records,
                out / f"{name}_timeline.png",
                condition_frames=config.context_frames,
                title=f"{name}: what each chunk drew on ({history.history} history)",
            )
    mean = mean_rollout_scores(list(results.values()))
    report = {
        "model": str(model.path),
        "attention": model.attention,
        "flatland_preset": "long-glance",
        "flatland_config": config.to_dict(),
        "rollout": {"chunks": args.rollout, **vars(history)},
        "view_snap": view_snap,
        "seed": seed,
        "noise_seed": args.noise_seed,
        "chunk_seconds": seconds,
        "mean": mean,
        "samples": results,
    }
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=1, allow_nan=True))
    for stale in sorted(set(owned_files(out)) - written):
        stale.unlink(missing_ok=True)
    chunks = " ".join(_fmt(v) for v in mean["psnr_per_chunk"])
    print(f"PSNR per chunk (dB, mean of {len(names)} clip(s)): {chunks}")
    revisit = "  ".join(f"{k}: {_fmt(v)}" for k, v in mean["revisit"].items())
    print(
        f"background PSNR by frames out of view before it came back: {revisit}  "
        f"(new views {_fmt(mean['new_view_psnr'])})"
    )
    hidden = "  ".join(f"{k}: {_fmt(v)} ({mean['hidden_events'][k]})" for k, v in mean["hidden"].items())
    print(f"subject presence (IoU) by frames hidden (events): {hidden}")
    per_chunk = [sum(s[i] for s in seconds) / len(seconds) for i in range(len(seconds[0]))]
    print(
        f"seconds per chunk: {' '.join(f'{v:.2f}' for v in per_chunk)} ({torch.get_num_threads()} threads); "
        f"wrote {out}/ (metrics.json; `hydra-wm eval {out / 'pred'} {out / 'data'}` scores the whole clips)"
    )
    return 0
