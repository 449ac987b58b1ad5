"""Live play: steer the camera through a held-out Flatland world while the built-in model generates it.

A `LiveSession` is a thin loop over the rollout API (`flatland.rollout.start_rollout`, `pipeline.Rollout.step`,
docs/rollout.md): it starts from the context frames of a held-out clip (world seed `HELD_OUT_SEED`, which the
shipped models never trained on), and each `step(action)` builds the next chunk's camera path from the last pose
— turn left, turn right or hold — and generates that chunk on the CPU with the memory bank of every frame so far.

Steering follows the cameras the models were trained on (Flatland's `glance` camera): headings 45 degrees apart,
reached through one half-way frame, then held. Positive Unreal yaw turns the view to the right.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.cameras import camera_poses
from ..errors import InputError
from ..flatland import render_clip
from ..flatland.model import HELD_OUT_SEED, load_rollout_model
from ..flatland.rollout import start_rollout
from ..flatland.world import ue_yaw_matrices
from ..pipeline import RetrievalRecord
from ..rollout import RolloutConfig
from .results import poses_to_cameras, retrieval_view

ACTIONS = {"left": -1, "hold": 0, "right": 1}
TURN_DEG = 45.0
"""One turn: the spacing of the `glance` camera's headings."""
CHUNK_FRAMES = 10
"""Frames generated per step by default (docs/viewer.md: the measured time per chunk)."""
MAX_FRAMES = 2000
"""A live world stops growing here (the bank would still be small: 12 KB a frame); reset to go on."""


def steer(last_yaw: float, action: str, frames: int, turn_deg: float = TURN_DEG) -> np.ndarray:
    """Yaw (degrees) of each frame of the next chunk: a turn passes through one half-way frame, then holds."""
    if action not in ACTIONS:
        raise InputError(f"action: expected one of {', '.join(ACTIONS)}, got {action!r}")
    target = last_yaw + ACTIONS[action] * turn_deg
    yaw = np.full(frames, target, dtype=np.float64)
    if ACTIONS[action] and frames > 1:
        yaw[0] = last_yaw + ACTIONS[action] * turn_deg / 2.0
    return yaw


@dataclass
class LiveChunk:
    index: int
    action: str
    start: int
    """Bank (= video) frame of its first frame."""
    frames: int
    seconds: float
    record: dict
    retrieval: RetrievalRecord | None = field(default=None, repr=False)


