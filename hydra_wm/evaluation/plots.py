"""Pictures of what the memory retrieved: heat maps of the memory frames each generated frame chose.

The data is a `pipeline.RetrievalRecord` (every denoising step and block, recorded by `RetrievalRecorder`, the
sampler's hook); memory frame j summarises latent frames ``kt*j .. kt*j + kt - 1`` (kt = tokenizer temporal
stride, 2 for HyDRA). `hydra-wm generate --save-retrieval` and `hydra-wm demo` draw them. `plot_rollout_timeline`
draws what each chunk of a rollout conditioned on and retrieved from the whole history (`rollout.ChunkRecord`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io_utils import atomic_path
from ..pipeline import RetrievalRecord
from ..rollout import ChunkRecord


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


ROLE_COLOURS = ("#ffffff", "#9ecae1", "#fd8d3c", "#636363")
"""Timeline cell colours: not used, a recent context frame, a frame pre-selected from the older history, a frame
the chunk generated."""


def plot_rollout_timeline(
    records: list[ChunkRecord], path: str | Path, *, condition_frames: int, title: str = ""
) -> None:
    """What each chunk of a rollout conditioned on and retrieved, on one timeline of bank (latent) frames.

    Top: one row per chunk; blue the recent frames it took as context, orange the frames pre-selected from the
    older history, grey the frames it generated. Bottom: HyDRA's in-model retrieval, the fraction of (step, block,
    generated frame) triples that retrieved each bank frame. The dashed line ends the condition clip."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    if not records:
        raise InputError("rollout timeline: no chunks to plot")
    frames = max(max(r.target) for r in records) + 1
    roles = np.zeros((len(records), frames), dtype=np.int64)
    retrieved = np.zeros((len(records), frames))
    for row, record in enumerate(records):
        roles[row, record.recent] = 1
        roles[row, record.selected] = 2
        roles[row, record.target] = 3
        for frame, fraction in record.retrieved.items():
            retrieved[row, int(frame)] = fraction
    height = 1.2 + 0.22 * len(records)
    fig = Figure(figsize=(min(4.0 + frames / 12.0, 18.0), 2 * height + 1.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.imshow(roles, aspect="auto", interpolation="nearest", cmap=ListedColormap(ROLE_COLOURS), vmin=0, vmax=3)
    top.set_title("conditioning per chunk: recent (blue), pre-selected from the history (orange), generated (grey)")
    image = bottom.imshow(retrieved, aspect="auto", interpolation="nearest", cmap="magma", vmin=0.0)
    bottom.set_title("in-model top-k retrieval: fraction of (step, block, generated frame) picking the frame")
    bottom.set_xlabel("bank frame (latent; left of the dashed line: the condition clip)")
    for ax in (top, bottom):
        ax.axvline(condition_frames - 0.5, color="#31a354", lw=1.2, ls="--")
        ax.set_ylabel("chunk")
        ax.set_yticks(range(0, len(records), max(1, len(records) // 10)))
    fig.colorbar(image, ax=[top, bottom], fraction=0.02, label="retrieved (lower panel)")  # shared: panels align
    fig.suptitle(title or "rollout: what each chunk drew on", fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
