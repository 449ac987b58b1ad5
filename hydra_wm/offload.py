"""Memory management for generation, applied from outside the models.

Two mechanisms, chosen by one `offload` mode:

* **Sequential model offload** (`ModelSlots`, modes `model` and `blocks`): each model is loaded only when a
  pipeline step needs it and released right after, so the umT5-XXL encoder (~11 GB in bf16), the DiT
  (~2.8 GB) and the VAE are never resident together. Releasing moves the parameters to the `meta` device,
  which frees their storage even if a caller still holds a reference to the module. Mode `none` keeps every
  model once loaded (fastest for repeated calls, most memory).
* **Block-by-block DiT offload** (`BlockOffload`, mode `blocks`): the DiT's blocks stay in CPU memory
  (pinned on CUDA) and each block is copied to the compute device by a forward pre-hook just before it runs
  and dropped by a forward hook just after. On CUDA the next block is prefetched on a side stream while the
  current one computes, so at most two blocks (~95 MB each for Wan2.1 1.3B in bf16) are on the GPU. The
  model code knows nothing about it (torchtitan style: wrap from outside).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

OFFLOAD_MODES = ("none", "model", "blocks")


def release_memory(device: torch.device | str | None = None) -> None:
    """Return the memory of released models to the CUDA driver. On the CPU nothing is needed: `free_module`
    already dropped the storage (and a full `gc.collect` costs ~0.5 s with transformers imported)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        gc.collect()  # tensors held only by reference cycles
        torch.cuda.empty_cache()


def free_module(module: nn.Module) -> None:
    """Drop a module's parameter and buffer storage (moved to `meta`), whoever still references the module."""
    remove_block_offload(module)
    module.to("meta")


# ------------------------------------------------------------------------------------------ block offload


def _tensors(module: nn.Module) -> list[tuple[list[tuple[nn.Module, str]], Tensor]]:
    """Every parameter and buffer once, with all the (owner, name) places that hold it (ties included)."""
    places: dict[int, tuple[list[tuple[nn.Module, str]], Tensor]] = {}
    for owner in module.modules():
        for name, tensor in [*owner._parameters.items(), *owner._buffers.items()]:
            if tensor is not None:
                places.setdefault(id(tensor), ([], tensor))[0].append((owner, name))
    return list(places.values())


def _put(places: list[tuple[nn.Module, str]], data: Tensor) -> None:
    """Make `data` the tensor at every place: new Parameter objects rather than a `.data` swap, which torch
    refuses between some devices (e.g. cpu and meta). Inference only: parameters come back without grad."""
    owner, name = places[0]
    value = nn.Parameter(data, requires_grad=False) if name in owner._parameters else data
    for owner, name in places:
        (owner._parameters if name in owner._parameters else owner._buffers)[name] = value


@dataclass
class _Block:
    module: nn.Module
    host: list[Tensor]
    """The block's tensors in CPU memory (the only persistent copy), in `_tensors` order."""
    places: list[list[tuple[nn.Module, str]]]
    """Where each tensor lives in the module tree (swapped between host and device copies)."""
    nbytes: int
    device_copy: list[Tensor] | None = None
    ready: object | None = None
    """CUDA event recorded after the asynchronous copy (None on other devices)."""


