"""Reading result folders for the viewer: what `hydra-wm generate`, `demo` (and `demo --rollout N`) and `rollout`
write, turned into one shape (`ResultSample`) the page draws.

A sample is a sequence of video frames in parts: the condition clip (part 0), then what the model generated (one
part, or one per rollout chunk). Each part has its latent frames (the Wan VAE: frame 0 alone, then one latent per 4
frames; Flatland's pixel codec: one per frame), so a generated video frame maps to the DiT query frame that made it
and a retrieved memory frame maps back to the video frames it summarises.

Folder kinds, told apart by their files:

* ``rollout``: ``rollout.json`` (format hydra-wm-rollout-1), ``NAME.mp4`` or ``chunks/chunk_NNNN.mp4`` with the
  condition video the manifest names, ``bank/`` (absolute camera poses per latent frame), ``retrieval.json`` (the
  chunk records) and, with ``--save-retrieval``, ``chunks/chunk_NNNN_retrieval.safetensors`` (every step and block);
* ``demo`` / ``demo-rollout``: ``metrics.json`` with ``samples`` beside ``pred/NAME.mp4`` (context + generated,
  lossless) and ``data/NAME/`` (cond.mp4, tgt.mp4, camera.json: the truth and the cameras);
  ``NAME_retrieval.safetensors`` (every step and block) or ``NAME_retrieval.json`` (rollout chunk records);
* ``generate``: ``NAME.mp4`` (condition + generated) with ``NAME_retrieval.safetensors`` when it was run with
  ``--save-retrieval`` (its metadata gives the context length; without it the default 77 frames are assumed).

An ``eval`` report (``metrics.json`` with ``per_sample``, from `hydra-wm eval`) in ``FOLDER/eval`` or
``FOLDER/pred/eval`` adds its per-frame curves and the exit / entry events of the subjects.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.cameras import load_pose_streams
from ..data.video import read_frames
from ..errors import InputError
from ..io_utils import natural_key, read_json
from ..pipeline import LATENT_STRIDE, GenerationConfig, RetrievalRecord, load_retrieval
from ..rollout import plan_chunks

ROLLOUT_FORMAT = "hydra-wm-rollout-1"
KINDS = ("generate", "demo", "demo-rollout", "rollout")
NOT_A_RESULT = (
    "not a result folder (expected what `hydra-wm generate`, `demo` or `rollout` writes: NAME.mp4 videos, "
    "metrics.json beside pred/ and data/, or rollout.json)"
)


@dataclass
class Part:
    """A stretch of the sample's video frames and the latent frames that encode it."""

    video_start: int
    video_frames: int
    latent_start: int
    latent_frames: int


def latents_of(video_frames: int, stride: int) -> int:
    """Latent frames of a separately encoded clip of `video_frames` frames (frame 0 alone, then one per stride)."""
    return (video_frames - 1) // stride + 1


@dataclass
class Chunk:
    """One run of the sampler: the generated frames ``start .. start + frames - 1`` (generated-frame numbers)."""

    start: int
    frames: int
    dit_frames: list[int]
    """Global latent frame of each DiT input frame (context, then target)."""
    retrieval: RetrievalRecord | None = None
    record: dict | None = None
    """The rollout chunk record (`rollout.ChunkRecord.to_json`), when there is one."""


