"""The built-in world model: `flatland-tiny` HyDRA weights trained on Flatland, and what runs them.

Shipped files live in `hydra_wm/flatland/weights/`: ``flatland-{memory,window,full}.safetensors`` (a DiT file as
`hydra-wm export` writes it: config in the metadata, `load_dit` reads it) and, next to each, a model card
``flatland-{attention}.json`` (the Flatland preset it was trained on, the sampling settings, the training
command, steps, wall time and metrics). ``flatland-memory-rollout.safetensors`` is the memory model fine-tuned on
rollout chunks of long clips (`--flatland-chunk-frames`, docs/rollout.md): what `hydra-wm demo --rollout` uses.
`MODEL_CARD.md` there is the human-readable card.

The generation path is the real one, scaled down: `PixelCodec` in place of the Wan VAE, a null text embedding in
place of umT5 (Flatland clips need no prompt), and `pipeline.denoise` with the same DiT, retrieval and Euler
flow-matching sampler as `hydra-wm generate`. One clip:

1. render the held-out clip (`flatland.render_clip`) and read its relative cameras (`clip_to_item`);
2. encode the context frames with the codec;
3. denoise the target latents from seeded noise (recording the retrieval choices);
4. decode; quantise to 8 bits as a video file stores them (so in-memory metrics equal `hydra-wm eval`'s on the
   written mp4);
5. score against the exact truth: `metrics.flatland_scores` (PSNR, background, subjects, re-entry), background
   revisited beyond the window (`flatland.views`), and the retrieval against the true view overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.cameras import closest_context_frames, vector_poses
from ..errors import InputError
from ..flow import FlowMatchSchedule
from ..io_utils import read_json
from ..metrics import flatland_scores, flatland_summary, nan_mean, psnr
from ..models.codecs import PixelCodec
from ..models.dit import HydraDiT
from ..models.loading import load_dit
from ..models.memory import memory_eligibility
from ..pipeline import (
    Conditioning,
    RetrievalRecord,
    RetrievalRecorder,
    ViewSnap,
    denoise,
    initial_noise,
)
from .config import FlatlandConfig, flatland_config
from .dataset import clip_to_item
from .views import revisited_beyond_window, view_overlap
from .world import FlatlandClip

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ATTENTIONS = ("memory", "window", "full")
HELD_OUT_SEED = 1000
"""Default Flatland world seed of the demo's clips; the shipped models trained on seed 0 (`--flatland-seed`)."""
HIT_OVERLAP = 0.5
SAME_VIEW_OVERLAP = 0.9
"""A retrieved memory frame is a hit when its frames show at least this fraction of the query frame's view."""


def weights_path(attention: str = "memory", rollout: bool = False) -> Path:
    """The shipped weights of `attention`; with `rollout`, those fine-tuned on rollout chunks (shipped: memory)."""
    if attention not in ATTENTIONS:
        raise InputError(f"attention: expected one of {', '.join(ATTENTIONS)}, got {attention!r}")
    return WEIGHTS_DIR / f"flatland-{attention}{'-rollout' if rollout else ''}.safetensors"


def available_attentions() -> list[str]:
    return [a for a in ATTENTIONS if weights_path(a).is_file()]


