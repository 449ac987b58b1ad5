"""Pictures of what the memory retrieved: heat maps of the memory frames each generated frame chose.

The data is a `pipeline.RetrievalRecord` (every denoising step and block, recorded by `RetrievalRecorder`, the
sampler's hook); memory frame j summarises latent frames ``kt*j .. kt*j + kt - 1`` (kt = tokenizer temporal
stride, 2 for HyDRA). `hydra-wm generate --save-retrieval` and `hydra-wm demo` draw them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io_utils import atomic_path
from ..pipeline import RetrievalRecord


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