@dataclass
class ResultSample:
    """Everything the page shows of one sample."""

    name: str
    kind: str
    fps: float
    stride: int
    context: np.ndarray
    """(Tc, H, W, 3) uint8 condition frames."""
    generated: np.ndarray
    """(Tt, H, W, 3) uint8 generated frames."""
    truth: np.ndarray | None = None
    """(Tt, H, W, 3) uint8 ground truth of the generated frames, when the folder has it."""
    cameras: list[dict] | None = None
    """Per video frame (context, then generated): {"x", "y" (m, world X/Y), "yaw" (degrees)}."""
    chunks: list[Chunk] = field(default_factory=list)
    series: dict[str, list] = field(default_factory=dict)
    """Per generated frame curves: name -> values (None where undefined)."""
    events: list[dict] = field(default_factory=list)
    """Exit / entry events in generated-frame numbers ({"subject", "exit", "entry"}), from an eval report."""
    summary: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------------------------- frame bookkeeping
    @property
    def parts(self) -> list[Part]:
        parts = [Part(0, len(self.context), 0, latents_of(len(self.context), self.stride))]
        for chunk in self.chunks:
            last = parts[-1]
            parts.append(
                Part(
                    len(self.context) + chunk.start,
                    chunk.frames,
                    last.latent_start + last.latent_frames,
                    latents_of(chunk.frames, self.stride),
                )
            )
        return parts

    def latent_to_video(self, latent: int) -> int:
        """Global video frame shown for a global latent frame (the last frame it encodes)."""
        for part in self.parts:
            if part.latent_start <= latent < part.latent_start + part.latent_frames:
                return part.video_start + self.stride * (latent - part.latent_start)
        raise InputError(f"{self.name}: latent frame {latent} outside the sample's {self.parts[-1]} frames")

    def video_to_latent(self, frame: int) -> int:
        for part in self.parts:
            if part.video_start <= frame < part.video_start + part.video_frames:
                return part.latent_start + math.ceil((frame - part.video_start) / self.stride)
        raise InputError(f"{self.name}: frame {frame} outside the sample")

    def frame_ref(self, frame: int) -> dict:
        """A global video frame as the page addresses it."""
        Tc = len(self.context)
        if frame < Tc:
            return {"stream": "context", "t": frame, "frame": frame}
        return {"stream": "generated", "t": frame - Tc, "frame": frame}

    def stream(self, name: str) -> np.ndarray:
        frames = {"context": self.context, "generated": self.generated, "truth": self.truth}.get(name)
        if frames is None:
            raise InputError(
                f"{self.name}: no {name!r} frames (streams: context, generated"
                + (", truth)" if self.truth is not None else ")")
            )
        return frames

    # ------------------------------------------------------------------------------------------- retrieval
    def retrieval(self, t: int, step: int | None = None) -> dict:
        """What generated frame `t` retrieved: per block (a retrieval record) or per chunk (a rollout record)."""
        if not 0 <= t < len(self.generated):
            raise InputError(f"{self.name}: generated frame {t} out of range 0..{len(self.generated) - 1}")
        chunk = next(c for c in self.chunks if c.start <= t < c.start + c.frames)
        latent = self.video_to_latent(len(self.context) + t)
        index = self.chunks.index(chunk)
        if chunk.retrieval is not None:
            query = chunk.dit_frames.index(latent)
            view = retrieval_view(
                chunk.retrieval, query, step, lambda i: self.frame_ref(self.latent_to_video(i)), chunk.dit_frames
            )
            return {"chunk": index, "query_frame": len(self.context) + t, **view}
        if chunk.record is not None:
            return {"chunk": index, "query_frame": len(self.context) + t, **chunk_view(chunk.record, self)}
        return {
            "chunk": index,
            "query_frame": len(self.context) + t,
            "kind": "none",
            "reason": "no retrieval record in this folder (generate: --save-retrieval; a memory model)",
        }

    def describe(self) -> dict:
        """The JSON the page gets when it opens the sample."""
        H, W = self.generated.shape[1:3]
        return {
            "name": self.name,
            "kind": self.kind,
            "fps": self.fps,
            "height": int(H),
            "width": int(W),
            "context_frames": len(self.context),
            "generated_frames": len(self.generated),
            "truth": self.truth is not None,
            "cameras": self.cameras,
            "chunks": [{"start": c.start, "frames": c.frames, "blocks": c.retrieval is not None} for c in self.chunks],
            "retrieval_steps": next((int(c.retrieval.indices.shape[0]) for c in self.chunks if c.retrieval), 0),
            "series": self.series,
            "events": self.events,
            "summary": self.summary,
            "notes": self.notes,
        }


