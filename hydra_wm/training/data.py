"""Training data: batching and a resumable data order over any dataset of training tensors.

Items are dicts of the training tensors (the format of `hydra_wm.data.samples`: a `PreprocessedDataset`, or an
`EncodedDataset` encoding clips on the fly); `collate` stacks them, `DataOrder` decides which samples each
process sees at each micro-step, and `make_loader` streams the batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..data.samples import OPTIONAL_KEYS, TENSOR_KEYS
from ..errors import InputError


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
    _epoch_permutation: tuple[int, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

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
        # Kept for the epoch: drawing it again for every micro-batch costs O(dataset) each time (10 ms at 1 M
        # samples, as long as a whole training step of a small model on a GPU).
        if self._epoch_permutation is None or self._epoch_permutation[0] != epoch:
            permutation = np.random.default_rng([self.seed, epoch]).permutation(self.dataset_size)
            self._epoch_permutation = (epoch, permutation)
        return self._epoch_permutation[1]

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
