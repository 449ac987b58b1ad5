"""Training checkpoints (save, find, resume bit for bit) and the export of an inference checkpoint.

A training checkpoint is one safetensors file, `out/checkpoints/step_XXXXXXXX.safetensors`, written atomically by
rank 0 (no pickles): the trainable weights (`model.*`), their EMA (`ema.*`), the AdamW state (`optim.*`), the
torch RNG states of every rank (`rng.R.*`); and, as JSON in the metadata, the step, the data order, the
config, the optimiser's hyper-parameters and the Python/NumPy RNG states. Frozen weights are not stored: they
are rebuilt from the run's `init` checkpoint or `preset` + seed, exactly as at the start.

Weights are gathered to full tensors for saving and re-sharded on loading, so a checkpoint does not depend on
DDP vs FSDP; resuming bit for bit needs the same number of processes (the RNG states are per rank).

The export is the full model in the released `hydra.ckpt` flat key layout (`blocks.0.self_attn.q.weight`, ...),
which `hydra_wm.load_dit` (and the authors' code, for a `.ckpt`) loads.
"""

from __future__ import annotations

import json
import random
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..errors import CheckpointError
from ..io_utils import atomic_path, safetensors_problem
from ..models.state_dicts import METADATA_KEY
from .parallel import DistInfo

CHECKPOINT_DIR = "checkpoints"
STATE_KEY = "hydra_wm_train_state"
_STEP_FILE = re.compile(r"step_(\d{8})\.safetensors")


