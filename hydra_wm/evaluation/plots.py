"""Which memory frames each frame retrieved during generation: recording, saving and a heat-map picture.

The DiT reports, for every block that uses hybrid memory, the top-k memory frames chosen by each query frame
(`retrieval.Retrieval`). `RetrievalRecorder` collects them at every denoising step into one
`RetrievalRecord` with tensors of shape (S steps, Nb blocks, P passes, F frames, k); pass 0 is the prompt
pass, pass 1 (with classifier-free guidance) the negative-prompt pass. Memory frame j summarises latent frames
``kt*j .. kt*j + kt - 1`` (kt = tokenizer temporal stride, 2 for HyDRA).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from ..errors import InputError
from ..io_utils import atomic_path
from ..models import memory as retrieval
from ..models.memory import Retrieval


@dataclass
class AttentionStats:
    """One attention call seen by `attention_probe` (a chunk of query frames of one block)."""

    effective_keys: Tensor
    """(Bf, T) exp(entropy) of each query's attention weights, averaged over heads: 1 = all on one key, L = uniform."""
    tail_mass: Tensor
    """(Bf, T) attention mass on the keys after the first `window_keys` (in `memory` mode: the memory keys)."""
    num_keys: int
    """Keys each query sees (L)."""


@contextlib.contextmanager
def attention_probe(window_keys: int) -> Iterator[list[AttentionStats]]:
    """Record how sharply the DiT attends: every attention call inside the block appends an `AttentionStats`.

    Calls come block by block, each block's query frames in chunks (`DiTConfig.attention_chunk_frames`) in memory
    and window mode, all tokens at once in full mode. A diagnostic (recomputes the softmax in float32): not for
    generation."""
    calls: list[AttentionStats] = []
    inner = retrieval.attention

    def probe(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        logits = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B*, N, Lq, Lk)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        weights = logits.softmax(dim=-1)
        entropy = -(weights * weights.clamp_min(1e-30).log()).sum(dim=-1)
        tail = weights[..., window_keys:].sum(dim=-1)
        calls.append(AttentionStats(entropy.exp().mean(dim=1), tail.mean(dim=1), k.shape[-2]))
        return inner(q, k, v, mask)

    # windowed_memory_attention and dense_attention look `attention` up in their module at call time
    retrieval.attention = probe
    try:
        yield calls
    finally:
        retrieval.attention = inner


@dataclass
class RetrievalRecord:
    """Retrievals of one generated sample, every step and block."""

    indices: Tensor
    """(S, Nb, P, F, k) int64 chosen memory frames, best first."""
    scores: Tensor
    """(S, Nb, P, F, k) float32 relevance scores of the chosen frames."""
    valid: Tensor
    """(S, Nb, P, F, k) bool, False for unused slots (fewer eligible memory frames than k)."""
    num_context_frames: int
    """Latent context frames Fc: query frames Fc.. are the target frames."""
    num_memory_frames: int
    """Memory frames Fm (columns of the heat map)."""
    frames_per_memory: int
    """Latent frames summarised by one memory frame (tokenizer temporal stride)."""
    timesteps: list[float] = field(default_factory=list)
    """Timestep of each recorded step (as the DiT saw it)."""

    def counts(self, pass_index: int = 0) -> Tensor:
        """(S, Nb, F, Fm) int: 1 where query frame f retrieved memory frame m at that step and block."""
        idx = self.indices[:, :, pass_index]  # (S, Nb, F, k)
        ok = self.valid[:, :, pass_index].long()
        out = torch.zeros(*idx.shape[:-1], self.num_memory_frames, dtype=torch.long)
        return out.scatter_add_(-1, idx.long(), ok)