def retrieval_view(record: RetrievalRecord, query: int, step: int | None, ref, dit_frames: list[int]) -> dict:
    """The memory frames DiT input frame `query` retrieved at `step` (default: the last), per block, best first.

    `ref(global latent)` -> the page's frame reference; `dit_frames[i]` is DiT input frame i's global latent frame;
    memory frame j summarises DiT frames kt*j .. kt*j + kt - 1."""
    steps = record.indices.shape[0]
    step = steps - 1 if step is None else step
    if not 0 <= step < steps:
        raise InputError(f"step {step}: the record holds steps 0..{steps - 1}")
    kt = record.frames_per_memory
    blocks = []
    for block in range(record.indices.shape[1]):
        items = []
        for slot in range(record.indices.shape[4]):
            if not bool(record.valid[step, block, 0, query, slot]):
                continue
            memory = int(record.indices[step, block, 0, query, slot])
            frames = [dit_frames[i] for i in range(kt * memory, min(kt * memory + kt, len(dit_frames)))]
            refs = [ref(f) for f in frames]
            items.append(
                {
                    "memory": memory,
                    "score": float(record.scores[step, block, 0, query, slot]),
                    "frames": [r["frame"] for r in refs],
                    **refs[0],
                }
            )
        blocks.append({"block": block, "items": items})
    timestep = record.timesteps[step] if step < len(record.timesteps) else None
    return {"kind": "blocks", "step": step, "steps": steps, "timestep": timestep, "blocks": blocks}


def chunk_view(record: dict, sample) -> dict:
    """A rollout chunk record: what the chunk conditioned on and the share of its in-model retrievals per frame."""
    ref = lambda latent: sample.frame_ref(sample.latent_to_video(latent))  # noqa: E731
    retrieved = sorted(((int(k), float(v)) for k, v in record.get("retrieved", {}).items()), key=lambda kv: -kv[1])
    return {
        "kind": "chunk",
        "recent": [ref(f) for f in record.get("recent", [])],
        "selected": [ref(f) for f in record.get("selected", [])],
        "retrieved": [{**ref(f), "score": share} for f, share in retrieved],
        "dit_frames": record.get("dit_frames"),
    }


# --------------------------------------------------------------------------------------------- the folders


def folder_kind(folder: Path) -> str:
    """Which writer made `folder` (`KINDS`); `InputError` when none did."""
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: {NOT_A_RESULT}")
    manifest = folder / "rollout.json"
    if manifest.is_file():
        data = read_json(manifest)
        if not isinstance(data, dict) or data.get("format") != ROLLOUT_FORMAT:
            raise InputError(f"{manifest}: not a rollout manifest (expected format {ROLLOUT_FORMAT})")
        return "rollout"
    metrics = folder / "metrics.json"
    if metrics.is_file() and (folder / "pred").is_dir() and (folder / "data").is_dir():
        data = read_json(metrics)
        if isinstance(data, dict) and isinstance(data.get("samples"), dict):
            return "demo-rollout" if "rollout" in data else "demo"
    if any(_videos(folder)):
        return "generate"
    raise InputError(f"{folder}: {NOT_A_RESULT}")


def _videos(folder: Path) -> list[str]:
    return sorted((p.stem for p in folder.glob("*.mp4") if p.is_file()), key=natural_key)


def list_samples(folder: str | os.PathLike) -> tuple[str, list[str]]:
    """(kind, sample names) of a result folder."""
    folder = Path(folder)
    kind = folder_kind(folder)
    if kind == "rollout":
        names = [read_json(folder / "rollout.json").get("name") or "rollout"]
    elif kind in ("demo", "demo-rollout"):
        names = sorted(read_json(folder / "metrics.json")["samples"], key=natural_key)
    else:
        names = _videos(folder)
    if not names:
        raise InputError(f"{folder}: {NOT_A_RESULT}")
    return kind, [str(n) for n in names]


