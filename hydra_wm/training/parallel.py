"""Distribution and memory savers, applied from outside to the single-device `HydraDiT` (torchtitan style).

`init_distributed` joins the process group `torchrun` describes in the environment (gloo on CPU, nccl on
GPU; nothing to do for a plain `python` run); `parallelize` then applies, in this order, per-block activation
checkpointing, and DDP or FSDP2 (`fully_shard` per block, then the root). The model code never knows.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..distributed import env_rank, pick_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank among world_size processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one (gloo for CPU, nccl for CUDA)."""
    rank, world_size, local_rank = env_rank()
    device = pick_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def shutdown_distributed(created: bool) -> None:
    """Leave the process group, if this process created it.

    The caller must have dropped every reference to the wrapped model first: gloo runs under torchrun abort at
    exit in ~15-20% of runs when DDP/FSDP objects are still alive at `destroy_process_group()`.
    """
    gc.collect()
    if created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute every DiT block in the backward pass (non-reentrant checkpoint, parameter names unchanged)."""
    from torch.distributed._composable import checkpoint

    for block in model.blocks:
        checkpoint(block)


def parallelize(
    model: nn.Module, info: DistInfo, *, mode: str, activation_checkpointing: bool, bf16: bool
) -> nn.Module:
    """Apply activation checkpointing and DDP/FSDP to `model` (already on `info.device`); returns what to call.

    FSDP (FSDP2 `fully_shard`): every block is one shard group, the embeddings and head the root's; with `bf16`
    the gathered parameters are bf16 and gradients are reduced in float32 (master weights stay float32).
    """
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    if not info.distributed:
        return model
    if mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for block in model.blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def uses_autocast(mode: str, info: DistInfo) -> bool:
    """bf16 comes from autocast, except under FSDP where the mixed-precision policy casts the parameters."""
    return not (info.distributed and mode == "fsdp")


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce of accumulation micro-steps (DDP `no_sync`, FSDP2 `set_requires_gradient_sync`)."""
    if enabled:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a float over all processes (the value itself without distribution)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return tensor.item() / info.world_size


def any_process(flag: bool, info: DistInfo) -> bool:
    """True on every process when `flag` is true on any (so that all stop at the same step)."""
    if not info.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
