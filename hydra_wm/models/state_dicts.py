"""The one reader of checkpoint files for every model (DiT, VAE, umT5, LPIPS): tensors plus metadata, and the
layout check of files in a published key layout."""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from ..errors import CheckpointError

WAN21_URL = "https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B"
"""Where the Wan2.1-T2V-1.3B files (DiT, VAE, umT5 encoder, tokenizer) come from; nothing is downloaded."""
# Wrappers seen around released state dicts: Wan2.1_VAE.pth (`model_state`), training checkpoints (`state_dict`).
_WRAPPERS = ("model_state", "state_dict")


def read_state_dict(
    path: str | os.PathLike, *, what: str = "checkpoint", hint: str = ""
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, safetensors metadata) of a `.safetensors`, `.pth`, `.pt` or `.ckpt` file, on the CPU.

    Torch zip-format files are memory-mapped (`mmap=True`): a multi-GB checkpoint costs no RAM until its tensors
    are used, and assign-loading then keeps exactly one copy. Legacy (non-zip) files, such as torchvision's
    2017 weights, are read normally. `what` names the expected file in errors; `hint` says where to get it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found" + (f" ({hint})" if hint else ""))
    metadata: dict[str, str] = {}
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
                state = {key: f.get_tensor(key) for key in f.keys()}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # any unreadable file becomes one line naming it
        raise CheckpointError(f"{path}: cannot read {what}: {type(exc).__name__}: {exc}") from exc
    for wrapper in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors ({what}), got {type(state).__name__}")
    return state, metadata


def count_blocks(state: dict[str, Tensor], prefix: str = "blocks") -> int:
    """Number of distinct `{prefix}.<i>.` indices among the keys: the layers of a checkpoint, from its key names."""
    return len({m.group(1) for key in state if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", key))})


def check_layout(
    state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], *, source: str | Path, what: str
) -> None:
    """Raise a one-line CheckpointError unless `state` has exactly the keys and shapes of `expected`."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"{len(missing)} keys missing (e.g. {missing[0]!r})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})"] if unexpected else []
        raise CheckpointError(f"{source}: {' and '.join(parts)}; expected the {what} layout")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(state[key].shape)}, expected {shape} ({what})"
            )
