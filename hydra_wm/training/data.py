"""Training data: the preprocessed-sample format, its reader (reads only), batching and a resumable data order.

A preprocessed folder (written by `hydra_wm.preprocess`) holds `manifest.json` (how the samples were encoded)
and `samples/<name>.safetensors`, one file per sample, no pickles:

* ``context_latents`` (C, Fc, h, w) and ``target_latents`` (C, Ft, h, w): each clip encoded on its own;
* ``context_cameras`` (Fc, 12) and ``target_cameras`` (Ft, 12): relative cameras, one per latent frame;
* ``text`` (n, Dt): the caption embedding with its all-zero padding rows cut off; the reader pads it back to
  the ``text_length`` rows (512 for umT5) stored in the file's metadata, so the DiT sees exactly the encoder's
  output while a file stores ~30-100 rows instead of 512;
* optionally ``target_subject_mask`` (Ft, h, w) uint8: 1 on the target latent cells that show a subject (from
  ``tgt_mask.mp4``), what ``TrainConfig.subject_loss_weight`` weights. Older files without it still load.

Any map-style dataset whose items have these five keys (``text`` padded) trains the same way: see
`hydra_wm.preprocess.EncodedDataset` for encoding an in-memory dataset (e.g. Flatland) on the fly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from ..errors import InputError

SAMPLE_FORMAT = "hydra-wm-sample"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES_DIR = "samples"
TENSOR_KEYS = ("context_latents", "target_latents", "context_cameras", "target_cameras", "text")
SUBJECT_MASK = "target_subject_mask"
"""Optional tensor of a sample: uint8 ``[Ft, h, w]`` on the target latents' grid, 1 where a latent cell's footprint
shows a subject (`preprocess.latent_subject_mask`); what `TrainConfig.subject_loss_weight` weights."""
OPTIONAL_KEYS = (SUBJECT_MASK,)


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

    def __init__(self, root: str | os.PathLike):
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

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return read_sample(self.paths[index])


def collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack items into a batch; every item must have the same shapes (same clip lengths and sizes). An optional
    tensor (the subject mask) is kept only when every item has it."""
    batch = {}
    for key in TENSOR_KEYS + tuple(k for k in OPTIONAL_KEYS if all(k in item for item in items)):
        shapes = {tuple(item[key].shape) for item in items}
        if len(shapes) > 1:
            raise InputError(f"batch: samples differ in {key} shape {sorted(shapes)}; use batch_size 1 or one size")
        batch[key] = torch.stack([item[key] for item in items])
    return batch


def batch_to_model_inputs(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Batch -> (latents [context; target] (B, C, F, h, w), text, cam_context, cam_target, context frames)."""
    latents = torch.cat([batch["context_latents"], batch["target_latents"]], dim=2)  # (B, C, Fc + Ft, h, w)
    num_context = batch["context_latents"].shape[2]
    return latents, batch["text"], batch["context_cameras"], batch["target_cameras"], num_context


@dataclass
class DataOrder:
    """Which samples each process sees at each micro-step: reproducible, and resumable from a counter.

    Epoch e visits a permutation of the dataset drawn from (seed, e); micro-step s of an epoch gives process r
    the slice [s * G + r * B, s * G + (r + 1) * B) of it, G = B * world_size (the last partial global batch of an
    epoch is dropped). The whole state is `micro_steps` (micro-batches consumed so far), so resuming at any step
    continues with exactly the batches an uninterrupted run would have seen.
    """

    dataset_size: int
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    micro_steps: int = 0

    def __post_init__(self) -> None:
        if self.batches_per_epoch < 1:
            raise InputError(
                f"dataset of {self.dataset_size} samples is smaller than one global batch "
                f"({self.batch_size} x {self.world_size} processes)"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.world_size)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)

    def next_indices(self) -> list[int]:
        """Indices of this process's next micro-batch (advances the counter)."""
        epoch, step = divmod(self.micro_steps, self.batches_per_epoch)
        start = step * self.batch_size * self.world_size + self.rank * self.batch_size
        self.micro_steps += 1
        return self._permutation(epoch)[start : start + self.batch_size].tolist()

    def state_dict(self) -> dict:
        return {"dataset_size": self.dataset_size, "seed": self.seed, "micro_steps": self.micro_steps}

    def load_state_dict(self, state: dict) -> None:
        if state["dataset_size"] != self.dataset_size or state["seed"] != self.seed:
            raise InputError(
                f"resume: the checkpoint's data order is for {state['dataset_size']} samples with seed "
                f"{state['seed']}, this run has {self.dataset_size} samples with seed {self.seed}"
            )
        self.micro_steps = int(state["micro_steps"])


class _OrderSampler(torch.utils.data.Sampler):
    """Batch sampler yielding `DataOrder` micro-batches forever (a DataLoader prefetches from it)."""

    def __init__(self, order: DataOrder):
        self.order = dataclasses.replace(order)  # a copy: the loader prefetches ahead of the training step

    def __iter__(self):
        while True:
            yield self.order.next_indices()


def make_loader(dataset, order: DataOrder, num_workers: int = 0):
    """An endless iterator of collated micro-batches in `order`, starting at its current counter.

    The loader works on a copy of the order (workers prefetch ahead); the caller adds one to `order.micro_steps`
    per batch it consumes, so that the saved state counts batches used, not prefetched.
    """
    return iter(
        torch.utils.data.DataLoader(
            dataset,
            batch_sampler=_OrderSampler(order),
            num_workers=num_workers,
            collate_fn=collate,
            # Its own generator: creating an iterator then draws no number from the global torch RNG (which a
            # checkpoint restores), and worker seeds are reproducible.
            generator=torch.Generator().manual_seed(order.seed * 1_000_003 + order.micro_steps),
        )
    )
