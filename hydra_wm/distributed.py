"""Where this process sits under `torchrun`, and which device it uses: shared by `preprocess` and `train`.

Nothing here holds a process group for long (`training.parallel.init_distributed` joins one for training;
`sum_over_ranks` joins one for a single sum); a plain `python` run is rank 0 of 1.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

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


def sum_over_ranks(value: int) -> int:
    """`value` summed over the torchrun processes (itself for a plain run): a gloo group joined for this sum alone
    (or the one already joined). Every process waits here for the others, so that none ends early with a
    non-zero exit code, which makes torchrun stop the processes still working."""
    if env_rank()[1] == 1:
        return value
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo")
    total = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(total, group=dist.new_group(backend="gloo") if not created else None)
    if created:
        dist.destroy_process_group()
    return int(total.item())
