"""Offline preprocessing: dataset samples -> VAE latents, caption embeddings and relative cameras on disk.

Per sample (docs/reference.md §5): the context and target clips are encoded by the VAE *each on its own* (the VAE
is causal in time, so the target's first frame is encoded as a first frame, as in the reference), the caption
by the text encoder (512 tokens, padding rows zero), and the relative cameras are read one per latent frame.
The result is written as one safetensors file per sample plus a JSON manifest (format:
`hydra_wm.data.samples`). Runs are idempotent and resumable: finished samples are skipped, every file is
written atomically, a bad sample is reported and skipped. Under `torchrun`, rank r takes samples r, r + N, ...
and nothing else is coordinated.

The encoders are pluggable (`Encoders`): the Wan2.1 VAE and umT5 (`load_encoders`), tiny random ones in
tests, or any codec with the same `encode` contract (e.g. a pixel space-to-depth codec) and no text at all
(`null_text`). `EncodedDataset` applies the same encoding on the fly to an in-memory dataset, so a small model
can train on rendered clips without a disk round trip.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from ..errors import HydraError, InputError
from ..io_utils import write_text_atomic
from ..models.codecs import PixelCodec
from ..models.loading import EncoderFiles
from ..models.text_encoder import (
    TEXT_ENCODER_PRESETS,
    encode_prompts,
    load_text_encoder,
    load_tokenizer,
    text_encoder_config,
)
from ..models.vae import VAE_PRESETS, load_vae, vae_config
from .samples import SUBJECT_MASK, sample_path, write_manifest, write_sample


@dataclass
class Encoders:
    """What turns raw clips and captions into training tensors."""

    encode_video: Callable[[Tensor], Tensor]
    """(B, 3, T, H, W) in [-1, 1] -> latents (B, C, F, h, w)."""
    encode_text: Callable[[Sequence[str]], Tensor]
    """Captions -> (B, Lt, Dt) embeddings whose padding rows are zero."""
    latent_stride: int
    """Video frames per latent frame (Wan VAE: 4); cameras are taken every `latent_stride`-th frame."""
    settings: dict = field(default_factory=dict)
    """JSON description recorded in the manifest; a later run into the same folder must match it."""


def wan_encoders(
    vae, text_encoder, tokenizer, *, text_length: int = 512, tiled: bool = False, settings: dict | None = None
) -> Encoders:
    """`Encoders` from a loaded `WanVAE`, umT5 encoder and tokenizer (as Wan2.1 encodes)."""
    return Encoders(
        encode_video=lambda video: vae.encode(video, tiled=tiled),
        encode_text=lambda captions: encode_prompts(text_encoder, tokenizer, list(captions), text_length),
        latent_stride=vae.config.temporal_factor,
        settings={"text_length": text_length, "tiled": tiled, **(settings or {})},
    )


def null_text(dim: int, length: int = 1) -> Callable[[Sequence[str]], Tensor]:
    """`encode_text` for a model without text: `length` zero rows of width `dim` per caption."""
    return lambda captions: torch.zeros(len(captions), length, dim)


def pixel_encoders(codec: PixelCodec | None = None, text_dim: int = 8, text_length: int = 1) -> Encoders:
    """`Encoders` for a model without text: `codec` (default `PixelCodec()`) and `null_text`."""
    codec = codec or PixelCodec()
    return Encoders(
        encode_video=codec.encode,
        encode_text=null_text(text_dim, text_length),
        latent_stride=codec.latent_stride,
        settings={
            "codec": "pixel",
            "factor": codec.factor,
            "mean": codec.mean,
            "std": codec.std,
            "text": "null",
            "text_dim": text_dim,
            "text_length": text_length,
        },
    )


def load_encoders(
    ckpt_dir: str | os.PathLike | None = None,
    *,
    vae: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    vae_preset: str | None = None,
    text_encoder_preset: str | None = None,
    text_length: int = 512,
    tiled: bool = False,
    device: str | torch.device = "cpu",
) -> Encoders:
    """Load the Wan2.1 VAE, umT5 encoder and tokenizer as `hydra-wm generate` does: the files found by
    `EncoderFiles` (explicit paths win over `ckpt_dir`'s Wan2.1 names), the architectures read from their tensor
    shapes by `load_vae` / `load_text_encoder`. A preset name instead makes the file match that preset.

    The text encoder runs in bf16 on CUDA and float32 on CPU.
    """
    files = EncoderFiles.locate(ckpt_dir, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer).check()
    device = torch.device(device)
    text_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    loaded_vae = load_vae(files.vae, vae_config(vae_preset) if vae_preset else None, device=device)
    encoder = load_text_encoder(
        files.text_encoder,
        text_encoder_config(text_encoder_preset) if text_encoder_preset else None,
        device=device,
        dtype=text_dtype,
    )
    settings = {  # presets by name (as manifests have always recorded them), whether given or read from the file
        "vae": str(files.vae.resolve()),
        "vae_preset": vae_preset or _preset_name(loaded_vae.config, VAE_PRESETS),
        "text_encoder": str(files.text_encoder.resolve()),
        "text_encoder_preset": text_encoder_preset or _preset_name(encoder.config, TEXT_ENCODER_PRESETS),
    }
    return wan_encoders(
        loaded_vae, encoder, load_tokenizer(files.tokenizer), text_length=text_length, tiled=tiled, settings=settings
    )


def _preset_name(config, presets: dict) -> str:
    """The name of the preset `config` equals, else "custom" (its file's path is recorded beside it)."""
    return next((name for name, preset in presets.items() if preset == config), "custom")


# ----------------------------------------------------------------------------------------------------- encoding


def raw_fields(item) -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    """(context clip, target clip, context cameras, target cameras, caption) of an `HMWorldSample` or of a
    dict item with keys context/target/context_cameras/target_cameras/caption (e.g. `FlatlandDataset`)."""
    if isinstance(item, dict):
        context, target = item.get("context"), item.get("target")
        cameras, caption = (item.get("context_cameras"), item.get("target_cameras")), item.get("caption")
    else:
        context, target = item.condition, item.target
        cameras, caption = (item.context_cameras, item.target_cameras), item.caption
    if context is None or target is None:
        raise InputError("sample has no " + ("context clip (cond.mp4)" if context is None else "target clip (tgt.mp4)"))
    if cameras[0] is None or cameras[1] is None or caption is None:
        raise InputError("sample lacks its cameras or its caption")
    return context, target, cameras[0], cameras[1], caption


def target_subject_pixels(item) -> Tensor | None:
    """bool ``[T, H, W]``: where the target clip shows a subject (HM-World's tgt_mask.mp4, Flatland's labels), or
    None when the sample has no masks."""
    if isinstance(item, dict):
        if item.get("target_labels") is not None:
            return torch.as_tensor(item["target_labels"]) > 0
        masks = item.get("target_masks")
    else:
        masks = getattr(item, "target_masks", None)
    return None if masks is None else torch.as_tensor(masks).bool()


def latent_subject_mask(pixels: Tensor, shape: tuple[int, int, int], latent_stride: int) -> Tensor:
    """Video-frame subject masks bool ``[T, H, W]`` -> uint8 ``[F, h, w]`` on the latent grid ``shape``: 1 where
    any pixel of a latent cell's footprint shows a subject. Latent frame 0 is video frame 0 and latent frame
    j >= 1 covers video frames (j - 1) s + 1 .. j s (the causal Wan VAE's grouping; s = 1: frame j); a cell covers
    an (H / h) x (W / w) block."""
    frames, h, w = shape
    T = pixels.shape[0]
    if T != 1 + (frames - 1) * latent_stride:
        raise InputError(
            f"subject mask: {T} frames do not map to {frames} latent frames at latent stride {latent_stride}"
        )
    pixels = pixels.float()
    # frame 0 alone, then groups of `latent_stride` frames: max over each group
    grouped = torch.cat([pixels[:1], pixels[1:].reshape(frames - 1, latent_stride, *pixels.shape[1:]).amax(1)])
    return (torch.nn.functional.adaptive_max_pool2d(grouped[:, None], (h, w))[:, 0] > 0).to(torch.uint8)


@torch.no_grad()
def encode_sample(item, encoders: Encoders) -> dict[str, Tensor]:
    """One raw sample -> the training tensors (see `hydra_wm.data.samples`), on the CPU; with the target's
    subject mask on the latent grid (`SUBJECT_MASK`) when the sample has masks."""
    context, target, cam_context, cam_target, caption = raw_fields(item)
    # Each clip on its own (docs/reference.md §5): the causal VAE sees the target's first frame as a first frame.
    latents = []
    for label, clip in (("context clip (cond.mp4)", context), ("target clip (tgt.mp4)", target)):
        try:
            latents.append(encoders.encode_video(clip[None])[0].float().cpu())  # (C, F, h, w)
        except InputError as exc:  # e.g. a frame count the VAE cannot encode: say which clip
            raise InputError(f"{label}: {exc}") from None
    for name, clip_latents, cams in (("context", latents[0], cam_context), ("target", latents[1], cam_target)):
        if clip_latents.shape[1] != cams.shape[0]:
            raise InputError(
                f"{name}: {clip_latents.shape[1]} latent frames but {cams.shape[0]} camera rows "
                f"(latent stride {encoders.latent_stride})"
            )
    text = encoders.encode_text([caption])[0].float().cpu()  # (Lt, Dt)
    encoded = {
        "context_latents": latents[0],
        "target_latents": latents[1],
        "context_cameras": cam_context.float(),
        "target_cameras": cam_target.float(),
        "text": text,
    }
    pixels = target_subject_pixels(item)
    if pixels is not None:
        if tuple(pixels.shape) != tuple(target.shape[1:]):
            raise InputError(
                f"target subject mask (tgt_mask.mp4): shape {list(pixels.shape)} does not match the target clip's "
                f"frames {list(target.shape[1:])}"
            )
        encoded[SUBJECT_MASK] = latent_subject_mask(pixels, tuple(latents[1].shape[1:]), encoders.latent_stride)
    return encoded


class EncodedDataset(torch.utils.data.Dataset):
    """An in-memory dataset of raw clips (e.g. `FlatlandDataset`) encoded on the fly with `encoders`.

    Items are the training tensors a `PreprocessedDataset` returns; the model sees no difference.
    """

    def __init__(self, dataset, encoders: Encoders, latent_dtype: torch.dtype | None = None):
        self.dataset, self.encoders, self.latent_dtype = dataset, encoders, latent_dtype

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = encode_sample(self.dataset[index], self.encoders)
        if self.latent_dtype is not None:
            item = {k: v.to(self.latent_dtype) if k.endswith("latents") else v for k, v in item.items()}
        return item


# ----------------------------------------------------------------------------------------------------- the run


@dataclass
class PreprocessReport:
    """What one (rank's) run did."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def preprocess(
    dataset,
    out: str | os.PathLike,
    encoders: Encoders,
    *,
    settings: dict | None = None,
    rank: int = 0,
    world_size: int = 1,
    latent_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> PreprocessReport:
    """Encode this rank's share of `dataset` (an `HMWorldDataset`, or any indexable with `names`) into `out`.

    Samples whose file exists are skipped; any error in one sample is recorded in the report and the run goes on,
    and so is every sample the dataset lists as incomplete (`HMWorldDataset.incomplete`: missing files).
    `settings` (plus the encoders') go into the manifest. Failures are also written to failed[.rankR].json.
    """
    out = Path(out)
    start = time.perf_counter()
    write_manifest(
        out,
        {
            **encoders.settings,
            **(settings or {}),
            "latent_stride": encoders.latent_stride,
            "latent_dtype": str(latent_dtype or torch.float32),
        },
    )
    names = list(dataset.names)[rank::world_size]
    report = PreprocessReport()
    incomplete = getattr(dataset, "incomplete", {})
    for name in sorted(incomplete)[rank::world_size]:
        report.failed[name] = f"incomplete sample: missing {', '.join(incomplete[name])}"
    bar = tqdm(
        zip(range(rank, len(dataset.names), world_size), names, strict=True),
        total=len(names),
        desc=f"preprocess (rank {rank}/{world_size})",
        unit="sample",
        disable=not progress,
    )
    for index, name in bar:
        path = sample_path(out, name)
        if path.is_file():
            report.skipped.append(name)
            continue
        try:
            sample = dataset[index]
            write_sample(path, encode_sample(sample, encoders), name, raw_fields(sample)[4], latent_dtype)
        except Exception as exc:  # a bad sample must never stop the batch; it is reported and listed
            message = str(exc) if isinstance(exc, HydraError) else f"{type(exc).__name__}: {exc}"
            folder = str(Path(dataset.root) / name) if hasattr(dataset, "root") else None
            if folder is not None and folder not in message:  # name the sample's files
                message = f"{folder}: {message}"
            report.failed[name] = message.splitlines()[0] if message.strip() else type(exc).__name__
            bar.write(f"preprocess: skipped {name}: {report.failed[name]}")
        else:
            report.written.append(name)
    bar.close()
    report.seconds = time.perf_counter() - start
    failures = out / ("failed.json" if world_size == 1 else f"failed.rank{rank}.json")
    if report.failed:
        write_text_atomic(failures, json.dumps(report.failed, indent=1))
    elif failures.exists():
        failures.unlink()
    return report
