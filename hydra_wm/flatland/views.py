"""What each Flatland frame shows of the panorama: view columns, view overlap and revisited background.

Flatland's camera only turns, and its view is a window of a cylindrical panorama (see `world`), so which
background a frame shows is known exactly from its yaw: view column ``x`` shows panorama column
``(yaw_px - W // 2 + x) mod P`` with ``P = round(W * 360 / fov)`` and ``yaw_px`` the yaw in panorama pixels.
Columns are counted from the first frame's yaw (the world heading is irrelevant to what is revisited).

These facts make two questions about a memory model measurable without any learned metric:

* which context frames hold what a target frame shows (`view_overlap`): the memory frames a perfect
  retrieval would pick;
* which background pixels of a target frame were seen in the context but lie beyond the local attention
  window's reach (`revisited_beyond_window`): a window-only model cannot know them, a memory model can.
"""

from __future__ import annotations

import numpy as np

from ..config import window_starts


def panorama_width(width: int, fov_deg: float) -> int:
    """Panorama columns around 360 degrees for frames `width` pixels wide (as `FlatlandConfig.panorama_width`)."""
    return round(width * 360.0 / fov_deg)


def view_columns(yaw_deg, width: int, fov_deg: float) -> np.ndarray:
    """``[T]`` camera yaws in degrees -> ``[T, W]`` int panorama column shown by each view column."""
    P = panorama_width(width, fov_deg)
    yaw = np.asarray(yaw_deg, dtype=np.float64)
    yaw_px = np.round((yaw - yaw[0]) * P / 360.0).astype(np.int64)
    return (yaw_px[:, None] - width // 2 + np.arange(width)[None, :]) % P


def _visible(columns: np.ndarray, P: int) -> np.ndarray:
    """``[T, W]`` columns -> ``[T, P]`` bool: panorama column shown by frame t."""
    out = np.zeros((columns.shape[0], P), dtype=bool)
    np.put_along_axis(out, columns, True, axis=1)
    return out


def view_overlap(yaw_deg, width: int, fov_deg: float) -> np.ndarray:
    """``[T, T]`` float: fraction of frame i's view columns that frame j also shows (1 on the diagonal)."""
    columns = view_columns(yaw_deg, width, fov_deg)
    seen = _visible(columns, panorama_width(width, fov_deg))
    return np.take_along_axis(seen[None, :, :], columns[:, None, :], axis=2).mean(axis=2)


def revisited_beyond_window(yaw_deg, context_frames: int, width: int, fov_deg: float, window: int) -> np.ndarray:
    """``[Tt, W]`` bool: target view columns seen in the context, but in no context frame of the frame's window.

    ``yaw_deg`` covers context then target frames (``Tc + Tt``). The window of frame g is HyDRA's local window
    over the whole clip (`config.window_starts`, centred, ``window`` frames, one latent frame per video
    frame as with the pixel codec). True columns are background the model must take from memory: a `window`
    model sees at most the (not yet generated) target frames around g there.
    """
    columns = view_columns(yaw_deg, width, fov_deg)
    total = columns.shape[0]
    seen = _visible(columns, panorama_width(width, fov_deg))  # (T, P)
    in_context = seen[:context_frames].any(axis=0)  # (P,)
    starts = window_starts(total, window).numpy()
    out = np.zeros((total - context_frames, width), dtype=bool)
    for t in range(context_frames, total):
        lo, hi = int(starts[t]), int(starts[t]) + min(window, total)
        near = seen[lo : min(hi, context_frames)].any(axis=0) if lo < context_frames else np.zeros_like(in_context)
        known = in_context & ~near
        out[t - context_frames] = known[columns[t]]
    return out