def load_sample(folder: str | os.PathLike, name: str) -> ResultSample:
    """Read sample `name` of the result folder (`InputError` naming the file on anything missing or corrupt)."""
    folder = Path(folder)
    kind, names = list_samples(folder)
    if name not in names:
        raise InputError(
            f"{folder}: no sample {name!r} (has: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''})"
        )
    sample = {"generate": _generate, "demo": _demo, "demo-rollout": _demo, "rollout": _rollout}[kind](folder, name)
    _add_eval_report(folder, sample)
    if sample.truth is not None and "psnr" not in sample.series:
        sample.series["psnr"] = frame_psnr(sample.generated, sample.truth)
        sample.notes.append("PSNR per frame computed by the viewer (no eval report beside the folder)")
    return sample


def frame_psnr(pred: np.ndarray, truth: np.ndarray, cap: float = 100.0) -> list[float]:
    """PSNR (dB) of each frame pair of two uint8 clips, capped at `cap` as `hydra-wm eval` caps it."""
    n = min(len(pred), len(truth))
    diff = pred[:n].astype(np.float64) - truth[:n].astype(np.float64)
    mse = (diff**2).reshape(n, -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(255.0**2 / mse)
    return [float(min(v, cap)) for v in values]


def poses_to_cameras(poses) -> list[dict]:
    """(N, 4, 4) converted camera-to-world poses (rows: UE world X, Y, Z; columns right, down, forward, position in
    m) -> the top view: position on the ground plane and the heading of the forward axis."""
    poses = np.asarray(poses, dtype=np.float64)
    return [
        {"x": float(p[0, 3]), "y": float(p[1, 3]), "yaw": float(np.degrees(np.arctan2(p[1, 2], p[0, 2])))}
        for p in poses
    ]


def _retrieval_file(folder: Path, name: str, sample: ResultSample, chunk: Chunk) -> None:
    path = folder / f"{name}_retrieval.safetensors"
    if path.is_file():
        chunk.retrieval = load_retrieval(path)


def _generate(folder: Path, name: str) -> ResultSample:
    video = read_frames(folder / f"{name}.mp4")
    notes = ["`hydra-wm generate` writes no ground truth or cameras: context | generated only"]
    path = folder / f"{name}_retrieval.safetensors"
    record = load_retrieval(path) if path.is_file() else None
    if record is not None:
        context = LATENT_STRIDE * (record.num_context_frames - 1) + 1
    else:
        context = GenerationConfig().context_frames
        notes.append(f"no {path.name}: context length unknown, the default {context} frames assumed")
    if len(video) <= context:
        raise InputError(
            f"{folder / (name + '.mp4')}: {len(video)} frames, no generated frames after {context} condition frames"
        )
    sample = ResultSample(name, "generate", 15.0, LATENT_STRIDE, video[:context], video[context:], notes=notes)
    generated = len(video) - context
    dit = list(range(latents_of(context, LATENT_STRIDE) + latents_of(generated, LATENT_STRIDE)))
    sample.chunks = [Chunk(0, generated, dit, record)]
    return sample


def _demo(folder: Path, name: str) -> ResultSample:
    report = read_json(folder / "metrics.json")
    data = folder / "data" / name
    context = read_frames(data / "cond.mp4")
    truth = read_frames(data / "tgt.mp4")
    pred = read_frames(folder / "pred" / f"{name}.mp4")
    Tc = len(context)
    if len(pred) != Tc + len(truth):
        raise InputError(
            f"{folder / 'pred' / (name + '.mp4')}: {len(pred)} frames, expected {Tc} context + "
            f"{len(truth)} generated (data/{name}/cond.mp4, tgt.mp4)"
        )
    fps = float((report.get("flatland_config") or {}).get("fps", 15))
    kind = "demo-rollout" if "rollout" in report else "demo"
    sample = ResultSample(name, kind, fps, 1, pred[:Tc], pred[Tc:], truth)
    streams = load_pose_streams(data / "camera.json")
    sample.cameras = poses_to_cameras(np.concatenate([streams.context.numpy(), streams.target.numpy()]))
    scores = report["samples"].get(name, {})
    sample.summary = {k: v for k, v in scores.items() if isinstance(v, (int, float)) and v is not None}
    Tt = len(truth)
    if kind == "demo":
        sample.chunks = [Chunk(0, Tt, list(range(Tc + Tt)))]
        _retrieval_file(folder, name, sample, sample.chunks[0])
        if sample.chunks[0].retrieval is None and (folder / f"{name}_retrieval.png").is_file():
            sample.notes.append(f"{name}_retrieval.png only: rerun `hydra-wm demo` for the per-frame retrieval record")
        return sample
    chunk_frames = int(report["rollout"]["chunk_frames"])
    records_path = folder / f"{name}_retrieval.json"
    records = read_json(records_path) if records_path.is_file() else None
    start = 0
    for i, frames in enumerate(plan_chunks(Tt, chunk_frames, 1)):
        record = records[i] if isinstance(records, list) and i < len(records) else None
        dit = (record["context"] + record["target"]) if record else []
        sample.chunks.append(Chunk(start, frames, dit, None, record))
        start += frames
    if records is None:
        sample.notes.append(f"no {records_path.name}: rerun `hydra-wm demo --rollout` for the chunk records")
    return sample


def _rollout(folder: Path, name: str) -> ResultSample:
    from ..rollout import MemoryBank

    manifest = read_json(folder / "rollout.json")
    generation = manifest.get("generation", {})
    Tc = int(generation.get("context_frames", GenerationConfig().context_frames))
    plan = [int(n) for n in manifest.get("chunk_frames", [])]
    records_path = folder / "retrieval.json"
    records = read_json(records_path) if records_path.is_file() else []
    full = folder / f"{name}.mp4"
    notes = []
    if manifest.get("complete") and full.is_file():
        video = read_frames(full)
        context, generated = video[:Tc], video[Tc:]
    else:
        condition = Path(manifest.get("video", {}).get("path", ""))
        if not condition.is_file():
            raise InputError(
                f"{condition}: file not found (the condition video rollout.json names; the rollout "
                f"is not complete, so {full.name} is not there)"
            )
        context = read_frames(condition, Tc, int(generation["height"]), int(generation["width"]))
        done = sorted((folder / "chunks").glob("chunk_*.mp4"))
        if not done:
            raise InputError(f"{folder / 'chunks'}: no finished chunk yet")
        generated = np.concatenate([read_frames(p) for p in done])
        notes.append(f"rollout not complete: {len(done)} of {len(plan)} chunks")
    sample = ResultSample(
        name, "rollout", float(generation.get("fps", 15.0)), LATENT_STRIDE, context, generated, notes=notes
    )
    start = 0
    for i, frames in enumerate(plan):
        if start >= len(generated):
            break
        record = records[i] if i < len(records) else None
        dit = (record["context"] + record["target"]) if record else []
        path = folder / "chunks" / f"chunk_{i:04d}_retrieval.safetensors"
        retrieval = load_retrieval(path) if record and path.is_file() else None
        sample.chunks.append(Chunk(start, min(frames, len(generated) - start), dit, retrieval, record))
        start += frames
    bank = folder / "bank"
    if bank.is_dir():
        poses = MemoryBank.open(bank, in_memory=False).poses
        per_latent = poses_to_cameras(poses)
        frames = len(context) + len(generated)
        sample.cameras = [per_latent[min(sample.video_to_latent(f), len(per_latent) - 1)] for f in range(frames)]
    return sample


def _add_eval_report(folder: Path, sample: ResultSample) -> None:
    for path in (folder / "eval" / "metrics.json", folder / "pred" / "eval" / "metrics.json"):
        if not path.is_file():
            continue
        report = read_json(path)
        entry = next((s for s in report.get("per_sample", []) if s.get("name") == sample.name), None)
        if entry is None:
            continue
        for key, values in (entry.get("frames") or {}).items():
            sample.series[key] = [None if v is None else float(v) for v in values]
        sample.events = [
            {"subject": int(e["subject"]), "exit": int(e["exit"]), "entry": int(e["entry"])}
            for e in entry.get("events", [])
        ]
        sample.notes.append(f"per-frame metrics and exit/entry events from {path}")
        return
