"""Non-learned predictors, as floors for `hydra-wm eval`: what a world model must beat.

* ``repeat-last``: every target frame is the last context frame (a world that froze).
* ``closest-camera``: each target frame is the context frame whose camera is closest to the target camera
  (pure retrieval memory: right for a static scene seen before, wrong for every subject that moved).
* ``oracle-frozen``, ``oracle-walk-on`` (Flatland sets only; they read the world's truth, so they are reference
  points, not predictors a model could be): the clip rendered again from its seed with the true scenery and
  cameras, i.e. a perfect memory of everything static, and each subject after the context standing where the
  last context frame had it (``frozen``: remembers the subject, no motion model) or walking on at its last context
  step (``walk-on``: remembers it and extrapolates its motion; wrong only where it turns around later). They
  bracket how much of the subject scores takes tracking motion rather than recalling it.

Camera distance between two camera-to-world poses (`data.cameras.load_camera_poses`, metres):
``angle(R_a^T R_b) in degrees + deg_per_metre * |t_a - t_b|`` (default 10 degrees per metre). Ties go to the
latest context frame. When a camera file holds a different number of poses than the video has frames (the
raw UE dump pads to 77, relative files hold one pose per latent frame), video frame i uses pose
``round(i * (n_poses - 1) / (n_frames - 1))``.

Output, per sample, ``OUT/NAME.mp4``: the context frames followed by the predicted frames, the layout
`hydra-wm generate` writes, so `hydra-wm eval` treats both alike. Videos are lossless (H.264 4:4:4, crf 0),
so the scores measure the predictor, not the codec; 15 fps as generate writes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.cameras import DEG_PER_METRE, closest_context_frames_of, load_camera_poses
from ..data.video import count_frames, read_frames, write_video
from ..errors import InputError
from .samples import list_samples

ORACLES = {"oracle-frozen": "frozen", "oracle-walk-on": "walk-on"}  # baseline -> `render_clip`'s subject_motion
BASELINES = ("repeat-last", "closest-camera", *ORACLES)
FPS = 15


def predict(kind: str, folder: Path, *, deg_per_metre: float = DEG_PER_METRE) -> np.ndarray:
    """One sample's output video, uint8 ``[Tc + Tt, H, W, 3]``: its context frames, then the prediction."""
    context = read_frames(folder / "cond.mp4")
    if (folder / "tgt.mp4").is_file():
        target_frames = count_frames(folder / "tgt.mp4")
    elif (folder / "camera.json").is_file():
        target_frames = len(load_camera_poses(folder / "camera.json")[1])
    else:
        raise InputError(f"{folder}: neither tgt.mp4 nor camera.json tells how many target frames to predict")
    if kind == "repeat-last":
        prediction = np.repeat(context[-1:], target_frames, axis=0)
    elif kind in ORACLES:
        from ..flatland.dataset import read_clip_source
        from ..flatland.world import render_clip

        config, seed, index = read_clip_source(folder)
        if (config.context_frames, config.target_frames) != (len(context), target_frames):
            raise InputError(
                f"{folder}: {len(context)} + {target_frames} frames, but its flatland.json renders "
                f"{config.context_frames} + {config.target_frames}"
            )
        prediction = render_clip(config, seed, index, subject_motion=ORACLES[kind]).frames[len(context) :]
    elif kind == "closest-camera":
        prediction = context[
            closest_context_frames_of(folder / "camera.json", len(context), target_frames, deg_per_metre)
        ]
    else:
        raise InputError(f"baseline: expected one of {', '.join(BASELINES)}, got {kind!r}")
    return np.concatenate([context, prediction])


def run_baseline(
    kind: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    deg_per_metre: float = DEG_PER_METRE,
    progress: bool = True,
    failed: dict[str, str] | None = None,
) -> list[str]:
    """Write ``OUT/NAME.mp4`` for every sample of the HM-World-layout dataset `data`; returns the names written.
    Existing files of the same name are replaced. With `failed` (a dict), a sample that cannot be read is recorded
    there ({name: one line naming its file}) and the others are still written; without it, it raises."""
    if kind not in BASELINES:
        raise InputError(f"baseline: expected one of {', '.join(BASELINES)}, got {kind!r}")
    data, out = Path(data), Path(out)
    names, written = list_samples(data), []
    for name in tqdm(names, desc=kind, unit="sample", disable=not progress):
        try:
            video = predict(kind, data / name, deg_per_metre=deg_per_metre)
        except InputError as exc:
            if failed is None:
                raise
            failed[name] = str(exc)
            continue
        write_video(
            out / f"{name}.mp4", video, FPS, crf=0, pix_fmt="yuv444p", options={"preset": "veryfast", "threads": "1"}
        )
        written.append(name)
    return written
