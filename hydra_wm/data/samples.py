"""The preprocessed-sample format: one safetensors file per sample plus a manifest, its writer and its reader.

A preprocessed folder (written by `hydra-wm preprocess`, `data.preprocess`) holds `manifest.json` (how the samples
were encoded) and `samples/<name>.safetensors`, one file per sample, no pickles:

* ``context_latents`` (C, Fc, h, w) and ``target_latents`` (C, Ft, h, w): each clip encoded on its own;
* ``context_cameras`` (Fc, 12) and ``target_cameras`` (Ft, 12): relative cameras, one per latent frame;
* ``text`` (n, Dt): the caption embedding with its all-zero padding rows cut off; the reader pads it back to
  the ``text_length`` rows (512 for umT5) stored in the file's metadata, so the DiT sees exactly the encoder's
  output while a file stores ~30-100 rows instead of 512;
* optionally ``target_subject_mask`` (Ft, h, w) uint8: 1 on the target latent cells that show a subject (from
  ``tgt_mask.mp4``), what ``TrainConfig.subject_loss_weight`` weights. Older files without it still load.

Any map-style dataset whose items have these five keys (``text`` padded) trains the same way: see
`hydra_wm.data.preprocess.EncodedDataset` for encoding an in-memory dataset (e.g. Flatland) on the fly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..errors import InputError
from ..io_utils import atomic_path, safetensors_header, write_text_atomic

SAMPLE_FORMAT = "hydra-wm-sample"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES_DIR = "samples"
TENSOR_KEYS = ("context_latents", "target_latents", "context_cameras", "target_cameras", "text")
SUBJECT_MASK = "target_subject_mask"
"""Optional tensor of a sample: uint8 ``[Ft, h, w]`` on the target latents' grid, 1 where a latent cell's footprint
shows a subject (`data.preprocess.latent_subject_mask`); what `TrainConfig.subject_loss_weight` weights."""
OPTIONAL_KEYS = (SUBJECT_MASK,)


# ------------------------------------------------------------------------------------------------------------- writing


def pack_sample(item: dict[str, Tensor], name: str, caption: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Training tensors of one sample -> (tensors, metadata) as stored: contiguous, text padding rows cut."""
    text = item["text"]
    valid = text.abs().amax(dim=-1) > 0  # (Lt,)
    length = int(valid.nonzero().max()) + 1 if valid.any() else 0
    tensors = {key: item[key].contiguous() for key in TENSOR_KEYS + OPTIONAL_KEYS if key != "text" and key in item}
    tensors["text"] = text[:length].contiguous()
    metadata = {
        "format": SAMPLE_FORMAT,
        "version": str(FORMAT_VERSION),
        "name": name,
        "caption": caption,
        "text_length": str(text.shape[0]),
    }
    return tensors, metadata


def sample_path(out: str | os.PathLike, name: str) -> Path:
    return Path(out) / SAMPLES_DIR / f"{name}.safetensors"


def write_sample(path: Path, item: dict[str, Tensor], name: str, caption: str, latent_dtype=None) -> None:
    """Write one sample file atomically (a crash never leaves a partial file under the final name)."""
    tensors, metadata = pack_sample(item, name, caption)
    if latent_dtype is not None:
        tensors = {k: v.to(latent_dtype) if k.endswith("latents") else v for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def write_manifest(out: Path, settings: dict) -> None:
    """Record the encoding settings; refuse a folder preprocessed with different ones (mixing is silent harm)."""
    manifest = out / MANIFEST
    record = {"format": SAMPLE_FORMAT, "version": FORMAT_VERSION, "settings": settings}
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None and old.get("settings") != settings:
            raise InputError(
                f"{manifest}: samples there were preprocessed with other settings ({old.get('settings')}); "
                "use another output folder"
            )
    write_text_atomic(manifest, json.dumps(record, indent=1))  # every rank writes the same bytes


# ------------------------------------------------------------------------------------------------------------- reading


def read_sample(path: str | os.PathLike) -> dict[str, Tensor]:
    """One preprocessed sample file -> the five training tensors (text padded back with zero rows), plus the
    optional subject mask where the file has one."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own types for a corrupt file
        raise InputError(f"{path}: not a readable safetensors sample ({exc})") from None
    known = set(TENSOR_KEYS) <= set(tensors) <= set(TENSOR_KEYS + OPTIONAL_KEYS)
    if metadata.get("format") != SAMPLE_FORMAT or not known:
        raise InputError(f"{path}: not a hydra-wm sample (expected tensors {', '.join(TENSOR_KEYS)})")
    text = tensors["text"]
    length = int(metadata["text_length"])
    tensors["text"] = torch.cat([text, text.new_zeros(length - text.shape[0], text.shape[1])])  # (Lt, Dt)
    return tensors


class PreprocessedDataset(torch.utils.data.Dataset):
    """The samples of a preprocessed folder, in sorted name order; item i is a dict of the five tensors (and the
    optional subject mask)."""

    def __init__(self, root: str | os.PathLike, *, check: bool = True):
        self.root = Path(root)
        manifest = self.root / MANIFEST
        if not manifest.is_file():
            raise InputError(f"{self.root}: no {MANIFEST}; expected a folder written by `hydra-wm preprocess`")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest}: not valid JSON ({exc.msg})") from None
        self.paths = sorted((self.root / SAMPLES_DIR).glob("*.safetensors"))
        if not self.paths:
            raise InputError(f"{self.root / SAMPLES_DIR}: no preprocessed samples")
        self.names = [p.stem for p in self.paths]
        if check:
            self.check()

    def check(self) -> None:
        """Every sample file whole, from headers and sizes alone (no tensor is read): a file cut short or not a
        hydra-wm sample is one error naming it, before any training step."""
        for path in self.paths:
            try:
                header = safetensors_header(path)
            except (ValueError, OSError) as exc:
                raise InputError(f"{path}: {exc}") from None
            metadata = header.get("__metadata__") or {}
            missing = [key for key in TENSOR_KEYS if key not in header]
            if metadata.get("format") != SAMPLE_FORMAT or missing:
                raise InputError(
                    f"{path}: not a hydra-wm sample ("
                    + (f"no tensor {missing[0]}" if missing else f"format {metadata.get('format')!r}")
                    + ")"
                )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return read_sample(self.paths[index])