@dataclass
class ModelCard:
    """What a shipped (or user-trained) Flatland model needs besides its weights."""

    flatland_preset: str = "small"
    """Flatland preset the model was trained on (frame size and clip lengths)."""
    codec_factor: int = 2
    """`PixelCodec` space-to-depth factor."""
    num_steps: int = 20
    """Sampling steps."""
    shift: float = 1.0
    """Flow-matching time shift for sampling (the training shift)."""
    chunk_frames: int = 0
    """Target frames of the rollout chunks the model was trained on (`--flatland-chunk-frames`); 0: whole clips."""
    view_snap: float = 0.0
    """Sampling with view snapping at this tolerance (`pipeline.ViewSnap`; 0: off, the plain sampler)."""
    extra: dict = field(default_factory=dict)
    """Everything else on the card (training command, steps, wall time, metrics): shown, not used."""

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        data = read_json(path)
        fields = ("flatland_preset", "codec_factor", "num_steps", "shift", "chunk_frames", "view_snap")
        known = {k: data[k] for k in fields if k in data}
        return cls(**known, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def for_weights(cls, weights: str | Path) -> ModelCard:
        """The card next to `weights` (same name, .json), or the defaults when there is none."""
        card = Path(weights).with_suffix(".json")
        return cls.read(card) if card.is_file() else cls()


@dataclass
class FlatlandModel:
    """A loaded Flatland world model: the DiT, its codec and its card."""

    dit: HydraDiT
    codec: PixelCodec
    card: ModelCard
    path: Path

    @property
    def attention(self) -> str:
        return self.dit.cfg.attention

    @property
    def flatland(self) -> FlatlandConfig:
        """The clips the model generates: its training preset, cut to one chunk for a chunk-trained model."""
        overrides = {"target_frames": self.card.chunk_frames} if self.card.chunk_frames else {}
        return flatland_config(self.card.flatland_preset, **overrides)


def load_flatland_model(
    attention: str = "memory",
    weights: str | Path | None = None,
    *,
    retrieval: str | None = None,
    rollout: bool = False,
    logit_scale: float | None = None,
) -> FlatlandModel:
    """The shipped model for `attention`, or the DiT file `weights` (a card next to it is used when present).

    `retrieval` overrides how a `memory` model ranks memory frames (`camera`: the camera-FOV ablation); `rollout`
    picks the shipped weights fine-tuned on rollout chunks (`weights_path(attention, rollout=True)`);
    `logit_scale` sets `DiTConfig.attention_logit_scale` (below 1: softer attention)."""
    path = Path(weights) if weights is not None else weights_path(attention, rollout)
    if not path.is_file():
        if weights is None:
            have = ", ".join(available_attentions()) or "none"
            raise InputError(
                f"{path}: no shipped Flatland weights for attention {attention!r} (shipped: {have}); train them "
                f"with `hydra-wm train flatland:small --preset flatland-tiny --attention {attention} ...` "
                f"(see hydra_wm/flatland/weights/MODEL_CARD.md) and pass --weights"
            )
        raise InputError(f"{path}: weights file not found")
    overrides = {"retrieval": retrieval, "attention_logit_scale": logit_scale}
    dit = load_dit(path, dtype=torch.float32, **{k: v for k, v in overrides.items() if v is not None})
    card = ModelCard.for_weights(path)
    codec = PixelCodec(card.codec_factor)
    if dit.cfg.in_dim != codec.z_dim:
        raise InputError(
            f"{path}: DiT takes {dit.cfg.in_dim} latent channels, the pixel codec (factor {card.codec_factor}) "
            f"gives {codec.z_dim}"
        )
    return FlatlandModel(dit.eval(), codec, card, path)


def load_rollout_model(
    attention: str = "memory",
    weights: str | Path | None = None,
    *,
    retrieval: str | None = None,
    logit_scale: float | None = None,
) -> FlatlandModel:
    """The model a rollout uses: `weights` when given, else the shipped weights of `attention` fine-tuned on rollout
    chunks where there are some (memory), else the shipped model (`hydra-wm demo --rollout`, live play)."""
    rollout = weights is None and weights_path(attention, rollout=True).is_file()
    return load_flatland_model(attention, weights, retrieval=retrieval, rollout=rollout, logit_scale=logit_scale)


@dataclass
class ClipResult:
    """One generated Flatland clip with its truth and scores."""

    clip: FlatlandClip
    generated: Tensor
    """(3, Tt, H, W) generated frames in [-1, 1], quantised to 8 bits."""
    retrieval: RetrievalRecord | None
    scores: dict
    """Flat {metric: value}; see `score_clip`."""

    def frames_uint8(self) -> np.ndarray:
        """[Tc + Tt, H, W, 3] uint8: the context frames, then the generated ones."""
        generated = _levels(self.generated).permute(1, 2, 3, 0).numpy()
        return np.concatenate([self.clip.frames[: self.clip.context_frames], generated])


def _levels(video: Tensor) -> Tensor:
    """[-1, 1] float -> nearest 8-bit levels, uint8. Rounds (`video.to_uint8_frames` truncates like the
    reference's tensor2video, which would turn an exact level that float arithmetic put a hair low into the next
    one down)."""
    return ((video + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def quantise(video: Tensor) -> Tensor:
    """[-1, 1] float -> the nearest 8-bit level, back in [-1, 1] (what writing a lossless video keeps)."""
    return _levels(video).float() / 127.5 - 1.0


@torch.no_grad()
def generate_clip(
    model: FlatlandModel,
    clip: FlatlandClip,
    *,
    noise_seed: int = 0,
    num_steps: int | None = None,
    shift: float | None = None,
    record_retrieval: bool = True,
    view_snap: float | None = None,
) -> tuple[Tensor, RetrievalRecord | None]:
    """Continue `clip` from its context along its target cameras -> ((3, Tt, H, W) in [-1, 1], retrieval).

    `view_snap`: the tolerance of view snapping (`pipeline.ViewSnap`; 0 off; None: the card's)."""
    config = model.flatland
    item = clip_to_item(clip, config, model.codec.latent_stride)
    context = model.codec.encode(item["context"][None])  # (1, C, Tc, h, w)
    text = torch.zeros(1, 1, model.dit.cfg.text_dim)  # the null text embedding the model was trained with
    cond = Conditioning(
        context_latents=context,
        text=text,
        negative_text=None,
        cam_context=item["context_cameras"][None],
        cam_target=item["target_cameras"][None],
    )
    schedule = FlowMatchSchedule(num_inference_steps=num_steps or model.card.num_steps, shift=shift or model.card.shift)
    target_frames = item["target"].shape[1]
    noise = initial_noise(noise_seed, (1, context.shape[1], target_frames, *context.shape[3:]))
    use_memory = record_retrieval and model.dit.cfg.attention == "memory" and model.dit.cfg.top_k > 0
    recorder = RetrievalRecorder(passes=1) if use_memory else None
    tolerance = model.card.view_snap if view_snap is None else view_snap
    snap = ViewSnap.aligned(cond, tolerance, model.dit.cfg.patch_size[0]) if tolerance > 0 else None
    latents = denoise(
        model.dit, schedule, noise, cond, guidance_scale=1.0, on_step=recorder, progress=False, view_snap=snap
    )
    video = quantise(model.codec.decode(latents)[0])
    record = recorder.record(context.shape[2], model.dit.cfg.tokenizer_kernel[0]) if recorder else None
    return video, record


def retrieval_scores(record: RetrievalRecord, overlap: np.ndarray, window: int) -> dict:
    """How well the retrieved memory frames match what each target frame shows (true view overlap).

    `overlap` [T, T]: fraction of frame i's view shown by frame j (`views.view_overlap`). A memory frame's
    overlap with a query frame is the mean over the frames it summarises. Over every target query frame, block
    and step (prompt pass):

    * ``retrieval_overlap``: mean overlap of the retrieved memory frames; ``retrieval_overlap_chance``: of all
      eligible memory frames (what a random choice of k would get on average);
    * ``retrieval_hit``: fraction of top-1 choices with overlap >= `HIT_OVERLAP`; ``retrieval_hit_chance``: the
      fraction of eligible memory frames with that overlap (a random top-1's hit rate);
    * ``retrieval_same_view`` / ``retrieval_same_view_chance``: the same with overlap >= `SAME_VIEW_OVERLAP`
      (the top-1 memory frame shows nearly the query's view: on the `glance` camera, the same heading, where a
      half-overlapping neighbour heading already counts as a hit).
    """
    total, kt, Fm = overlap.shape[0], record.frames_per_memory, record.num_memory_frames
    Fc = record.num_context_frames
    frames_of = np.arange(Fm)[:, None] * kt + np.arange(kt)[None, :]  # (Fm, kt)
    frames_of = np.minimum(frames_of, total - 1)
    memory_overlap = overlap[:, frames_of].mean(axis=2)  # (T, Fm)
    eligible = memory_eligibility(total, Fm, window, kt).numpy()  # (T, Fm)
    indices = record.indices[:, :, 0, Fc:].numpy()  # (S, Nb, Ft, k)
    valid = record.valid[:, :, 0, Fc:].numpy()
    query_overlap = memory_overlap[Fc:]  # (Ft, Fm)
    got = np.take_along_axis(query_overlap[None, None], indices, axis=-1)  # (S, Nb, Ft, k)
    query_eligible = eligible[Fc:]  # (Ft, Fm)
    per_query = query_eligible.sum(axis=1)
    chance_overlap = (query_overlap * query_eligible).sum(axis=1) / per_query
    chance_hit = ((query_overlap >= HIT_OVERLAP) & query_eligible).sum(axis=1) / per_query
    chance_same = ((query_overlap >= SAME_VIEW_OVERLAP) & query_eligible).sum(axis=1) / per_query
    top1_valid = valid[..., 0]

    def top1_rate(threshold: float) -> float:
        return float((got[..., 0] >= threshold)[top1_valid].mean()) if top1_valid.any() else math.nan

    return {
        "retrieval_overlap": float(got[valid].mean()) if valid.any() else math.nan,
        "retrieval_overlap_chance": float(chance_overlap.mean()),
        "retrieval_hit": top1_rate(HIT_OVERLAP),
        "retrieval_hit_chance": float(chance_hit.mean()),
        "retrieval_same_view": top1_rate(SAME_VIEW_OVERLAP),
        "retrieval_same_view_chance": float(chance_same.mean()),
    }


def score_clip(
    generated: Tensor, clip: FlatlandClip, config: FlatlandConfig, record: RetrievalRecord | None, window: int
) -> dict:
    """Flat {metric: value} for one generated clip; the names are `hydra-wm eval`'s (``*_reentry`` after
    re-entry), plus ``repeat_last_psnr`` (what repeating the last context frame scores, for scale) and the
    retrieval scores for a memory model."""
    item = clip_to_item(clip, config, 1)
    S = item["num_subjects"]
    Tc = clip.context_frames
    revisit = revisited_beyond_window(clip.yaw_deg, Tc, config.width, config.fov_deg, window)
    # the aligned view: the closest camera, by the closest-camera baseline's rule (as `hydra-wm eval` picks it)
    poses = [vector_poses(item[key]).numpy() for key in ("context_cameras", "target_cameras")]
    aligned_view = closest_context_frames(*poses)
    scores = flatland_scores(
        generated,
        item["target"],
        item["target_labels"],
        item["subject_colours"][:S],
        background_colours=item["background_colours"],
        reentry=item["reentry"][:, :S],
        revisit=revisit,
        stale_labels=item["context_labels"][aligned_view],
    )
    out = flatland_summary(scores)
    repeat = item["context"][:, -1:].expand_as(item["target"])
    out["repeat_last_psnr"] = float(psnr(repeat, item["target"], max_db=100.0).mean())
    if record is not None:
        out.update(retrieval_scores(record, view_overlap(clip.yaw_deg, config.width, config.fov_deg), window))
    return out


def run_clip(model: FlatlandModel, clip: FlatlandClip, *, noise_seed: int = 0, **sampling) -> ClipResult:
    generated, record = generate_clip(model, clip, noise_seed=noise_seed, **sampling)
    scores = score_clip(generated, clip, model.flatland, record, model.dit.cfg.window)
    return ClipResult(clip, generated, record, scores)


def mean_scores(results: list[dict]) -> dict:
    """Mean of each metric over clips, skipping NaN and missing values (undefined, e.g. no re-entry in a clip)."""
    keys = list(dict.fromkeys(k for r in results for k in r))
    return {key: nan_mean([math.nan if r.get(key) is None else r[key] for r in results]) for key in keys}


def side_by_side(result: ClipResult, label: str, scale: int = 4) -> np.ndarray:
    """[Tt, H', W', 3] uint8 frames: context | generated | ground truth, each `scale` x nearest-upscaled, under a
    caption row. The context panel plays the context clip alongside (looped when it is shorter than the target).
    """
    from PIL import Image, ImageDraw

    clip, Tc = result.clip, result.clip.context_frames
    frames = result.frames_uint8()
    target, truth = frames[Tc:], clip.frames[Tc:]
    Tt, H, W, _ = target.shape
    gap, header = scale, 12
    width = 3 * W * scale + 2 * gap
    out = np.full((Tt, header + H * scale, width, 3), 255, dtype=np.uint8)
    caption = Image.new("RGB", (width, header), (255, 255, 255))
    draw = ImageDraw.Draw(caption)
    for i, text in enumerate(("context", label, "ground truth")):
        while len(text) > 3 and draw.textlength(text) > W * scale - 2:  # never into the next panel
            text = text[:-3] + ".."
        draw.text((i * (W * scale + gap) + 2, 0), text, fill=(0, 0, 0))
    out[:, :header] = np.asarray(caption)
    for t in range(Tt):
        for i, panel in enumerate((clip.frames[t % Tc], target[t], truth[t])):
            x = i * (W * scale + gap)
            out[t, header:, x : x + W * scale] = panel.repeat(scale, axis=0).repeat(scale, axis=1)
    return out
