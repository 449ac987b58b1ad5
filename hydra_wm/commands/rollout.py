"""`hydra-wm rollout`: continue a condition clip chunk after chunk along a camera path of any length (Wan2.1 +
HyDRA), every chunk drawing on a memory bank of all frames so far (docs/rollout.md).

Input: a condition video, a camera file (the authors' ``cond_cam``/``tgt_cam`` with a target stream of any length,
``context_camera``/``video_camera``, or a plain JSON list of UE 4x4 camera-to-world matrices, the condition clip's
first), a caption, the Wan2.1 and HyDRA checkpoints as for `generate`. Output in `--out`:

* ``chunks/chunk_0000.mp4``, ... each chunk's frames, written as the chunk finishes (with ``--save-retrieval`` also
  ``chunks/chunk_0000_retrieval.safetensors``: what its frames retrieved at every step and block);
* ``bank/`` the memory bank: ``condition.safetensors`` and one ``chunk_NNNN.safetensors`` per chunk (latents,
  absolute poses, what the chunk conditioned on and retrieved); a chunk is done once its file is there;
* ``retrieval.json`` and ``timeline.png``: what each chunk drew on from the history, rewritten after every chunk;
* ``NAME.mp4``: the condition frames then every chunk's, assembled at the end;
* ``rollout.json``: the settings; the same command run again resumes an interrupted rollout where it stopped, with
  the same frames (each chunk's noise comes from (seed, chunk)); other settings need ``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import InputError
from ..io_utils import check_output_dir, read_json, write_text_atomic
from ..pipeline import LATENT_STRIDE, GenerationConfig, HydraPipeline, ModelFiles, RolloutSample, save_retrieval
from ..rollout import HISTORY_MODES, SELECTIONS, RolloutConfig, chunk_latents, plan_chunks, select_history
from .generate import (
    DTYPES,
    FPS,
    PIPELINE_OPTIONS,
    SHORT_OPTIONS,
    add_model_options,
    check_condition_video,
    check_device,
)
from .options import add_config_options, config_from_args

FORMAT = "hydra-wm-rollout-1"


def trajectory(path: str, config: GenerationConfig, history: RolloutConfig, frames: int | None):
    """The camera file -> (context poses (Fc, 4, 4), one (Ft, 4, 4) tensor per chunk, video frames per chunk).

    Poses are absolute (`data.cameras.load_pose_streams`), one per latent frame: video frames 0, 4, 8, ... of the
    condition clip and of each chunk (chunks are decoded separately). A file of relative vectors (one per latent
    frame) is split into chunks of ``chunk_frames`` worth of latent frames."""
    from ..data.cameras import latent_frame_indices, load_pose_streams

    streams = load_pose_streams(path)
    context, target = streams.context, streams.target
    if context is None:  # a plain list of poses: the condition clip's first
        context, target = target[: config.context_frames], target[config.context_frames :]
    need = config.context_latent_frames if streams.per_latent else config.context_frames
    if len(context) < need:
        unit = "latent vectors" if streams.per_latent else "poses"
        raise InputError(
            f"{path}: the condition clip has {len(context)} {unit}; --context-frames {config.context_frames} "
            f"needs {need}"
        )
    context = context[:need] if streams.per_latent else context[latent_frame_indices(config.context_frames)]
    if streams.per_latent:
        if frames is not None:
            raise InputError(f"{path}: relative vectors hold one camera per latent frame; --frames needs 4x4 poses")
        per_chunk = chunk_latents(history.chunk_frames, LATENT_STRIDE)
        sizes = [min(per_chunk, len(target) - start) for start in range(0, len(target), per_chunk)]
        if not sizes:
            raise InputError(f"{path}: no target cameras to roll out along")
        chunks = list(torch.split(target, sizes))
        return context, chunks, [LATENT_STRIDE * (n - 1) + 1 for n in sizes]
    total = len(target) if frames is None else frames
    if total > len(target):
        raise InputError(f"{path}: the target path has {len(target)} poses; --frames {total} needs {total}")
    plan = plan_chunks(total, history.chunk_frames, LATENT_STRIDE)
    chunks, start = [], 0
    for size in plan:
        chunks.append(target[start : start + size : LATENT_STRIDE])
        start += size
    return context, chunks, plan


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(args: argparse.Namespace, config: GenerationConfig, history: RolloutConfig, plan: list[int]) -> dict:
    return {
        "format": FORMAT,
        "name": args.name,
        "video": {"path": str(args.video), "sha256": _sha256(args.video)},
        "cameras": {"path": str(args.cameras), "sha256": _sha256(args.cameras)},
        "prompt": args.prompt,
        "generation": {k: v for k, v in asdict(config).items() if k != "target_frames"},
        "history": asdict(history),
        "chunk_frames": plan,
        "model": {
            "ckpt_dir": str(args.ckpt_dir),
            "hydra_ckpt": str(args.hydra_ckpt),
            **{k: getattr(args, k) for k in ("attention", "top_k", "retrieval", "dtype")},
        },
    }


OWNED = ("rollout.json", "bank", "chunks", "retrieval.json", "timeline.png")


def prepare_output(out: Path, manifest: dict, overwrite: bool) -> bool:
    """Check `out` against an earlier rollout there; True when it is the same rollout (resume). `--overwrite`
    removes an earlier rollout's files (those `OWNED` and its video), nothing else."""
    path = out / "rollout.json"
    if not path.is_file():
        stale = [name for name in ("bank", "chunks") if (out / name).exists()]
        if stale and not overwrite:
            raise InputError(f"{out}: holds {stale[0]}/ but no rollout.json; pass --overwrite to replace it")
        for name in stale:
            shutil.rmtree(out / name)
        return False
    previous = read_json(path)
    same = isinstance(previous, dict) and {k: v for k, v in previous.items() if k != "complete"} == manifest
    if same:
        return True
    if not overwrite:
        raise InputError(
            f"{out}: holds a rollout made with other settings or inputs (rollout.json); pass --overwrite to replace it "
            "or choose another --out"
        )
    old_video = previous.get("name") if isinstance(previous, dict) else None
    for name in [*OWNED, *([f"{old_video}.mp4"] if isinstance(old_video, str) else [])]:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return False


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.video import read_frames, read_video, write_video, write_video_parts
    from ..evaluation.plots import plot_rollout_timeline
    from ..rollout import ChunkRecord, MemoryBank

    if not args.prompt.strip():
        raise InputError("--prompt: empty; describe the clip")
    if not args.fps > 0:
        raise InputError(f"--fps: expected a positive number, got {args.fps}")
    check_device(args.device)
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames: expected at least 1, got {args.frames}")
    config = config_from_args(GenerationConfig, args)
    history = config_from_args(RolloutConfig, args)
    args.name = args.name or Path(args.video).stem
    context_poses, chunks, plan = trajectory(args.cameras, config, history, args.frames)
    check_condition_video(args.video, config)
    select_history(context_poses, chunks[0], history)  # the history options, against the released model's kernel
    out = check_output_dir(args.out, "--out")
    files = ModelFiles.find(args.ckpt_dir, args.hydra_ckpt)
    manifest = _manifest(args, config, history, plan)
    resume = prepare_output(out, manifest, args.overwrite)
    write_text_atomic(out / "rollout.json", json.dumps({**manifest, "complete": False}, indent=1))
    bank = MemoryBank.open(out / "bank", in_memory=args.bank == "ram") if resume else None
    bank = bank if bank is not None and len(bank) else MemoryBank(out / "bank", in_memory=args.bank == "ram")
    done = bank.num_chunks
    if done > len(plan):
        raise InputError(f"{out}/bank: holds {done} chunks, the plan has {len(plan)}; pass --overwrite")
    condition = read_video(args.video, config.context_frames, config.height, config.width)
    options = {name: getattr(args, name) for name in PIPELINE_OPTIONS if getattr(args, name) is not None}
    pipeline = HydraPipeline(files, dtype=DTYPES[args.dtype], **options, log=lambda message: print(message, flush=True))
    total = sum(plan)
    print(
        f"rolling out {total} frames in {len(plan)} chunk(s) of {history.chunk_frames} at {config.height}x"
        f"{config.width} from {config.context_frames} condition frames, history {history.history} "
        f"({history.recent_frames} recent + {history.memory_frames} memory latent frames), {config.num_steps} steps, "
        f"CFG {config.guidance_scale}, seed {config.seed}" + (f"; resuming after chunk {done - 1}" if done else ""),
        flush=True,
    )
    chunk_path = lambda index: out / "chunks" / f"chunk_{index:04d}.mp4"  # noqa: E731

    def write_chunk(chunk) -> None:
        write_video(chunk_path(chunk.record.index), chunk.video, fps=args.fps)
        if args.save_retrieval and chunk.retrieval is not None:
            save_retrieval(out / "chunks" / f"chunk_{chunk.record.index:04d}_retrieval.safetensors", chunk.retrieval)

    sample = RolloutSample(args.name, args.prompt, condition, context_poses)
    rollout = pipeline.rollout(sample, config, history, bank=bank, progress=not args.no_progress, on_chunk=write_chunk)
    records = [ChunkRecord.from_json(part.record) for part in bank.parts[1:]]
    for record in records:  # a finished chunk whose video went missing: decode it again from the bank
        if not chunk_path(record.index).is_file():
            write_video(chunk_path(record.index), rollout.decode(bank.latents(record.target)), fps=args.fps)
    condition_frames = len(bank.parts[0].frames)
    bar = tqdm(total=len(plan), initial=done, desc="rollout", unit="chunk", disable=args.no_progress)
    for index in range(done, len(plan)):
        began = time.perf_counter()
        chunk = rollout.step(chunks[index])
        records.append(chunk.record)
        write_text_atomic(out / "retrieval.json", json.dumps([r.to_json() for r in records]))
        plot_rollout_timeline(records, out / "timeline.png", condition_frames=condition_frames, title=args.name)
        bar.update()
        first = config.context_frames + sum(plan[:index])
        record = chunk.record
        print(
            f"chunk {index + 1}/{len(plan)}: frames {first}-{first + plan[index] - 1}, context {len(record.recent)} "
            f"recent + {len(record.selected)} pre-selected of {record.target[0]} bank frames, "
            f"{time.perf_counter() - began:.1f} s; wrote {chunk_path(index)}",
            flush=True,
        )
    bar.close()
    if records and not (out / "timeline.png").is_file():
        plot_rollout_timeline(records, out / "timeline.png", condition_frames=condition_frames, title=args.name)
    parts = [condition, *(read_frames(chunk_path(i)) for i in range(len(plan)))]
    write_video_parts(out / f"{args.name}.mp4", parts, fps=args.fps)
    write_text_atomic(out / "rollout.json", json.dumps({**manifest, "complete": True}, indent=1))
    print(f"wrote {out / f'{args.name}.mp4'} ({config.context_frames} condition + {total} generated frames)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = RolloutConfig()
    p = subparsers.add_parser(
        "rollout",
        help="continue a clip chunk after chunk along a camera path of any length, with a memory of every frame",
        description="Continue a condition clip chunk after chunk along a camera path of any length (Wan2.1 + "
        f"HyDRA), every chunk drawing on a memory bank of all frames so far. Default chunks: {defaults.chunk_frames} "
        "frames; history "
        f"{defaults.history}: {defaults.recent_frames} recent + {defaults.memory_frames} pre-selected latent frames.",
    )
    src = p.add_argument_group("input")
    src.add_argument("--video", required=True, help="condition video")
    src.add_argument(
        "--cameras",
        required=True,
        help="camera file: cond_cam/tgt_cam (any target length), context_camera/video_camera, or a JSON list of "
        "UE 4x4 camera-to-world matrices (cm), the condition clip's first",
    )
    src.add_argument("--prompt", required=True, help="caption")
    src.add_argument("--name", help="output video name (default: the video's file name)")
    src.add_argument(
        "--frames", type=int, help="frames to generate (default: all the camera file's target poses cover)"
    )
    ckpt = p.add_argument_group("checkpoints (never downloaded)")
    ckpt.add_argument("--ckpt-dir", required=True, help="folder with the Wan2.1-T2V-1.3B files")
    ckpt.add_argument("--hydra-ckpt", help="HyDRA checkpoint hydra.ckpt (default: base DiT, untrained memory)")
    add_config_options(
        p.add_argument_group("generation (GenerationConfig)"),
        GenerationConfig,
        aliases=SHORT_OPTIONS,
        skip=("target_frames",),
    )
    add_config_options(
        p.add_argument_group("history (RolloutConfig)"),
        RolloutConfig,
        choices={"history": HISTORY_MODES, "selection": SELECTIONS},
    )
    run_ = add_model_options(p)
    run_.add_argument(
        "--bank",
        choices=("ram", "disk"),
        default="ram",
        help="ram: keep the bank's latents in memory (also written to OUT/bank for resuming); disk: read the frames "
        "each chunk needs from OUT/bank (default ram)",
    )
    run_.add_argument("--no-progress", action="store_true", help="no progress bars")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="rollout_out", help="output folder (default rollout_out/)")
    out.add_argument("--overwrite", action="store_true", help="replace an earlier rollout of other settings in --out")
    out.add_argument("--fps", type=float, default=FPS, help=f"frame rate of the mp4s (default {FPS:g})")
    out.add_argument(
        "--save-retrieval",
        action="store_true",
        help="also write chunks/chunk_NNNN_retrieval.safetensors: the memory frames each frame of the chunk retrieved "
        "at every step and block (`hydra-wm viewer OUT` shows them)",
    )
    p.set_defaults(func=run)
