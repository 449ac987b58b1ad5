"""HM-World samples: clips, relative cameras, caption, subject masks and boxes, exit/entry events.

Two layouts, detected from the folder:

* **Published HM-World** (``KlingTeam/HM-World``): one folder per sample with ``cond.mp4``, ``tgt.mp4``,
  ``cond_mask.mp4``, ``tgt_mask.mp4`` (subject drawn red), ``camera.json``, ``character.json``,
  ``check.json``, and one ``caption.txt`` beside the folders. Any clip or mask video may be absent (its
  field is then None); ``camera.json`` is required (format: see `hydra_wm.cameras`).
* **The authors' examples** (``N.mp4``, ``camN.json``, ``caption.txt``): ``N.mp4`` holds only the 77
  condition frames (no target clip, no masks), and line N of ``caption.txt`` is its caption, as in the
  reference's ``infer_hydra.py``.

Where the dataset leaves things open we assumed, and check, the following:

* ``caption.txt`` (published layout): lines ``name: caption`` (or ``name<TAB>caption``, ``name|caption``)
  when any line starts with a sample folder's name, and then every sample needs one; otherwise, when
  every folder name ends in a number N (``sample12``), line N (1-based, as the examples number them);
  otherwise one line per sample in sorted folder order, with as many lines as samples.
* ``check.json`` ("timestamps that record when the subject enters or leaves the frame"): no schema is
  published. `read_check_events` accepts numbers (or lists of numbers) under keys naming an exit
  (``exit``, ``leave``, ``out``, ``disappear`` …) or an entry (``enter``, ``entry``, ``in``, ``appear`` …), at
  any depth, and lists of event objects ``{"type": "exit", "frame": 12}``. Values are kept as written
  (frame indices or seconds: unknown). An unrecognised file gives None events and a warning; the raw
  JSON is kept in ``sample.check``.
* ``character.json`` ("character pose information"): kept as raw JSON, not interpreted.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io_utils import natural_key, read_json
from .cameras import Numerics, load_relative_cameras
from .video import read_frames, read_video

PUBLISHED_FILES = (
    "cond.mp4",
    "tgt.mp4",
    "cond_mask.mp4",
    "tgt_mask.mp4",
    "camera.json",
    "character.json",
    "check.json",
)

# Red in the mask videos, as the reference's eval_dsc.py thresholds it with cv2.inRange in OpenCV's 8-bit
# HSV: hue 0–10 or 160–180 (i.e. −40°…20°), saturation and value ≥ 100/255. Loose enough for H.264
# colour bleeding at the subject's edges, strict enough to reject orange, pink and dark noise.
RED_HUE_DEGREES = (-40.0, 20.0)
RED_MIN_SATURATION = 100
RED_MIN_VALUE = 100

_EXIT_WORDS = {"exit", "exits", "exited", "leave", "leaves", "out", "disappear", "disappears", "hide"}
_ENTRY_WORDS = {"enter", "enters", "entered", "entry", "in", "appear", "appears", "reappear", "return"}
_EVENT_TYPE_KEYS = ("type", "event", "action", "kind", "status", "name")
_EVENT_TIME_KEYS = ("frame", "frames", "time", "timestamp", "index", "t")


@dataclass(frozen=True)
class HMWorldSample:
    """One sample. Clips are float32 ``[3, T, H, W]`` in [-1, 1]; masks bool ``[T, H, W]``; boxes float32
    ``[T, 4]`` normalised (x0, y0, x1, y1) with NaN rows where the subject is not visible."""

    name: str
    caption: str
    context_cameras: torch.Tensor  # [m, 12], one relative pose per latent frame
    target_cameras: torch.Tensor  # [m, 12]
    condition: torch.Tensor | None = None
    target: torch.Tensor | None = None
    condition_masks: torch.Tensor | None = None
    target_masks: torch.Tensor | None = None
    condition_boxes: torch.Tensor | None = None
    target_boxes: torch.Tensor | None = None
    exit_frames: tuple[float, ...] | None = None
    entry_frames: tuple[float, ...] | None = None
    character: Any = None  # raw character.json
    check: Any = None  # raw check.json


# ----------------------------------------------------------------------------------------------
# Masks and boxes


def red_mask(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[..., 3]`` → bool ``[...]``: where a pixel is the subject's red (`RED_HUE_DEGREES`)."""
    rgb = frames.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    chroma = value - rgb.min(axis=-1)
    red_is_max = (r >= g) & (r >= b) & (chroma > 0)
    # HSV hue (degrees) of a pixel whose maximum channel is red: 60 · (G − B) / chroma, in (−60, 60].
    hue = 60.0 * (g - b) / np.maximum(chroma, 1)
    saturated = chroma * 255 >= RED_MIN_SATURATION * value
    return red_is_max & saturated & (value >= RED_MIN_VALUE) & (hue >= RED_HUE_DEGREES[0]) & (hue <= RED_HUE_DEGREES[1])


