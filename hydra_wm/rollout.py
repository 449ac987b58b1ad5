"""Long-horizon rollouts: the memory bank, the chunk plan and what each chunk conditions on (docs/rollout.md).

A rollout continues a condition clip chunk after chunk along a camera path of any length. Every frame so far, the
condition clip's and every generated one, lies in a `MemoryBank` (latents and absolute camera poses, in RAM or
spilled to safetensors files). Each chunk is one run of the ordinary sampler (`pipeline.denoise`, driven by
`pipeline.Rollout`): the DiT sees [context latents ; the chunk's noisy target latents], and this module decides
which bank frames form the context (`select_history`):

* ``memory`` (bounded cost): the `RolloutConfig.recent_frames` newest frames, plus at most
  `RolloutConfig.memory_frames` older frames pre-selected from the whole bank by camera overlap with the chunk's
  cameras; HyDRA's in-model top-k then picks from those. The DiT input has the same length at every chunk once
  the bank holds that many frames, so time and memory per chunk stay flat while the bank grows;
* ``window``: the newest ``recent_frames + memory_frames`` frames only (same cost, no long-term memory);
* ``full``: every frame of the bank (the exact path: no pre-selection; its cost grows with the history).

Cameras: every chunk refers its cameras to its own first target frame (`data.cameras.relative_vectors` of the
stored absolute poses), as `generate` refers a clip's cameras to its first target frame. While the bank holds no
more frames than the context takes (a condition clip of ``recent_frames + memory_frames`` latent frames or fewer),
every mode's first chunk is exactly `generate`'s input, and its output equals `generate`'s bit for bit.

Noise: chunk i draws its initial noise from `chunk_seed` (seed, i) (chunk 0 from the seed itself, as `generate`),
so a resumed rollout redraws exactly the noise an uninterrupted one draws.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .errors import InputError
from .io_utils import atomic_path, safetensors_problem

HISTORY_MODES = ("memory", "window", "full")
SELECTIONS = ("camera", "camera-oldest")
"""How `memory` mode pre-selects older frames: `camera` (view-direction overlap with the chunk's cameras)."""


@dataclass
class RolloutConfig:
    """How a rollout conditions each chunk on the history (one field per `hydra-wm rollout` option)."""

    history: str = "memory"
    """What each chunk conditions on: `memory` (the recent frames plus frames pre-selected from the whole bank by
    camera overlap: constant cost per chunk), `window` (the newest frames only, same cost) or `full` (every frame
    so far: exact, cost grows with the history)."""
    chunk_frames: int = 77
    """Video frames generated per chunk (for the Wan VAE 4k+1; default: one reference-sized target, 20 latent
    frames); the last chunk may be shorter."""
    recent_frames: int = 8
    """Latent frames always kept from the end of the history (`memory` and `window`)."""
    memory_frames: int = 12
    """Latent frames pre-selected from the older history per chunk (`memory`; `window` takes this many more recent
    frames instead); a multiple of the memory tokenizer's temporal kernel (2)."""
    selection: str = "camera"
    """How `memory` pre-selects: `camera` (greedy coverage of the chunk's viewing directions, frames the recent
    ones do not already show first; of frames with the same view, the newest) or `camera-oldest` (the same, the
    oldest of frames with the same view: what the condition clip observed before any generated copy of it)."""

    def __post_init__(self) -> None:
        if self.history not in HISTORY_MODES:
            raise InputError(f"history: expected one of {', '.join(HISTORY_MODES)}, got {self.history!r}")
        if self.selection not in SELECTIONS:
            raise InputError(f"selection: expected one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if self.chunk_frames < 1:
            raise InputError(f"chunk_frames: expected at least 1, got {self.chunk_frames}")
        if self.recent_frames < 0 or self.memory_frames < 0 or self.context_frames < 1:
            raise InputError(
                f"recent_frames {self.recent_frames} / memory_frames {self.memory_frames}: expected >= 0, "
                "together at least 1"
            )

    @property
    def context_frames(self) -> int:
        """Latent context frames per chunk in `memory` and `window` mode (once the history is that long)."""
        return self.recent_frames + self.memory_frames

    @classmethod
    def for_context(
        cls, context_frames: int, chunk_frames: int, history: str = "memory", *, kernel: int = 1, **options
    ) -> RolloutConfig:
        """Chunks conditioned on as many frames as a model's context holds: the 8 newest (the default
        `recent_frames`, fewer for a shorter context) and the rest pre-selected from the older history, rounded
        down to whole units of the memory tokenizer's temporal `kernel`. `options`: the other fields."""
        recent = min(cls.recent_frames, context_frames)
        memory = (context_frames - recent) // kernel * kernel
        return cls(history, chunk_frames, recent_frames=recent, memory_frames=memory, **options)


# ------------------------------------------------------------------------------------------------ the plan


def plan_chunks(target_frames: int, chunk_frames: int, stride: int) -> list[int]:
    """Video frames of each chunk: as many `chunk_frames` as fit, then the rest (a shorter last chunk, not dropped).

    Every chunk is decoded on its own, so each must be ``stride * k + 1`` frames (`stride`: the codec's temporal
    compression, 4 for the Wan VAE, 1 for Flatland's pixel codec); a remainder that is not is an `InputError`."""
    for name, value in (("target frames", target_frames), ("chunk frames", chunk_frames)):
        if value < 1:
            raise InputError(f"{name}: expected at least 1, got {value}")
    if (chunk_frames - 1) % stride:
        raise InputError(f"chunk frames {chunk_frames}: expected {stride}k+1 (1, {stride + 1}, {2 * stride + 1}, ...)")
    full, rest = divmod(target_frames, chunk_frames)
    if rest and (rest - 1) % stride:
        raise InputError(
            f"{target_frames} target frames do not split into chunks of {chunk_frames}: the last chunk would hold "
            f"{rest} frames, not {stride}k+1; give {full * chunk_frames + (rest - 1) // stride * stride + 1} or "
            f"{full * chunk_frames} frames"
        )
    return [chunk_frames] * full + ([rest] if rest else [])


def chunk_latents(frames: int, stride: int) -> int:
    """Latent frames of a chunk of `frames` video frames (the first frame alone, then one per `stride`)."""
    return (frames - 1) // stride + 1


def chunk_seed(seed: int, index: int) -> int:
    """Initial-noise seed of chunk `index`: `seed` itself for chunk 0 (as `generate`), then a 63-bit number drawn
    from (seed, index) by numpy's `SeedSequence`, so neighbouring seeds do not share chunks."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2**63, int(index)]).generate_state(1, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------------ the bank


@dataclass
class BankPart:
    """One appended block of frames: the condition clip or one generated chunk."""

    frames: range
    """Bank frame indices it holds."""
    latents: Tensor | None
    """(1, C, F, h, w) float32, or None when it lives only in `path`."""
    path: Path | None
    """Its safetensors file, when the bank has a folder."""
    record: dict = field(default_factory=dict)
    """JSON-able notes (the chunk's `ChunkRecord`), stored in the file's metadata."""


class MemoryBank:
    """Latents and absolute camera poses of every frame of a rollout so far, one latent frame per bank frame.

    Appended a part at a time (the condition clip, then each chunk). With a `folder`, each part is also written
    there atomically (``condition.safetensors``, ``chunk_0000.safetensors``, ...) and `MemoryBank.open` reads
    them back, which is how an interrupted rollout resumes; with ``in_memory=False`` the latents then live only on
    disk and `latents` reads just the frames asked for (RAM holds the poses: 64 bytes a frame).
    """

    def __init__(self, folder: str | os.PathLike | None = None, *, in_memory: bool = True):
        self.folder = Path(folder) if folder is not None else None
        if not in_memory and self.folder is None:
            raise InputError("MemoryBank: in_memory=False needs a folder to spill the latents to")
        self.in_memory = in_memory
        self.parts: list[BankPart] = []
        self.poses = torch.zeros(0, 4, 4)
        """(N, 4, 4) float32 absolute camera-to-world poses of every bank frame."""
        self.shape: tuple[int, int, int] | None = None
        """(C, h, w) of every latent frame."""

    def __len__(self) -> int:
        return self.poses.shape[0]

    @property
    def num_chunks(self) -> int:
        """Generated chunks held (the first part is the condition clip)."""
        return max(len(self.parts) - 1, 0)

    def part_name(self, index: int) -> str:
        return "condition.safetensors" if index == 0 else f"chunk_{index - 1:04d}.safetensors"

    def append(self, latents: Tensor, poses: Tensor, record: dict | None = None) -> range:
        """Add (1, C, F, h, w) latents with their (F, 4, 4) absolute poses; returns their bank frame indices."""
        if latents.ndim != 5 or latents.shape[0] != 1 or poses.shape != (latents.shape[2], 4, 4):
            raise InputError(
                f"memory bank: expected latents (1, C, F, h, w) and poses (F, 4, 4), got {tuple(latents.shape)} "
                f"and {tuple(poses.shape)}"
            )
        shape = (latents.shape[1], *latents.shape[3:])
        if self.shape is not None and shape != self.shape:
            raise InputError(f"memory bank: latent frames of shape {shape}, the bank holds {self.shape}")
        self.shape = shape
        latents = latents.detach().to("cpu", torch.float32).contiguous()
        frames = range(len(self), len(self) + latents.shape[2])
        path = None
        if self.folder is not None:
            path = self.folder / self.part_name(len(self.parts))
            metadata = {"record": json.dumps(record or {}), "first_frame": str(frames.start)}
            with atomic_path(path) as tmp:
                save_file({"latents": latents, "poses": poses.float().contiguous()}, str(tmp), metadata=metadata)
        self.parts.append(BankPart(frames, latents if self.in_memory else None, path, dict(record or {})))
        self.poses = torch.cat([self.poses, poses.float().cpu()])
        return frames

    def latents(self, frames: Sequence[int]) -> Tensor:
        """(1, C, len(frames), h, w) float32 latents of the given bank frames, in that order."""
        frames = [int(f) for f in frames]
        if any(not 0 <= f < len(self) for f in frames):
            raise InputError(f"memory bank: frames {frames} outside the {len(self)} frames held")
        out = torch.empty(1, self.shape[0], len(frames), *self.shape[1:]) if self.shape else torch.empty(0)
        for part in self.parts:
            wanted = [(i, f - part.frames.start) for i, f in enumerate(frames) if f in part.frames]
            if not wanted:
                continue
            slots, local = zip(*wanted, strict=True)
            if part.latents is not None:
                block, offset = part.latents, 0
            else:  # read only the span of frames needed from the part's file
                offset, stop = min(local), max(local) + 1
                with safe_open(str(part.path), "pt") as f:
                    block = f.get_slice("latents")[:, :, offset:stop]
            out[:, :, list(slots)] = block[:, :, [i - offset for i in local]]
        return out

    def nbytes(self) -> int:
        """Bytes of latents the bank holds (in RAM or on disk)."""
        return len(self) * 4 * math.prod(self.shape) if self.shape else 0

    @classmethod
    def open(cls, folder: str | os.PathLike, *, in_memory: bool = True) -> MemoryBank:
        """The bank a rollout wrote to `folder` (condition, then chunks 0, 1, ... up to the first missing one)."""
        bank = cls(folder, in_memory=in_memory)
        while (path := bank.folder / bank.part_name(len(bank.parts))).is_file():
            problem = safetensors_problem(path)
            if problem:
                raise InputError(f"{path}: {problem}")
            with safe_open(str(path), "pt") as f:
                poses, metadata = f.get_tensor("poses"), f.metadata() or {}
                latents = f.get_tensor("latents") if in_memory else None
                shape = tuple(f.get_slice("latents").get_shape())
            bank.shape = (shape[1], *shape[3:])
            frames = range(len(bank), len(bank) + shape[2])
            bank.parts.append(BankPart(frames, latents, path, json.loads(metadata.get("record", "{}"))))
            bank.poses = torch.cat([bank.poses, poses])
        return bank


# ----------------------------------------------------------------------------------------- what to condition on


@dataclass
class HistoryChoice:
    """The bank frames one chunk conditions on."""

    context: list[int]
    """Bank frames the DiT sees as context, in input order (oldest first)."""
    selected: list[int]
    """Of those, the frames pre-selected from the older history (`memory` mode)."""
    recent: list[int]
    """Of those, the newest frames of the history."""


def select_history(bank_poses: Tensor, chunk_poses: Tensor, config: RolloutConfig, kernel: int = 2) -> HistoryChoice:
    """Which bank frames the next chunk conditions on (see the module docstring).

    bank_poses: (N, 4, 4) absolute poses of the bank; chunk_poses: (Ft, 4, 4) of the chunk's latent frames;
    kernel: the memory tokenizer's temporal kernel kt. `memory` pre-selects whole units of kt consecutive bank
    frames (aligned to bank frame 0) so that each of the DiT's memory tokens still summarises consecutive frames.
    """
    if config.history == "memory" and config.memory_frames % kernel:
        raise InputError(
            f"memory_frames {config.memory_frames}: expected a multiple of the memory tokenizer's {kernel} frames"
        )
    total = bank_poses.shape[0]
    if config.history == "full" or total <= config.context_frames:
        return HistoryChoice(list(range(total)), [], list(range(total)))
    if config.history == "window":
        recent = list(range(total - config.context_frames, total))
        return HistoryChoice(recent, [], recent)
    recent = list(range(total - config.recent_frames, total))
    units = (total - config.recent_frames) // kernel  # whole units before the recent frames
    picks = min(config.memory_frames // kernel, units)
    if picks == units:
        chosen = list(range(units))
    else:
        newest = config.selection == "camera"
        chosen = coverage_selection(bank_poses, chunk_poses, recent, units, picks, kernel, newest=newest)
    selected = [u * kernel + i for u in sorted(chosen) for i in range(kernel)]
    return HistoryChoice(selected + recent, selected, recent)


def view_directions(poses: Tensor) -> Tensor:
    """(N, 4, 4) camera-to-world poses -> (N, 3) unit viewing directions (the third column of R, as
    `models.memory.VIEW_DIRECTION` reads it from a camera vector)."""
    return F.normalize(poses[:, :3, 2].float(), dim=-1)


def coverage_selection(
    bank_poses: Tensor,
    chunk_poses: Tensor,
    recent: list[int],
    units: int,
    picks: int,
    kernel: int,
    *,
    newest: bool = True,
) -> list[int]:
    """`picks` of the first `units` kt-frame units of the bank, chosen greedily to cover the chunk's views.

    The overlap of a target frame with a unit is the cosine between its viewing direction and the unit's mean
    viewing direction (the ranking of the DiT's camera-FOV retrieval, `models.memory.camera_scores`, here between
    the chunk and the bank: O(bank) work). A target frame's coverage is its best overlap with the recent frames and
    the units chosen so far; each pick adds the unit that raises the summed coverage most (so a second copy of a
    view already covered gains nothing), ties going to the newest unit (`newest`) or to the oldest; when nothing
    more can be gained, the units with the best overlap with any target frame fill the remaining picks."""
    target_views = view_directions(chunk_poses)  # (Ft, 3)
    unit_views = view_directions(bank_poses[: units * kernel]).reshape(units, kernel, 3).mean(dim=1)
    targets = target_views @ F.normalize(unit_views, dim=-1).T  # (Ft, U)
    if recent:
        covered = (target_views @ view_directions(bank_poses[recent]).T).amax(dim=1)
    else:
        covered = torch.full((targets.shape[0],), -1.0)
    chosen: list[int] = []
    available = torch.ones(units, dtype=torch.bool)
    order = torch.arange(units - 1, -1, -1) if newest else torch.arange(units)  # argmax takes the first of ties
    for _ in range(picks):
        gain = (torch.maximum(targets, covered[:, None]) - covered[:, None]).sum(dim=0)  # (U,)
        if not bool((gain[available] > 1e-6).any()):
            gain = targets.amax(dim=0)
        gain = gain.masked_fill(~available, -math.inf)
        best = int(order[int(gain[order].argmax())])
        chosen.append(best)
        available[best] = False
        covered = torch.maximum(covered, targets[:, best])
    return chosen


# ----------------------------------------------------------------------------------------------- the record


@dataclass
class ChunkRecord:
    """What one chunk conditioned on and retrieved, by bank frame (JSON-able; stored with the chunk)."""

    index: int
    """Chunk number (0: the first generated chunk)."""
    seed: int
    """Its initial-noise seed (`chunk_seed`)."""
    target: list[int]
    """Bank frames it generated."""
    context: list[int]
    """Bank frames the DiT saw as context, in input order."""
    selected: list[int]
    """Of those, the frames pre-selected from the older history (`memory` mode)."""
    recent: list[int]
    """Of those, the newest frames of the history."""
    dit_frames: int
    """Latent frames of the DiT input (context + target): constant per chunk in `memory` and `window` mode."""
    retrieved: dict[str, float] = field(default_factory=dict)
    """{bank frame: fraction of (step, block, target frame) triples whose top-k memory frames included it} for the
    frames HyDRA's in-model retrieval picked (prompt pass; empty without memory attention)."""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ChunkRecord:
        return cls(**data)


def retrieved_bank_frames(
    indices: Tensor, valid: Tensor, dit_frames: Sequence[int], num_context: int, kernel: int
) -> dict[str, float]:
    """In-model retrievals (S steps, Nb blocks, F query frames, k) of the prompt pass -> {bank frame: fraction}.

    `dit_frames` maps DiT input frame i to its bank frame; memory frame j summarises input frames kt*j .. kt*j+kt-1,
    each of which is counted. Fractions are over the (step, block, target query frame) triples."""
    target_indices, target_valid = indices[:, :, num_context:], valid[:, :, num_context:]
    triples = target_indices.shape[0] * target_indices.shape[1] * target_indices.shape[2]
    num_memory = math.ceil(len(dit_frames) / kernel)
    counts = torch.zeros(num_memory, dtype=torch.long).scatter_add_(
        0, target_indices[target_valid].long().flatten(), torch.ones(int(target_valid.sum()), dtype=torch.long)
    )
    out: dict[str, float] = {}
    for memory_frame in torch.nonzero(counts).flatten().tolist():
        for i in range(kernel * memory_frame, min(kernel * (memory_frame + 1), len(dit_frames))):
            out[str(dit_frames[i])] = out.get(str(dit_frames[i]), 0.0) + float(counts[memory_frame]) / triples
    return out
