"""What `hydra-wm eval` compares: ground-truth samples (HM-World layout) and the matching predictions.

Ground truth: a folder of sample folders in the published HM-World layout (``cond.mp4``, ``tgt.mp4``,
``cond_mask.mp4``, ``tgt_mask.mp4``; Flatland adds ``truth.json``). Only the videos, ``check.json`` and
Flatland's truth are read; cameras and captions are not needed. Which target frames follow a subject's re-entry
comes from Flatland's truth, else from ``check.json`` in the published schema (every subject's exits and
entries, `data.hmworld.read_visibility_changes`), else from the mask videos (any subject pixel in view; red or
white subjects, `data.hmworld.subject_mask`).

Predictions, found per ground-truth sample ``NAME``:

* ``PRED/NAME.mp4``: what `hydra-wm generate` and `hydra-wm baseline` write, the condition frames followed by
  the generated frames, or the generated frames only. Which one is decided by the frame count: Tc + Tt
  frames (Tc, Tt: frames of the sample's cond.mp4 and tgt.mp4) → the generated frames are the last Tt;
  Tt frames → all of them. With ``--frames N`` (compare the first N target frames), Tc + N and N frames
  are accepted the same way. Any other count is an error unless ``--context-frames K`` says how many
  leading frames to drop.
* ``PRED/NAME/tgt.mp4``: an HM-World-layout folder; ``tgt.mp4`` holds the generated frames (same rule).

A prediction whose frame size differs from the ground truth's is refused, unless the caller asks
(``hydra-wm eval --resize``) to compare it with the ground truth resized the way the generator reads its inputs
(`video.cover_and_crop`: bilinear cover, centre crop).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from ..data.hmworld import read_visibility_changes, subject_boxes, subject_mask, visibility_in_view
from ..data.video import read_frames
from ..errors import InputError
from ..flatland import read_truth
from ..flatland.world import reentry_mask
from ..io_utils import natural_key, read_json


def list_samples(root: str | Path) -> list[str]:
    """Sample folder names under an HM-World-layout `root` (those holding cond.mp4 or tgt.mp4), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    names = [d.name for d in root.iterdir() if d.is_dir() and ((d / "tgt.mp4").is_file() or (d / "cond.mp4").is_file())]
    if not names:
        raise InputError(f"{root}: no HM-World sample folders (NAME/cond.mp4, NAME/tgt.mp4) found")
    return sorted(names, key=natural_key)


def _to_video(frames: np.ndarray) -> Tensor:
    """uint8 ``[T, H, W, 3]`` → float32 ``[3, T, H, W]`` in [-1, 1]."""
    return rearrange(torch.from_numpy(frames).float() / 127.5 - 1.0, "t h w c -> c t h w")


@dataclass
class GroundTruth:
    """One ground-truth sample, clips as ``[3, T, H, W]`` in [-1, 1]."""

    name: str
    folder: Path
    context: Tensor
    target: Tensor
    context_masks: Tensor | None  # bool [Tc, H, W] (subject pixels of cond_mask.mp4, red or white)
    target_masks: Tensor | None  # bool [Tt, H, W]
    in_view: np.ndarray | None  # bool [Tc + Tt, S]: subject s visible (per subject: Flatland, check.json; masks: S = 1)
    truth: dict | None  # Flatland's `read_truth` (None for other datasets or a resized comparison)

    @property
    def reentry(self) -> np.ndarray | None:
        """bool ``[Tt, S]``: target frames after subject s re-entered the view (`flatland.reentry_mask`)."""
        if self.truth is not None:
            return self.truth["reentry"]
        return None if self.in_view is None else reentry_mask(self.in_view, self.context.shape[1])

    def boxes(self, stream: str) -> Tensor | None:
        """Frame-relative union boxes ``[T, 4]`` of the subject masks (NaN rows: none), or None."""
        masks = self.context_masks if stream == "cond" else self.target_masks
        return None if masks is None else subject_boxes(masks)

    def events(self) -> list[dict]:
        """Exit/entry events in target-frame coordinates (negative: in the context), from `in_view`."""
        from ..flatland.world import find_events

        if self.in_view is None:
            return []
        shift = self.context.shape[1]
        return [
            {"subject": e["subject"], "exit": e["exit"] - shift, "entry": e["entry"] - shift}
            for e in find_events(self.in_view, shift)
        ]


