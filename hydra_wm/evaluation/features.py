"""CLIP and DINO feature extractors for the learned metrics, loaded from local folders with transformers.

Every model is a local folder holding ``config.json`` and weights, as ``save_pretrained`` writes it (e.g. a
download of ``openai/clip-vit-base-patch16`` or ``facebook/dino-vitb16``), loaded with
``from_pretrained(path, local_files_only=True)``; nothing is fetched. A checkpoint that lacks any weight the
features need raises `CheckpointError` rather than running with freshly initialised weights.

* CLIP (`load_clip`): a full ``CLIPModel`` folder or a ``CLIPVisionModel[WithProjection]`` folder. DSC uses the
  vision tower's patch tokens (`clip_patch_grid`); VBench's background consistency uses the projected image
  embedding, or the pooled output when the folder has no ``visual_projection`` (reported with the metric).
* DINO (`load_dino`): ``ViTModel`` (DINO v1, what VBench uses: ``dino_vitb16``) or ``Dinov2Model``; the
  feature is the final-layer-normed CLS token, as DINO's own ``VisionTransformer.forward`` returns.

Frames enter as the project's videos, ``[3, T, H, W]`` float in [-1, 1].
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..errors import CheckpointError, InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 16  # frames per forward pass
VBENCH_SIZE = 224  # VBench's n_px for dino_transform / clip_transform


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars while loading; restore them afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _model_folder(path: str | os.PathLike, what: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{folder}: {what} model folder not found (expected config.json and weights, as "
            "save_pretrained writes them)"
        )
    return folder


def _check_loaded(info: dict, folder: Path, what: str, allowed_missing: frozenset = frozenset()) -> set[str]:
    missing = set(info.get("missing_keys", ())) - allowed_missing
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        keys = sorted(missing) or [str(m[0] if isinstance(m, tuple) else m) for m in mismatched]
        raise CheckpointError(
            f"{folder}: {what} weights missing or mis-shaped for {len(keys)} keys (e.g. {', '.join(keys[:3])})"
        )
    return set(info.get("missing_keys", ()))


@dataclass
class ClipVision:
    """A CLIP vision tower: `model` (``CLIPVisionModelWithProjection``), its input size and patch size."""

    model: torch.nn.Module
    image_size: int
    patch_size: int
    has_projection: bool
    path: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@dataclass
class DinoModel:
    """A DINO ViT (``ViTModel`` or ``Dinov2Model``) and the short side its inputs are resized to (224, as VBench,
    or the model's input size when smaller)."""

    model: torch.nn.Module
    image_size: int
    kind: str
    path: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_clip(path: str | os.PathLike, device: str | torch.device = "cpu") -> ClipVision:
    from transformers import CLIPVisionModelWithProjection

    folder = _model_folder(path, "CLIP")
    with _quiet_transformers():
        try:
            model, info = CLIPVisionModelWithProjection.from_pretrained(
                folder, local_files_only=True, output_loading_info=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{folder}: cannot load a CLIP vision model ({type(exc).__name__}: {exc})") from None
    missing = _check_loaded(info, folder, "CLIP", frozenset({"visual_projection.weight"}))
    config = model.config
    return ClipVision(
        model=model.to(device).eval().requires_grad_(False),
        image_size=int(config.image_size),
        patch_size=int(config.patch_size),
        has_projection="visual_projection.weight" not in missing,
        path=str(folder),
    )


def load_dino(path: str | os.PathLike, device: str | torch.device = "cpu") -> DinoModel:
    from transformers import AutoConfig, Dinov2Model, ViTModel

    folder = _model_folder(path, "DINO")
    with _quiet_transformers():
        try:
            kind = AutoConfig.from_pretrained(folder, local_files_only=True).model_type
            if kind == "vit":
                model, info = ViTModel.from_pretrained(
                    folder, local_files_only=True, output_loading_info=True, add_pooling_layer=False
                )
            elif kind == "dinov2":
                model, info = Dinov2Model.from_pretrained(folder, local_files_only=True, output_loading_info=True)
            else:
                raise InputError(f"{folder}/config.json: model_type {kind!r}; expected 'vit' (DINO) or 'dinov2'")
        except (OSError, ValueError, KeyError) as exc:
            if isinstance(exc, InputError):
                raise
            raise CheckpointError(f"{folder}: cannot load a DINO model ({type(exc).__name__}: {exc})") from None
    # A DINO checkpoint has no pooler and no mask token (unused here).
    _check_loaded(info, folder, "DINO", frozenset({"embeddings.mask_token"}))
    # VBench resizes to 224 whatever the model (Dinov2's configs say 518); a smaller test model keeps its own size.
    size = min(VBENCH_SIZE, int(model.config.image_size))
    return DinoModel(model.to(device).eval().requires_grad_(False), size, kind, str(folder))


# ----------------------------------------------------------------------------------------------
# Preprocessing


def _frames01(video: Tensor) -> Tensor:
    """``[3, T, H, W]`` in [-1, 1] → ``[T, 3, H, W]`` float32 in [0, 1]."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise InputError(f"features: expected a [3, T, H, W] video, got shape {list(video.shape)}")
    return rearrange((video.float() + 1.0) / 2.0, "c t h w -> t c h w")


def _normalise(frames: Tensor, mean: tuple, std: tuple) -> Tensor:
    mean_t = torch.tensor(mean, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return (frames - mean_t) / std_t


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)``'s output: the short side becomes `size`, the long side truncates."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def center_crop(frames: Tensor, size: int) -> Tensor:
    """torchvision ``CenterCrop(size)`` (offsets rounded half-to-even, as its ``round`` does)."""
    height, width = frames.shape[-2:]
    top, left = round((height - size) / 2.0), round((width - size) / 2.0)
    return frames[..., top : top + size, left : left + size]


def _batches(frames: Tensor) -> Iterator[Tensor]:
    for start in range(0, frames.shape[0], BATCH):
        yield frames[start : start + BATCH]


@torch.no_grad()
def clip_patch_grid(clip: ClipVision, video: Tensor) -> Tensor:
    """Patch tokens of CLIP's last layer on whole frames → ``[T, D, g, g]`` (g = image_size / patch_size).

    Each frame is resized to ``image_size`` x ``image_size`` as a whole (bicubic, antialiased), so a box given
    in frame-relative coordinates lands on the same content in the patch grid. (The reference's eval_dsc.py
    centre-crops with CLIPProcessor but places full-frame boxes on the cropped grid; see `dsc`.)
    """
    frames = _frames01(video)
    size = clip.image_size
    out = []
    for batch in _batches(frames):
        batch = F.interpolate(batch.to(clip.device), size=(size, size), mode="bicubic", antialias=True)
        pixels = _normalise(batch.clamp(0.0, 1.0), CLIP_MEAN, CLIP_STD)
        tokens = clip.model(pixel_values=pixels).last_hidden_state[:, 1:]  # (B, g*g, D)
        out.append(rearrange(tokens, "b (h w) d -> b d h w", h=size // clip.patch_size).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def clip_image_embeds(clip: ClipVision, video: Tensor) -> Tensor:
    """VBench's CLIP image features → ``[T, D]``: ``clip_transform(224)`` (short side to ``image_size``, bicubic
    without antialiasing, centre crop, CLIP normalisation) then ``encode_image`` (the projected embedding)."""
    frames = _frames01(video)
    size = clip.image_size
    out = []
    for batch in _batches(frames):
        batch = F.interpolate(
            batch.to(clip.device), size=short_side_size(*batch.shape[-2:], size), mode="bicubic", antialias=False
        )
        pixels = _normalise(center_crop(batch, size), CLIP_MEAN, CLIP_STD)
        output = clip.model(pixel_values=pixels)
        embeds = output.image_embeds if clip.has_projection else output.last_hidden_state[:, 0]
        if not clip.has_projection:
            embeds = clip.model.vision_model.post_layernorm(embeds)  # = pooler_output
        out.append(embeds.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def dino_cls(dino: DinoModel, video: Tensor) -> Tensor:
    """VBench's DINO features → ``[T, D]``: ``dino_transform(224)`` (short side to ``image_size``, bilinear
    without antialiasing, no crop; ImageNet normalisation) then the CLS token of the last layer.

    The frame keeps its aspect, so the position embeddings are interpolated (DINO's hub model does the same).
    """
    frames = _frames01(video)
    out = []
    for batch in _batches(frames):
        batch = F.interpolate(
            batch.to(dino.device),
            size=short_side_size(*batch.shape[-2:], dino.image_size),
            mode="bilinear",
            antialias=False,
            align_corners=False,
        )
        pixels = _normalise(batch, IMAGENET_MEAN, IMAGENET_STD)
        extra = {"interpolate_pos_encoding": True} if dino.kind == "vit" else {}
        out.append(dino.model(pixel_values=pixels, **extra).last_hidden_state[:, 0].float().cpu())
    return torch.cat(out)