def _is_dtensor(tensor: Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full_cpu(tensor: Tensor) -> Tensor:
    """The whole tensor on the CPU (an FSDP shard is gathered: a collective every rank must join)."""
    if _is_dtensor(tensor):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu().clone()


def like(full: Tensor, reference: Tensor) -> Tensor:
    """`full` laid out as `reference`: same device, and sharded the same way if it is an FSDP shard."""
    if _is_dtensor(reference):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(
            full.to(reference.device, reference.dtype), reference.device_mesh, reference.placements
        )
    return full.to(reference.device, reference.dtype)


# --------------------------------------------------------------------------------------------------- RNG states


def rng_state(noise: torch.Generator) -> tuple[dict[str, Tensor], dict]:
    """This process's RNG states: (tensors, JSON-able) for torch CPU/CUDA + the noise generator, Python, NumPy."""
    tensors = {"torch_cpu": torch.get_rng_state(), "noise": noise.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return tensors, {
        "python": [version, list(python_state), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
    }


def set_rng_state(tensors: dict[str, Tensor], values: dict, noise: torch.Generator) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    noise.set_state(tensors["noise"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
    version, python_state, gauss = values["python"]
    random.setstate((version, tuple(python_state), gauss))
    kind, keys, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _gather(obj, info: DistInfo) -> list:
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------------------------------- save and load


def checkpoint_path(out: str | Path, step: int) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"step_{step:08d}.safetensors"


def checkpoint_step(path: str | Path) -> int:
    """The step in a checkpoint's file name (`step_00000400.safetensors` -> 400); -1 for another name."""
    match = _STEP_FILE.fullmatch(Path(path).name)
    return int(match.group(1)) if match else -1


def checkpoints(out: str | Path) -> list[Path]:
    """The checkpoints in `out`, oldest (lowest step) first."""
    folder = Path(out) / CHECKPOINT_DIR
    return (
        sorted(p for p in folder.glob("step_*.safetensors") if _STEP_FILE.fullmatch(p.name)) if folder.is_dir() else []
    )


def latest_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint with the highest step in `out`, or None."""
    found = checkpoints(out)
    return found[-1] if found else None


def checkpoint_problem(path: str | Path) -> str | None:
    """What makes `path` unusable as a training checkpoint, from its header and size alone (None: intact)."""
    problem = safetensors_problem(path)
    if problem is None:
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
        except Exception as exc:  # safetensors' own error types
            return f"unreadable header ({type(exc).__name__})"
        if STATE_KEY not in metadata:
            problem = f"no training state record (metadata key {STATE_KEY!r}): not written by `hydra-wm train`"
    return problem


def intact_checkpoint(out: str | Path, *, warn: bool = True) -> Path | None:
    """The latest checkpoint of `out` that is whole (`checkpoint_problem`); a truncated later one (a copy cut
    short, a disk that filled) is passed over with one warning line on stderr. None when there is no checkpoint;
    an error when there are some but none is whole."""
    found = checkpoints(out)
    for index in range(len(found) - 1, -1, -1):
        problem = checkpoint_problem(found[index])
        if problem is None:
            return found[index]
        if warn:
            fallback = f"trying {found[index - 1].name}" if index else "no earlier checkpoint"
            print(f"hydra-wm: warning: {found[index]}: {problem}; {fallback}", file=sys.stderr, flush=True)
    if found:
        raise CheckpointError(
            f"{found[-1].parent}: no intact checkpoint ({found[-1].name}: {checkpoint_problem(found[-1])})"
        )
    return None


def save_checkpoint(
    out: str | Path,
    *,
    step: int,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    ema: dict[str, Tensor] | None,
    noise: torch.Generator,
    state: dict,
    info: DistInfo,
    keep: int,
    milestone: int = 0,
) -> Path:
    """Save step `step` (collective: every rank calls it; rank 0 writes). `params` = trainable {name: param}.

    Keeps the `keep` most recent checkpoints, and every one whose step is a multiple of `milestone` (when > 0)."""
    names = list(params)
    tensors = {f"model.{n}": full_cpu(p) for n, p in params.items()}
    if ema is not None:
        tensors.update({f"ema.{n}": full_cpu(ema[n]) for n in names})
    opt_state = optimizer.state_dict()
    for index, name in enumerate(names):
        for key, value in opt_state["state"].get(index, {}).items():
            tensors[f"optim.{name}.{key}"] = full_cpu(value)
    groups = [
        {**{k: v for k, v in g.items() if k != "params"}, "params": [names[i] for i in g["params"]]}
        for g in opt_state["param_groups"]
    ]
    rng_tensors, rng_values = rng_state(noise)
    gathered = _gather((rng_tensors, rng_values), info)
    path = checkpoint_path(out, step)
    if info.is_main:
        for rank, (rank_tensors, _) in enumerate(gathered):
            tensors.update({f"rng.{rank}.{k}": v.cpu() for k, v in rank_tensors.items()})
        record = {
            **state,
            "step": step,
            "world_size": info.world_size,
            "param_groups": groups,
            "rng": [values for _, values in gathered],
        }
        with atomic_path(path) as tmp:
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={STATE_KEY: json.dumps(record)}
            )
        for stale in sorted(path.parent.glob("step_*.safetensors"))[:-keep]:
            if not (milestone and checkpoint_step(stale) % milestone == 0):
                stale.unlink(missing_ok=True)
    if info.distributed:
        dist.barrier()
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict]:
    """(tensors, state record) of a training checkpoint."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: training checkpoint not found")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: not a usable hydra-wm training checkpoint: {problem}")
    try:
        with safe_open(str(path), framework="pt") as f:
            record = json.loads((f.metadata() or {})[STATE_KEY])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # a corrupt header or state record
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: not a readable hydra-wm training checkpoint ({type(exc).__name__}: {first})"
        ) from None
    return tensors, record


@torch.no_grad()
def load_checkpoint(
    path: str | Path,
    *,
    params: dict[str, nn.Parameter],
    optimizer: torch.optim.Optimizer,
    ema: dict[str, Tensor] | None,
    noise: torch.Generator,
    info: DistInfo,
) -> dict:
    """Restore weights, EMA, optimiser and (same world size) RNG states in place; returns the state record."""
    tensors, record = read_checkpoint(path)
    names = list(params)
    missing = [n for n in names if f"model.{n}" not in tensors]
    if missing:
        raise CheckpointError(f"{path}: no weights for trainable parameter(s) {', '.join(missing[:3])}")
    for name, param in params.items():
        param.copy_(like(tensors[f"model.{name}"], param))
        if ema is not None:
            source = tensors.get(f"ema.{name}", tensors[f"model.{name}"])
            ema[name].copy_(like(source, ema[name]))
    state = {}
    for index, name in enumerate(names):
        prefix = f"optim.{name}."
        entry = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        state[index] = {k: v if k == "step" else like(v, params[name]) for k, v in entry.items()}
    groups = [{**g, "params": [names.index(n) for n in g["params"]]} for g in record["param_groups"]]
    for group in groups:
        group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if record["world_size"] == info.world_size:
        prefix = f"rng.{info.rank}."
        set_rng_state(
            {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, record["rng"][info.rank], noise
        )
    else:
        warnings.warn(
            f"{path}: saved by {record['world_size']} processes, resumed by {info.world_size}: "
            "weights and optimiser restored, random streams re-seeded (not bit-for-bit)",
            stacklevel=2,
        )
    return record


# --------------------------------------------------------------------------------------------------- export


def export_model(
    model: nn.Module, path: str | Path, info: DistInfo, *, ema: dict[str, Tensor] | None = None, metadata: dict
) -> Path | None:
    """Write the full model (EMA weights for the trainable ones when `ema`) in the released flat key layout.

    Collective (every rank calls; rank 0 writes). `.safetensors` gets `metadata` (config fields as strings, which
    `load_dit` reads); `.ckpt`/`.pt`/`.pth` is a flat `torch.save` dict of tensors as the authors' code loads, plus
    the same metadata as one JSON string under `models.state_dicts.METADATA_KEY`, so `load_dit` reads it back.
    """
    state = {name: full_cpu(tensor) for name, tensor in model.state_dict().items()}
    if ema is not None:
        state.update({name: full_cpu(tensor) for name, tensor in ema.items()})
    if not info.is_main:
        return None
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
        else:
            torch.save({**state, METADATA_KEY: json.dumps(metadata)}, tmp)
    return path
