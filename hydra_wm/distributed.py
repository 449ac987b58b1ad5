"""Where this process sits under `torchrun`, and which device it uses: shared by `preprocess` and `train`.

Nothing here starts or joins a process group (`training.parallel.init_distributed` does, for training); a plain
`python` run is rank 0 of 1.
"""

from __future__ import annotations

import os

import torch

from .errors import InputError

DEVICE_PREFERENCES = ("auto", "cpu", "cuda")
"""What `pick_device` takes: `auto` is CUDA when available."""


def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain run."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(preference: str, local_rank: int) -> torch.device:
    """`cuda` -> cuda:LOCAL_RANK (error if absent), `cpu`, `auto` -> cuda when available."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda: no CUDA device is available")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")
