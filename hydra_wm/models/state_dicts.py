"""The one reader of checkpoint files for every model (DiT, VAE, umT5, LPIPS): tensors plus metadata, and the
layout check of files in a published key layout."""

from __future__ import annotations

import json
import os
import pickle
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
METADATA_KEY = "hydra_wm_metadata"
"""Entry of a torch-format (.pth/.ckpt/.pt) model file that holds, as a JSON string, what a .safetensors file keeps
in its metadata (the DiT config fields as strings): `hydra-wm export` and `train` write it, `read_state_dict`
returns it as the metadata. Everything else in such a file is a tensor, in the released flat key layout; loaders
that skip non-tensor entries (as DiffSynth's does) read the weights as before."""
INTEGER_KEYS = ("num_batches_tracked",)
"""Key suffixes whose tensors may be integers (BatchNorm's counter); every other weight must be floating point."""
_CHECK_CHUNK = 1 << 24  # elements per isfinite pass when counting bad values: a temporary of at most 16 MB


def check_weights(state: dict[str, Tensor], source: str | Path, what: str) -> None:
    """One CheckpointError unless every tensor is floating point (`INTEGER_KEYS` aside) and finite."""
    wrong = [k for k, v in state.items() if not v.is_floating_point() and not k.endswith(INTEGER_KEYS)]
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"{source}: key {wrong[0]!r} has dtype {str(state[wrong[0]].dtype).removeprefix('torch.')}{more}; "
            f"expected floating-point weights ({what})"
        )
    bad = {}
    for key, tensor in state.items():
        if not tensor.is_floating_point() or tensor.device.type == "meta" or not tensor.numel():
            continue
        low, high = torch.aminmax(tensor)  # one pass, no copy: NaN propagates, so both finite = all finite
        if bool(torch.isfinite(low)) and bool(torch.isfinite(high)):
            continue
        flat = tensor.reshape(-1)
        chunks = range(0, flat.numel(), _CHECK_CHUNK)
        bad[key] = sum(int((~torch.isfinite(flat[i : i + _CHECK_CHUNK])).sum()) for i in chunks)
    if bad:
        key = next(iter(bad))
        more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{source}: key {key!r} holds {bad[key]} NaN or infinite value(s){more}; the {what} is corrupt"
        )


def _unreadable(path: Path, what: str, exc: Exception) -> CheckpointError:
    """One line for a file torch or safetensors cannot read: a blocked pickle, a truncated file, anything else."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported operand:? ?(\S+)", text)
        thing = f" ({found.group(1)})" if found else ""
        return CheckpointError(
            f"{path}: refused to load {what}: it holds pickled Python objects{thing}, not only tensors, and "
            "hydra-wm never unpickles code; re-save it as a plain state dict or .safetensors"
        )
    truncated = ("central directory", "Invalid argument", "unexpected EOF", "incomplete", "truncated", "too short")
    if isinstance(exc, (OSError, RuntimeError, EOFError)) and any(t.lower() in text.lower() for t in truncated):
        return CheckpointError(
            f"{path}: cannot read {what}: the file is truncated or corrupt ({path.stat().st_size} bytes)"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return CheckpointError(f"{path}: cannot read {what}: {type(exc).__name__}: {first}")


def read_state_dict(
    path: str | os.PathLike, *, what: str = "checkpoint", hint: str = "", check: bool = True
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a `.safetensors`, `.pth`, `.pt` or `.ckpt` file, on the CPU.

    The metadata is a safetensors file's, or a torch file's `METADATA_KEY` entry. Only tensors are ever unpickled
    (`weights_only`): a file holding other Python objects is refused in one line. With `check` (default), every
    weight must be floating point and finite (`check_weights`).

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
        raise _unreadable(path, what, exc) from None
    for wrapper in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if isinstance(state, dict) and isinstance(state.get(METADATA_KEY), str):
        state = dict(state)
        try:
            metadata = {str(k): str(v) for k, v in json.loads(state.pop(METADATA_KEY)).items()}
        except (ValueError, AttributeError):
            raise CheckpointError(f"{path}: entry {METADATA_KEY!r}: expected a JSON object of strings") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors ({what}), got {type(state).__name__}")
    if check:
        check_weights(state, path, what)
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