def _clip(folder: Path, stream: str, size: tuple[int, int] | None) -> np.ndarray:
    path = folder / f"{stream}.mp4"
    if not path.is_file():
        raise InputError(f"{path}: file not found (every ground-truth sample needs cond.mp4 and tgt.mp4)")
    return read_frames(path, None, *(size or (None, None)))


def load_ground_truth(root: str | Path, name: str, size: tuple[int, int] | None = None) -> GroundTruth:
    """Read sample `name`; with `size` (H, W), clips and masks are resized to it (`video.cover_and_crop`) and
    Flatland's exact truth is left out."""
    folder = Path(root) / name
    context, target = _clip(folder, "cond", size), _clip(folder, "tgt", size)
    masks = {}
    for stream, frames in (("cond", len(context)), ("tgt", len(target))):
        path = folder / f"{stream}_mask.mp4"
        if path.is_file():
            masks[stream] = torch.from_numpy(subject_mask(read_frames(path, frames, *(size or (None, None))))[0])
    truth = None
    check = folder / "check.json"
    visibility = read_visibility_changes(read_json(check), check) if check.is_file() else None
    if (folder / "truth.json").is_file() and size is None:  # the exact truth holds at the native size only
        truth = read_truth(folder)
        in_view = truth["in_view"]
    elif visibility:  # check.json in the published schema: every subject's exits and entries
        in_view = visibility_in_view(visibility, len(context), len(target))[1]
    elif len(masks) == 2:
        in_view = np.concatenate([masks["cond"].any(dim=(1, 2)).numpy(), masks["tgt"].any(dim=(1, 2)).numpy()])[:, None]
    else:
        in_view = None
    return GroundTruth(
        name, folder, _to_video(context), _to_video(target), masks.get("cond"), masks.get("tgt"), in_view, truth
    )


def prediction_path(pred_root: str | Path, name: str) -> Path:
    """``PRED/NAME.mp4`` or ``PRED/NAME/tgt.mp4``; InputError naming both when neither exists."""
    pred_root = Path(pred_root)
    for path in (pred_root / f"{name}.mp4", pred_root / name / "tgt.mp4"):
        if path.is_file():
            return path
    raise InputError(
        f"{pred_root}: no prediction for ground-truth sample {name!r} (expected {name}.mp4 or {name}/tgt.mp4)"
    )


def read_prediction(
    path: Path, context_frames: int, target_frames: int, *, skip: int | None = None, frames: int | None = None
) -> Tensor:
    """The generated frames of a prediction video → ``[3, N, H, W]`` in [-1, 1] (N = `frames` or Tt).

    `skip`: leading frames to drop (None: decided by the frame count, see the module docstring).
    """
    video = read_frames(path)
    count = len(video)
    wanted = target_frames if frames is None else frames
    if skip is None:
        # (total frames, condition frames in front): full output, generated only, and with --frames N the same
        # for a generator run on N target frames.
        layouts = [
            (context_frames + target_frames, context_frames),
            (target_frames, 0),
            (context_frames + wanted, context_frames),
            (wanted, 0),
        ]
        skip = next((lead for total, lead in layouts if total == count), None)
        if skip is None:
            raise InputError(
                f"{path}: {count} frames; expected {context_frames + target_frames} ({context_frames} condition + "
                f"{target_frames} generated) or {target_frames} (generated only); pass --context-frames K "
                "if the video starts with K condition frames"
            )
    if count - skip < wanted:
        raise InputError(
            f"{path}: {count} frames leave {count - skip} generated frames after skipping {skip}; {wanted} are compared"
        )
    return _to_video(video[skip : skip + wanted])