@dataclass
class BlockOffload:
    """Keeps `blocks` in CPU memory and streams each one to `device` for its forward pass.

    Install with `enable_block_offload(model, device)`. `peak_resident_bytes` tells how many bytes of block
    weights were on the device at most (the figure the memory benchmark reports on machines without a GPU).
    If a block's forward raises, its device copy stays installed until its next forward or `remove()`.
    """

    device: torch.device
    blocks: list[_Block] = field(default_factory=list)
    handles: list = field(default_factory=list)
    prefetch: bool = True
    resident_bytes: int = 0
    peak_resident_bytes: int = 0
    fetch_log: list[int] = field(default_factory=list)
    """Order in which blocks were copied to the device (for tests and debugging)."""
    _stream: object | None = None

    def _fetch(self, index: int) -> None:
        """Start copying block `index` to the device (asynchronously on CUDA)."""
        block = self.blocks[index]
        if block.device_copy is not None:
            return
        self.fetch_log.append(index)
        if self.device.type == "cuda":
            if self._stream is None:
                self._stream = torch.cuda.Stream(self.device)
            with torch.cuda.stream(self._stream):
                block.device_copy = [t.to(self.device, non_blocking=True) for t in block.host]
                block.ready = self._stream.record_event()
        else:
            block.device_copy = [t.to(self.device) for t in block.host]
        self.resident_bytes += block.nbytes
        self.peak_resident_bytes = max(self.peak_resident_bytes, self.resident_bytes)

    def _before(self, index: int) -> None:
        self._fetch(index)
        block = self.blocks[index]
        if block.ready is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(block.ready)
            for t in block.device_copy:
                # Allocated on the copy stream, used on the compute stream: keep the allocator from reusing
                # the memory before the compute stream is done with it.
                t.record_stream(compute)
        for places, data in zip(block.places, block.device_copy, strict=True):
            _put(places, data)
        if self.prefetch and index + 1 < len(self.blocks):
            self._fetch(index + 1)

    def _after(self, index: int) -> None:
        block = self.blocks[index]
        for places, data in zip(block.places, block.host, strict=True):
            _put(places, data)
        block.device_copy, block.ready = None, None
        self.resident_bytes -= block.nbytes

    def remove(self) -> None:
        """Remove the hooks; the blocks stay in CPU memory."""
        for handle in self.handles:
            handle.remove()
        for index, block in enumerate(self.blocks):
            if block.device_copy is not None:
                self._after(index)
        self.handles.clear()


def enable_block_offload(
    model: nn.Module, device: torch.device | str, *, blocks_attr: str = "blocks", prefetch: bool = True
) -> BlockOffload:
    """Move everything but `model.<blocks_attr>` to `device`; keep the blocks on the CPU, streamed in by hooks.

    The model must be on the CPU. Returns the installed `BlockOffload` (also stored as `model._block_offload`).
    """
    device = torch.device(device)
    remove_block_offload(model)
    blocks = getattr(model, blocks_attr)
    offload = BlockOffload(device=device, prefetch=prefetch)
    pin = device.type == "cuda"
    for index, module in enumerate(blocks):
        module.to("cpu")
        entries = _tensors(module)
        places = [p for p, _ in entries]
        host = [t.detach().pin_memory() if pin else t.detach() for _, t in entries]
        for where, data in zip(places, host, strict=True):
            _put(where, data)
        nbytes = sum(t.numel() * t.element_size() for t in host)
        offload.blocks.append(_Block(module, host, places, nbytes))
        offload.handles.append(module.register_forward_pre_hook(lambda _m, _a, i=index: offload._before(i)))
        offload.handles.append(module.register_forward_hook(lambda _m, _a, _o, i=index: offload._after(i)))
    for name, child in model.named_children():
        if name != blocks_attr:
            child.to(device)
    for name, tensor in [*model._parameters.items(), *model._buffers.items()]:
        if tensor is not None:
            _put([(model, name)], tensor.detach().to(device))
    model._block_offload = offload
    return offload


def remove_block_offload(model: nn.Module) -> None:
    """Undo `enable_block_offload` (no-op when it was not applied); the blocks stay in CPU memory."""
    offload = getattr(model, "_block_offload", None)
    if offload is not None:
        offload.remove()
        del model._block_offload


# ------------------------------------------------------------------------------------- sequential offload


class ModelSlots:
    """Named model loaders; `use(name)` loads a model on demand and, unless mode is `none`, releases it after.

    >>> slots = ModelSlots({"vae": lambda: load_vae(path)}, offload="model", device="cuda")
    >>> with slots.use("vae") as vae:
    ...     latents = vae.encode(video)
    """

    def __init__(
        self, loaders: dict[str, Callable[[], nn.Module]], *, offload: str, device: torch.device | str
    ) -> None:
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload: expected one of {OFFLOAD_MODES}, got {offload!r}")
        self.loaders = dict(loaders)
        self.offload = offload
        self.device = torch.device(device)
        self.loaded: dict[str, nn.Module] = {}
        self.load_count: dict[str, int] = dict.fromkeys(self.loaders, 0)

    @contextlib.contextmanager
    def use(self, name: str) -> Iterator[nn.Module]:
        model = self.loaded.get(name)
        if model is None:
            model = self.loaders[name]()
            self.load_count[name] += 1
        try:
            yield model
        finally:
            if self.offload == "none":
                self.loaded[name] = model
            else:
                self.loaded.pop(name, None)
                free_module(model)
                del model
                release_memory(self.device)

    def release_all(self) -> None:
        for name in list(self.loaded):
            free_module(self.loaded.pop(name))
        release_memory(self.device)