def subject_boxes(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    """bool ``[T, H, W]`` → float32 ``[T, 4]``: the union box of each frame's mask, normalised.

    ``(x0 / W, y0 / H, (x1 + 1) / W, (y1 + 1) / H)`` for the first/last masked column x0/x1 and row y0/y1,
    the convention of the reference's eval_dsc.py (``cv2.boundingRect`` over all red contours); NaN rows
    where the frame has no masked pixel.
    """
    masks = torch.as_tensor(masks, dtype=torch.bool)
    _, height, width = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (T, H), (T, W)
    present = rows.any(dim=1)
    first = lambda m: m.float().argmax(dim=1)  # noqa: E731 - first True index
    last = lambda m: m.shape[1] - 1 - m.flip(1).float().argmax(dim=1)  # noqa: E731
    boxes = torch.stack(
        [first(cols) / width, first(rows) / height, (last(cols) + 1) / width, (last(rows) + 1) / height],
        dim=1,
    ).float()  # (T, 4)
    boxes[~present] = float("nan")
    return boxes


def read_masks(
    path: Path, num_frames: int | None, height: int | None, width: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A mask video → (bool masks ``[T, H, W]``, boxes ``[T, 4]``), with the clip's resize/crop geometry."""
    masks = torch.from_numpy(red_mask(read_frames(path, num_frames, height, width)))
    return masks, subject_boxes(masks)


# ----------------------------------------------------------------------------------------------
# check.json


def _tokens(key: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", key)  # camelCase → camel Case
    return {t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t}


def _numbers(value: Any) -> list[float] | None:
    """A number, numeric string, or list of those → list; anything else → None."""
    items = value if isinstance(value, list) else [value]
    out: list[float] = []
    for item in items:
        if isinstance(item, bool):
            return None
        if isinstance(item, (int, float)):
            out.append(item)
        elif isinstance(item, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", item):
            out.append(float(item) if "." in item else int(item))
        elif isinstance(item, dict):
            nested = next((item[k] for k in _EVENT_TIME_KEYS if k in item), None)
            numbers = _numbers(nested) if nested is not None else None
            if numbers is None:
                return None
            out.extend(numbers)
        else:
            return None
    return out


def read_check_events(data: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Parsed check.json → ``(exit_frames, entry_frames)`` sorted, or None when nothing is recognisable."""
    exits: list[float] = []
    entries: list[float] = []
    found = False

    def visit(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            # An event object: {"type": "exit", "frame": 12}
            kind = next((node[k] for k in _EVENT_TYPE_KEYS if isinstance(node.get(k), str)), None)
            when = next((node[k] for k in _EVENT_TIME_KEYS if k in node), None)
            if kind is not None and when is not None and (numbers := _numbers(when)) is not None:
                words = _tokens(kind)
                target = exits if words & _EXIT_WORDS else entries if words & _ENTRY_WORDS else None
                if target is not None:
                    target.extend(numbers)
                    found = True
                    return
            for key, value in node.items():
                words = _tokens(str(key))
                target = exits if words & _EXIT_WORDS else entries if words & _ENTRY_WORDS else None
                numbers = _numbers(value) if target is not None else None
                if numbers is not None:
                    target.extend(numbers)
                    found = True
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(data)
    return (tuple(sorted(exits)), tuple(sorted(entries))) if found else None


# ----------------------------------------------------------------------------------------------
# Captions and layout


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: file not found (one caption per sample is needed)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read captions ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def map_captions(path: Path, names: list[str]) -> dict[str, str]:
    """caption.txt → {sample name: caption}, by the rules in the module docstring (`names` sorted)."""
    lines = _read_lines(path)
    known = set(names)
    keyed: dict[str, str] = {}
    for line in lines:
        match = re.match(r"\s*([^:\t|]+?)\s*[:\t|]\s*(.*)", line)
        if match and match.group(1) in known:
            keyed[match.group(1)] = match.group(2).strip()
    if keyed:
        rule = "as 'name: caption' lines"
    else:
        numbers = [re.search(r"(\d+)$", n) for n in names]
        if all(numbers):
            keyed = {
                n: lines[int(m.group(1)) - 1].strip()
                for n, m in zip(names, numbers, strict=True)
                if 0 < int(m.group(1)) <= len(lines)
            }
            rule = "line N for the sample numbered N"
        elif len(lines) == len(names):
            keyed = {n: line.strip() for n, line in zip(names, lines, strict=True)}
            rule = "one line per sample in sorted folder order"
        else:
            raise InputError(
                f"{path}: {len(lines)} lines for {len(names)} samples; expected one line per sample "
                "(sorted folder order) or 'name: caption' lines"
            )
    for name in names:
        if not keyed.get(name):
            raise InputError(f"{path}: no caption for sample {name!r} (read {rule})")
    return keyed


class HMWorldDataset:
    """Lazy reader of an HM-World folder (published layout) or the authors' example folder.

    Nothing is decoded until a sample is indexed. `num_frames` (None: every frame of each file), `height`
    and `width` (None: native size) apply to clips and masks alike, so that boxes line up with the clips.
    `load_clips`/`load_masks` skip the video decoding a caller does not need.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        load_clips: bool = True,
        load_masks: bool = True,
        latent_stride: int = 4,
        camera_numerics: Numerics = "reference",
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a directory")
        self.num_frames, self.height, self.width = num_frames, height, width
        self.load_clips, self.load_masks = load_clips, load_masks
        self.latent_stride, self.camera_numerics = latent_stride, camera_numerics
        sample_dirs = [
            d.name for d in self.root.iterdir() if d.is_dir() and any((d / f).is_file() for f in PUBLISHED_FILES)
        ]
        examples = [p.stem for p in self.root.glob("*.mp4") if p.stem.isdigit()]
        if sample_dirs:
            self.layout = "hm_world"
            self.names = sorted(sample_dirs, key=natural_key)
        elif examples:
            self.layout = "examples"
            self.names = sorted(examples, key=int)
        else:
            raise InputError(
                f"{self.root}: neither HM-World sample folders (cond.mp4, camera.json, …) "
                "nor example files (1.mp4, cam1.json, …) found"
            )
        self.captions = map_captions(self.root / "caption.txt", self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[HMWorldSample]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int | str) -> HMWorldSample:
        name = index if isinstance(index, str) else self.names[index]
        if name not in self.captions:
            raise InputError(f"{self.root}: no sample named {name!r}")
        if self.layout == "examples":
            return self._example_sample(name)
        return self._published_sample(name)

    def _clip(self, path: Path) -> torch.Tensor | None:
        if not (self.load_clips and path.is_file()):
            return None
        return read_video(path, self.num_frames, self.height, self.width)

    def _masks(self, path: Path) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not (self.load_masks and path.is_file()):
            return None, None
        return read_masks(path, self.num_frames, self.height, self.width)

    def _cameras(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        if not path.is_file():
            raise InputError(f"{path}: file not found (every sample needs its cameras)")
        return load_relative_cameras(path, latent_stride=self.latent_stride, numerics=self.camera_numerics)

    def _example_sample(self, name: str) -> HMWorldSample:
        context_cameras, target_cameras = self._cameras(self.root / f"cam{name}.json")
        return HMWorldSample(
            name=name,
            caption=self.captions[name],
            context_cameras=context_cameras,
            target_cameras=target_cameras,
            condition=self._clip(self.root / f"{name}.mp4"),
        )

    def _published_sample(self, name: str) -> HMWorldSample:
        folder = self.root / name
        context_cameras, target_cameras = self._cameras(folder / "camera.json")
        condition_masks, condition_boxes = self._masks(folder / "cond_mask.mp4")
        target_masks, target_boxes = self._masks(folder / "tgt_mask.mp4")
        check = read_json(folder / "check.json") if (folder / "check.json").is_file() else None
        events = read_check_events(check) if check is not None else None
        if check is not None and events is None:
            warnings.warn(
                f"{folder / 'check.json'}: no exit/entry events recognised; kept as raw JSON only",
                stacklevel=2,
            )
        character_path = folder / "character.json"
        return HMWorldSample(
            name=name,
            caption=self.captions[name],
            context_cameras=context_cameras,
            target_cameras=target_cameras,
            condition=self._clip(folder / "cond.mp4"),
            target=self._clip(folder / "tgt.mp4"),
            condition_masks=condition_masks,
            target_masks=target_masks,
            condition_boxes=condition_boxes,
            target_boxes=target_boxes,
            exit_frames=events[0] if events else None,
            entry_frames=events[1] if events else None,
            character=read_json(character_path) if character_path.is_file() else None,
            check=check,
        )