class RetrievalRecorder:
    """Callback for `pipeline.denoise`: `recorder(step, timestep, retrievals)` with one entry per block."""

    def __init__(self, passes: int) -> None:
        self.passes = passes
        self.steps: list[tuple[Tensor, Tensor, Tensor]] = []
        self.timesteps: list[float] = []
        self.num_memory_frames = 0

    def __call__(self, step: int, timestep: float, retrievals: list[Retrieval | None]) -> None:
        used = [r for r in retrievals if r is not None]
        if not used:
            return
        self.num_memory_frames = used[0].all_scores.shape[-1]
        # Rows of each Retrieval are [prompt samples ; negative samples]; one sample per pass here.
        stack = lambda name: torch.stack([getattr(r, name).detach().cpu() for r in used])  # (Nb, P*B, F, k)
        self.steps.append((stack("indices"), stack("scores").float(), stack("valid")))
        self.timesteps.append(float(timestep))

    def record(self, num_context_frames: int, frames_per_memory: int) -> RetrievalRecord | None:
        if not self.steps:
            return None
        indices, scores, valid = (torch.stack(parts) for parts in zip(*self.steps, strict=True))
        return RetrievalRecord(
            indices=indices,
            scores=scores,
            valid=valid,
            num_context_frames=num_context_frames,
            num_memory_frames=self.num_memory_frames,
            frames_per_memory=frames_per_memory,
            timesteps=self.timesteps,
        )


def save_retrieval(path: str | Path, record: RetrievalRecord) -> None:
    """Write indices, scores and validity as safetensors (layout described in the file's metadata)."""
    passes = ["prompt", "negative prompt"][: record.indices.shape[2]]
    metadata = {
        "layout": "(steps, blocks, passes, query frames, k); query frames are latent frames, context first",
        "passes": json.dumps(passes),
        "num_context_frames": str(record.num_context_frames),
        "num_memory_frames": str(record.num_memory_frames),
        "frames_per_memory": str(record.frames_per_memory),
        "memory_frame": "memory frame j summarises latent frames frames_per_memory*j .. frames_per_memory*(j+1)-1",
        "timesteps": json.dumps(record.timesteps),
    }
    tensors = {
        "indices": record.indices.to(torch.int32).contiguous(),
        "scores": record.scores.contiguous(),
        "valid": record.valid.contiguous(),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _heat(ax, data: np.ndarray, record: RetrievalRecord, title: str, ylabel: str = "", small: bool = False):
    image = ax.imshow(data, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    # Memory frames left of the line summarise context frames only.
    boundary = record.num_context_frames / record.frames_per_memory - 0.5
    ax.axvline(boundary, color="#4fc3f7", lw=1.0 if small else 1.5)
    ax.set_title(title, fontsize=7 if small else 10)
    if small:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("memory frame (left of the blue line: context)")
        ax.set_ylabel(ylabel)
        rows = data.shape[0]
        ticks = list(range(0, rows, max(1, rows // 10)))
        ax.set_yticks(ticks)
    return image


def plot_retrieval(record: RetrievalRecord, path: str | Path, *, title: str = "") -> None:
    """Heat maps of how often each target frame retrieved each memory frame (prompt pass).

    Top left: over all blocks and steps; top right: per step (over blocks and target frames); below: one
    small map per block (over steps). Colour: fraction of the (block, step) pairs that picked the frame.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = record.counts(0).float()  # (S, Nb, F, Fm)
    steps, blocks = counts.shape[:2]
    target = counts[:, :, record.num_context_frames :]  # (S, Nb, Ft, Fm)
    if target.shape[2] == 0:
        raise InputError("retrieval record has no target frames to plot")
    overall = target.mean(dim=(0, 1)).numpy()  # (Ft, Fm)
    per_step = target.mean(dim=(1, 2)).numpy()  # (S, Fm)
    per_block = target.mean(dim=0).numpy()  # (Nb, Ft, Fm)
    cols = min(6, blocks)
    block_rows = math.ceil(blocks / cols)
    fig = Figure(figsize=(2.0 * max(cols, 5), 4.2 + 1.7 * block_rows), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        2 + block_rows, 2 * cols, height_ratios=[2.4, 0.25] + [1.0] * block_rows, wspace=0.8, hspace=0.45
    )
    ax = fig.add_subplot(grid[0, :cols])
    image = _heat(ax, overall, record, "all blocks and steps", ylabel="target frame (latent)")
    ax = fig.add_subplot(grid[0, cols:])
    _heat(ax, per_step, record, "rows: denoising steps (over blocks, target frames)")
    for b in range(blocks):
        ax = fig.add_subplot(grid[2 + b // cols, 2 * (b % cols) : 2 * (b % cols) + 2])
        _heat(ax, per_block[b], record, f"block {b}", small=True)
    fig.colorbar(image, ax=fig.axes[:2], fraction=0.03, label="fraction retrieved")
    fig.suptitle(title or "memory frames retrieved by each target frame", fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
