"""Long-horizon rollouts of the built-in Flatland model, and their exact scores (docs/rollout.md).

`rollout_clip` continues a Flatland clip (e.g. of the `long-glance` preset: 20 context + 220 target frames)
chunk after chunk with `pipeline.Rollout`, the engine `hydra-wm rollout` drives for the real model: the same
`MemoryBank`, history selection and `denoise`, here with the `PixelCodec` and a null text embedding
(`flatland.model`). `score_rollout` measures what the long horizon is about, from the renderer's exact truth:

* PSNR per chunk (drift);
* background PSNR against the number of frames the background was out of view before it came back
  (`return_gaps`; pooled over the pixels of each gap bucket), on background the context showed (what memory can
  bring back right); separately on views no earlier frame showed (new: invented) and on returns to views first
  shown by generated frames (the truth there was never seen);
* subject presence (IoU) after a re-entry against how long the subject was out of view.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..data.cameras import camera_poses
from ..flow import FlowMatchSchedule
from ..metrics import flatland_scores, masked_psnr, nan_mean
from ..pipeline import Rollout
from ..rollout import ChunkRecord, MemoryBank, RolloutConfig, plan_chunks
from .config import FlatlandConfig
from .dataset import clip_to_item
from .model import FlatlandModel, quantise
from .views import panorama_width, view_columns
from .world import FlatlandClip, find_events

GAP_BUCKETS: tuple[tuple[int, int], ...] = ((0, 0), (1, 4), (5, 19), (20, 49), (50, 99), (100, 199), (200, 10**9))
"""Frames the background was away before it came back (`return_gaps`; 0: in view since the context), bucketed."""
FAR_GAP = 20
"""Returns after at least this many frames away count as far (`revisit_far`): beyond the 20-frame context a
`window` history keeps."""
HIDDEN_BUCKETS: tuple[tuple[int, int], ...] = ((1, 9), (10, 19), (20, 49), (50, 99), (100, 10**9))
"""Frames a subject was out of view before it re-entered, bucketed for the tables."""


def bucket_label(bucket: tuple[int, int]) -> str:
    low, high = bucket
    return f"{low}+" if high >= 10**9 else str(low) if low == high else f"{low}-{high}"


@dataclass
class RolloutResult:
    """A Flatland clip continued by a rollout."""

    clip: FlatlandClip
    generated: Tensor
    """(3, Tt, H, W) generated frames in [-1, 1], quantised to 8 bits."""
    chunk_frames: list[int]
    """Video frames of each chunk."""
    records: list[ChunkRecord]
    """What each chunk conditioned on and retrieved."""
    seconds: list[float] = field(default_factory=list)
    """Wall time of each chunk (selection, denoising, decoding)."""

    def frames_uint8(self) -> np.ndarray:
        """[Tc + Tt, H, W, 3] uint8: the context frames, then the generated ones."""
        generated = ((self.generated + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return np.concatenate([self.clip.frames[: self.clip.context_frames], generated.permute(1, 2, 3, 0).numpy()])


def start_rollout(
    model: FlatlandModel,
    clip: FlatlandClip,
    history: RolloutConfig,
    *,
    noise_seed: int = 0,
    num_steps: int | None = None,
    shift: float | None = None,
    bank: MemoryBank | None = None,
    record_retrieval: bool = True,
    progress: bool = False,
    view_snap: float | None = None,
) -> Rollout:
    """A `Rollout` of `model` from `clip`'s context frames (encoded into `bank`, a new in-memory one by default).

    `view_snap`: the tolerance of view snapping (`pipeline.ViewSnap`; 0 off; None: the card's)."""
    context = torch.from_numpy(clip.frames[: clip.context_frames]).float() / 127.5 - 1.0  # (Tc, H, W, 3)
    bank = bank if bank is not None else MemoryBank()
    if len(bank) == 0:
        poses = camera_poses(clip.camera_to_world[: clip.context_frames])
        bank.append(model.codec.encode(context.permute(3, 0, 1, 2)[None]), poses)
    schedule = FlowMatchSchedule(num_inference_steps=num_steps or model.card.num_steps, shift=shift or model.card.shift)
    return Rollout(
        model.dit,
        bank,
        torch.zeros(1, 1, model.dit.cfg.text_dim),  # the null text embedding the model was trained with
        history,
        schedule,
        seed=noise_seed,
        decode=lambda latents: quantise(model.codec.decode(latents)[0]),
        record_retrieval=record_retrieval,
        progress=progress,
        view_snap=model.card.view_snap if view_snap is None else view_snap,
    )


@torch.no_grad()
def rollout_clip(
    model: FlatlandModel,
    clip: FlatlandClip,
    history: RolloutConfig,
    *,
    noise_seed: int = 0,
    num_steps: int | None = None,
    progress: bool = False,
    view_snap: float | None = None,
) -> RolloutResult:
    """Continue `clip` along all its target cameras in chunks of `history.chunk_frames` frames (`view_snap`: as
    `start_rollout`'s)."""
    target_frames = clip.frames.shape[0] - clip.context_frames
    plan = plan_chunks(target_frames, history.chunk_frames, model.codec.latent_stride)
    poses = camera_poses(clip.camera_to_world)
    rollout = start_rollout(
        model, clip, history, noise_seed=noise_seed, num_steps=num_steps, progress=progress, view_snap=view_snap
    )
    videos, records, seconds, start = [], [], [], clip.context_frames
    for frames in plan:
        began = time.perf_counter()
        chunk = rollout.step(poses[start : start + frames])
        seconds.append(time.perf_counter() - began)
        videos.append(chunk.video)
        records.append(chunk.record)
        start += frames
    return RolloutResult(clip, torch.cat(videos, dim=1), plan, records, seconds)


def return_gaps(yaw_deg, context_frames: int, width: int, fov_deg: float) -> np.ndarray:
    """``[Tt, W]`` int for each target view column: how many frames its background (panorama column) was out of
    view before it came back into view. A column in view since the context without a break is 0; a column no
    earlier frame showed is -1 (a new view, invented); the frames of one stretch in view share the gap it came
    back after, so a return that is drawn wrong and then kept counts at that gap."""
    columns = view_columns(yaw_deg, width, fov_deg)
    last = np.full(panorama_width(width, fov_deg), -1)
    gap = np.zeros_like(last)
    out = np.zeros((columns.shape[0] - context_frames, width), dtype=np.int64)
    for t, shown in enumerate(columns):
        back = last[shown] != t - 1  # came (back) into view at t
        if t < context_frames:
            gap[shown] = np.where(back, 0, gap[shown])
        else:
            gap[shown] = np.where(back, np.where(last[shown] < 0, -1, t - last[shown]), gap[shown])
            out[t - context_frames] = gap[shown]
        last[shown] = t
    return out


def context_columns(yaw_deg, context_frames: int, width: int, fov_deg: float) -> np.ndarray:
    """``[Tt, W]`` bool: the target view column shows background some context frame showed."""
    columns = view_columns(yaw_deg, width, fov_deg)
    shown = np.zeros(panorama_width(width, fov_deg), dtype=bool)
    shown[columns[:context_frames].ravel()] = True
    return shown[columns[context_frames:]]


def pooled_psnr(pred: Tensor, target: Tensor, region: Tensor) -> float:
    """PSNR over all pixels of `region` ``[T, H, W]`` together (one MSE), NaN when empty. Videos ``[3, T, H, W]``."""
    if not bool(region.any()):
        return math.nan
    T, H, W = region.shape
    flat = lambda video: video.reshape(3, 1, T * H, W)  # noqa: E731 - one frame of all rows
    return float(masked_psnr(flat(pred), flat(target), region.reshape(1, T * H, W), max_db=100.0)[0])


def score_rollout(generated: Tensor, clip: FlatlandClip, config: FlatlandConfig, chunk_frames: list[int]) -> dict:
    """Exact long-horizon scores of one rollout (see the module docstring). Returns ``{"psnr", "background_psnr",
    "presence": overall, "psnr_per_chunk": [..], "background_psnr_per_chunk": [..], "revisit": {gap bucket: bg PSNR
    on background the context showed}, "revisit_pixels": {..}, "revisit_far": the same over gaps >= `FAR_GAP`,
    "new_view_psnr", "new_view_pixels", "invented_revisit_psnr" (returns to views first shown by generated frames),
    "hidden": {hidden bucket: [presence of each re-entry event]}}``."""
    item = clip_to_item(clip, config, 1)
    S, Tc = item["num_subjects"], clip.context_frames
    target = item["target"]
    scores = flatland_scores(
        generated,
        target,
        item["target_labels"],
        item["subject_colours"][:S],
        background_colours=item["background_colours"],
    )
    frames = scores["frames"]
    bounds = np.cumsum([0, *chunk_frames])
    per_chunk = lambda values: [nan_mean(values[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]  # noqa: E731
    background = item["target_labels"] == 0  # (Tt, H, W)
    gaps = torch.from_numpy(return_gaps(clip.yaw_deg, Tc, config.width, config.fov_deg))[:, None, :]  # (Tt, 1, W)
    gaps = gaps.expand_as(background)
    known = torch.from_numpy(context_columns(clip.yaw_deg, Tc, config.width, config.fov_deg))[:, None, :]
    known = known.expand_as(background) & background  # background the context showed
    revisit, pixels = {}, {}
    for bucket in GAP_BUCKETS:
        region = known & (gaps >= bucket[0]) & (gaps <= bucket[1])
        revisit[bucket_label(bucket)] = pooled_psnr(generated, target, region)
        pixels[bucket_label(bucket)] = int(region.sum())
    hidden: dict[str, list[float]] = {bucket_label(b): [] for b in HIDDEN_BUCKETS}
    for event in find_events(clip.in_view, Tc):
        if event["entry"] < Tc or event["entry"] >= clip.frames.shape[0]:
            continue
        s, entry = event["subject"], event["entry"]
        gone = np.flatnonzero(~clip.in_view[entry:, s])
        stop = entry + (int(gone[0]) if gone.size else clip.frames.shape[0] - entry)
        presence = nan_mean(frames["presence"][entry - Tc : stop - Tc, s])
        for bucket in HIDDEN_BUCKETS:
            if bucket[0] <= event["out_of_view"] <= bucket[1] and not math.isnan(presence):
                hidden[bucket_label(bucket)].append(presence)
    return {
        "psnr": scores["overall"]["psnr"],
        "background_psnr": scores["overall"]["background_psnr"],
        "presence": scores["overall"]["presence"],
        "psnr_per_chunk": per_chunk(frames["psnr"]),
        "background_psnr_per_chunk": per_chunk(frames["background_psnr"]),
        "revisit": revisit,
        "revisit_pixels": pixels,
        "revisit_far": pooled_psnr(generated, target, known & (gaps >= FAR_GAP)),
        "new_view_psnr": pooled_psnr(generated, target, background & (gaps < 0)),
        "new_view_pixels": int((background & (gaps < 0)).sum()),
        "invented_revisit_psnr": pooled_psnr(generated, target, background & ~known & (gaps > 0)),
        "hidden": hidden,
    }


def mean_rollout_scores(results: list[dict]) -> dict:
    """Clip-level scores of `score_rollout` averaged over clips (NaN-skipping); hidden-subject presence averaged
    over all events of a bucket, with their count."""
    if not results:
        return {}
    chunks = max(len(r["psnr_per_chunk"]) for r in results)
    column = lambda key, i: [r[key][i] if i < len(r[key]) else math.nan for r in results]  # noqa: E731
    return {
        **{
            key: nan_mean([r[key] for r in results])
            for key in ("psnr", "background_psnr", "presence", "revisit_far", "new_view_psnr", "invented_revisit_psnr")
        },
        "psnr_per_chunk": [nan_mean(column("psnr_per_chunk", i)) for i in range(chunks)],
        "background_psnr_per_chunk": [nan_mean(column("background_psnr_per_chunk", i)) for i in range(chunks)],
        "revisit": {k: nan_mean([r["revisit"][k] for r in results]) for k in results[0]["revisit"]},
        "revisit_pixels": {k: sum(r["revisit_pixels"][k] for r in results) for k in results[0]["revisit_pixels"]},
        "hidden": {k: nan_mean([p for r in results for p in r["hidden"][k]]) for k in results[0]["hidden"]},
        "hidden_events": {k: sum(len(r["hidden"][k]) for r in results) for k in results[0]["hidden"]},
    }
