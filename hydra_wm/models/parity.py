"""Reproduce a reference forward-pass fixture (`official_dit_*_state/io.safetensors`) with `load_dit`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import InputError
from .loading import load_dit

MAX_ABS_TOL = 1e-3
REL_L2_TOL = 1e-5
_IO_KEYS = ("latents", "timestep", "context", "cam_con", "cam_tgt", "output")


@dataclass
class ParityResult:
    name: str
    max_abs: float
    rel_l2: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.max_abs <= MAX_ABS_TOL and self.rel_l2 <= REL_L2_TOL


def run_parity(prefix: str | Path, dtype: torch.dtype = torch.float32, **overrides) -> ParityResult:
    """Load `<prefix>_state.safetensors`, run `<prefix>_io.safetensors`'s inputs, compare with its output."""
    prefix = Path(prefix)
    state, io_path = Path(f"{prefix}_state.safetensors"), Path(f"{prefix}_io.safetensors")
    if not io_path.is_file():
        raise InputError(f"{io_path}: fixture file not found")
    model = load_dit(state, dtype=dtype, **overrides)
    io = load_file(io_path)
    missing = [k for k in _IO_KEYS if k not in io]
    if missing:
        raise InputError(f"{io_path}: missing tensor(s) {', '.join(missing)}")
    start = time.perf_counter()
    with torch.no_grad():
        out = model(io["latents"], io["timestep"], io["context"], io["cam_con"], io["cam_tgt"]).float()
    seconds = time.perf_counter() - start
    ref = io["output"]
    return ParityResult(prefix.name, (out - ref).abs().max().item(), ((out - ref).norm() / ref.norm()).item(), seconds)