class LiveSession:
    """One live world: the frames so far, their cameras, and the rollout that continues them."""

    def __init__(
        self,
        attention: str = "memory",
        *,
        seed: int = HELD_OUT_SEED,
        index: int = 0,
        chunk_frames: int = CHUNK_FRAMES,
        steps: int | None = None,
        noise_seed: int = 0,
    ) -> None:
        if chunk_frames < 1:
            raise InputError(f"chunk frames: expected at least 1, got {chunk_frames}")
        if steps is not None and steps < 1:
            raise InputError(f"steps: expected at least 1, got {steps}")
        self.model = load_rollout_model(attention)  # fine-tuned on rollout chunks where shipped, as `demo --rollout`
        self.chunk_frames, self.steps, self.noise_seed = chunk_frames, steps, noise_seed
        self.lock = threading.Lock()
        self.epoch = 0
        """Counts resets, so that the page never shows a frame of an earlier world from its cache."""
        self.reset(seed, index)

    def reset(self, seed: int = HELD_OUT_SEED, index: int = 0) -> None:
        """Start again from the context of held-out clip (seed, index)."""
        if index < 0:
            raise InputError(f"clip index: expected >= 0, got {index}")
        config = self.model.flatland
        clip = render_clip(config, seed, index)
        kernel = self.model.dit.cfg.tokenizer_kernel[0]
        history = RolloutConfig.for_context(config.context_frames, self.chunk_frames, kernel=kernel)
        self.seed, self.index, self.history = seed, index, history
        self.rollout = start_rollout(self.model, clip, history, noise_seed=self.noise_seed, num_steps=self.steps)
        Tc = clip.context_frames
        self.context_frames = Tc
        self.frames = [frame for frame in clip.frames[:Tc]]
        self.yaw = [float(y) for y in clip.yaw_deg[:Tc]]
        self.position = np.asarray(clip.camera_to_world[0, :3, 3], dtype=np.float64)
        self.chunks: list[LiveChunk] = []
        self.epoch += 1

    def step(self, action: str) -> LiveChunk:
        """Generate the next chunk with the camera steered by `action` (left, right, hold)."""
        if len(self.frames) + self.chunk_frames > MAX_FRAMES:
            raise InputError(f"the live world holds {len(self.frames)} frames (at most {MAX_FRAMES}); reset it")
        yaw = steer(self.yaw[-1], action, self.chunk_frames)
        poses = camera_poses(ue_yaw_matrices(yaw, self.position))
        began = time.perf_counter()
        with torch.no_grad():
            chunk = self.rollout.step(poses)
        seconds = time.perf_counter() - began
        video = ((chunk.video + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).numpy()
        start = len(self.frames)
        self.frames.extend(video)
        self.yaw.extend(float(y) for y in yaw)
        done = LiveChunk(len(self.chunks), action, start, len(video), seconds, chunk.record.to_json(), chunk.retrieval)
        self.chunks.append(done)
        return done

    def frame(self, t: int) -> np.ndarray:
        if not 0 <= t < len(self.frames):
            raise InputError(f"live frame {t}: the world holds frames 0..{len(self.frames) - 1}")
        return self.frames[t]

    def retrieval(self, t: int, step: int | None = None) -> dict:
        """What generated frame `t` (a bank frame after the context) retrieved, per block."""
        chunk = next((c for c in self.chunks if c.start <= t < c.start + c.frames), None)
        if chunk is None:
            raise InputError(
                f"live frame {t}: not a generated frame (generated: {self.context_frames}..{len(self.frames) - 1})"
                if self.chunks
                else "nothing generated yet"
            )
        dit = chunk.record["context"] + chunk.record["target"]
        base = {"chunk": chunk.index, "query_frame": t}
        if chunk.retrieval is None:
            return {**base, "kind": "none", "reason": f"the {self.model.attention} model does not retrieve"}
        Tc = self.context_frames
        ref = lambda f: {"stream": "context" if f < Tc else "generated", "t": f, "frame": f}  # noqa: E731
        return {**base, **retrieval_view(chunk.retrieval, dit.index(t), step, ref, dit)}

    def state(self) -> dict:
        """The JSON the page draws: frames, cameras, chunks (timing, what each drew on), the bank."""
        bank = self.rollout.bank
        return {
            "model": self.model.path.name,
            "attention": self.model.attention,
            "epoch": self.epoch,
            "seed": self.seed,
            "index": self.index,
            "chunk_frames": self.chunk_frames,
            "steps": self.steps or self.model.card.num_steps,
            "threads": torch.get_num_threads(),
            "history": vars(self.history),
            "fps": float(self.model.flatland.fps),
            "context_frames": self.context_frames,
            "frames": len(self.frames),
            "height": int(self.frames[0].shape[0]),
            "width": int(self.frames[0].shape[1]),
            "bank_frames": len(bank),
            "bank_bytes": bank.nbytes(),
            "cameras": self._cameras(),
            "chunks": [
                {
                    "index": c.index,
                    "action": c.action,
                    "start": c.start,
                    "frames": c.frames,
                    "seconds": c.seconds,
                    "recent": c.record["recent"],
                    "selected": c.record["selected"],
                    "retrieved": c.record["retrieved"],
                    "dit_frames": c.record["dit_frames"],
                }
                for c in self.chunks
            ],
            "retrieval_steps": int(self.chunks[-1].retrieval.indices.shape[0])
            if self.chunks and self.chunks[-1].retrieval is not None
            else 0,
        }

    def _cameras(self) -> list[dict]:
        poses = camera_poses(ue_yaw_matrices(np.asarray(self.yaw), self.position))
        return poses_to_cameras(poses)
