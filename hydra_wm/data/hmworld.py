"""HM-World samples: clips, relative cameras, caption, subject masks and boxes, visibility changes.

Two layouts, detected from the folder:

* **Published HM-World** (``KlingTeam/HM-World``): one folder per sample with ``cond.mp4``, ``tgt.mp4``,
  ``cond_mask.mp4``, ``tgt_mask.mp4``, ``camera.json``, ``character.json``, ``check.json``, and one
  ``caption.txt`` beside the folders. Mask videos may be absent (their fields are then None).
* **The authors' examples** (``N.mp4``, ``camN.json``, ``caption.txt``): ``N.mp4`` holds only the 77
  condition frames (no target clip, no masks), and line N of ``caption.txt`` is its caption, as in the
  reference's ``infer_hydra.py``.

The published files, as third-party loaders run over the released dataset show them:

* ``camera.json``: ``{"cond_cam": {"0".."76": 4x4}, "tgt_cam": {...}}``, Unreal camera-to-world in
  centimetres, one matrix per frame of ``cond.mp4`` / ``tgt.mp4`` (`hydra_wm.data.cameras` also reads the
  other camera formats). No intrinsics are shipped: geometry that needs them takes a horizontal field of view,
  `fov_deg`, by default Unreal's 90° (`cameras.UNREAL_DEFAULT_HFOV_DEG`; `HMWorldSample.intrinsics`).
* ``check.json``: ``{"cond_check": {ACTOR: {CHARACTER: [{"frame": int, "inFrame": bool}, ...]}},
  "tgt_check": {...}}``. Each entry is a change of visibility of one subject (``ACTOR/CHARACTER``) in one
  clip: ``inFrame`` false an exit, true an entry, ``frame`` counted from 0 in that clip. They are read into
  ``sample.visibility`` exactly so (`read_visibility_changes`), per subject and per clip. The target clip
  continues the context clip (both are cut from one camera recording), so `visibility_in_view` carries a
  subject's state across the cut: before its first change a subject is in the state that change leaves.
  ``exit_frames`` / ``entry_frames`` list every subject's exits / entries in clip-global frames (context
  frames first, a target frame f is ``Tc + f``, Tc the context frames the cameras cover).
  Other check.json shapes are read by the old tolerant reader (`read_check_events`): numbers under keys
  naming an exit (``exit``, ``leave``, ``out`` …) or an entry (``enter``, ``in``, ``appear`` …) at any depth,
  or event objects ``{"type": "exit", "frame": 12}``, kept as written; nothing recognisable gives None events
  and a warning. The raw JSON is kept in ``sample.check``.
* Mask videos: the subject is drawn red (the authors' ``eval_dsc.py``: OpenCV HSV hue 0–10 or 160–180,
  saturation and value ≥ 100) or white (a third-party loader: channel 0 > 127). Which one is decided per video
  by `subject_mask`: among its bright pixels (brightest channel > 127), if at least half are the subject's
  red (`red_mask`) the video is read as red-subject, else as white-subject (channel 0 > 127). A video with no
  bright pixel has an empty mask either way. ``mask_style`` forces one reading.
* ``caption.txt``: lines ``name<TAB>caption`` (a third-party loader's; the name may be a path such as
  ``sample_001/cond.mp4`` or ``/data/hm_world/sample_001``: its deepest part naming a sample folder counts),
  ``name: caption`` or ``name|caption`` when any line starts with a sample folder's name; otherwise plain
  text: when every folder name ends in a number N (``sample12``), line N (1-based, as the examples number
  them); otherwise one line per sample in sorted folder order, with as many lines as samples.
* ``character.json`` ("character pose information"; no public reader exists): kept as raw JSON.

Incomplete samples: some released folders lack files. A sample missing one of the files the caller
requires (`require`, by the published names; ``camera.json`` always), or its caption line (name-keyed and
line-N captions), is left out of ``names`` and listed in ``incomplete`` with what is missing, so that a command
can skip it and say so (`hydra-wm preprocess` lists them in failed.json).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import torch

from ..errors import InputError
from ..io_utils import natural_key, read_json
from .cameras import UNREAL_DEFAULT_HFOV_DEG, Numerics, intrinsics, load_relative_cameras
from .video import read_frames, read_video, video_size

PUBLISHED_FILES = (
    "cond.mp4",
    "tgt.mp4",
    "cond_mask.mp4",
    "tgt_mask.mp4",
    "camera.json",
    "character.json",
    "check.json",
)
CAPTION = "caption"
"""What `HMWorldDataset.incomplete` lists for a sample without a caption line."""

# Red in the mask videos, as the reference's eval_dsc.py thresholds it with cv2.inRange in OpenCV's 8-bit
# HSV: hue 0–10 or 160–180 (i.e. −40°…20°), saturation and value ≥ 100/255. Loose enough for H.264
# colour bleeding at the subject's edges, strict enough to reject orange, pink and dark noise.
RED_HUE_DEGREES = (-40.0, 20.0)
RED_MIN_SATURATION = 100
RED_MIN_VALUE = 100
BRIGHT = 127
"""A mask pixel is bright when its brightest channel exceeds this; a white-subject mask is channel 0 > this."""
MaskStyle = Literal["auto", "red", "white"]
MASK_STYLES = ("auto", "red", "white")

CHECK_CLIPS = {"cond_check": "cond", "tgt_check": "tgt"}
"""check.json's keys → the clip their frames count in."""

_EXIT_WORDS = {"exit", "exits", "exited", "leave", "leaves", "out", "disappear", "disappears", "hide"}
_ENTRY_WORDS = {"enter", "enters", "entered", "entry", "in", "appear", "appears", "reappear", "return"}
_EVENT_TYPE_KEYS = ("type", "event", "action", "kind", "status", "name")
_EVENT_TIME_KEYS = ("frame", "frames", "time", "timestamp", "index", "t")


@dataclass(frozen=True)
class VisibilityChange:
    """One entry of check.json: `subject` (``ACTOR/CHARACTER``) enters (`in_frame`) or leaves the view at
    `frame` of `clip` ("cond" or "tgt", frames from 0 in each)."""

    clip: str
    subject: str
    frame: int
    in_frame: bool


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
    visibility: tuple[VisibilityChange, ...] | None = None  # check.json in the published schema
    mask_styles: dict[str, str] | None = None  # {"cond_mask.mp4": "red" | "white", ...} as decided per video
    fov_deg: float = UNREAL_DEFAULT_HFOV_DEG  # horizontal field of view (none is shipped: Unreal's default)
    intrinsics: np.ndarray | None = None  # K (3x3, pixels) of the clips as read, from fov_deg (cond.mp4's size)

    def in_view(self, context_frames: int, target_frames: int) -> tuple[list[str], np.ndarray] | None:
        """``(subjects, in_view bool [context_frames + target_frames, S])`` from check.json's visibility changes
        (`visibility_in_view`), or None when check.json is not in the published schema."""
        if self.visibility is None:
            return None
        return visibility_in_view(self.visibility, context_frames, target_frames)


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


def white_mask(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[..., 3]`` → bool ``[...]``: channel 0 > 127, the white-subject reading of a mask video."""
    return frames[..., 0] > BRIGHT


def mask_style(frames: np.ndarray) -> str:
    """ "red" or "white": how the mask video `frames` (uint8 ``[T, H, W, 3]``) draws its subject.

    Among the bright pixels (brightest channel > 127), at least half the subject's red → "red", else "white";
    no bright pixel → "red" (the mask is empty either way).
    """
    bright = frames[frames.max(axis=-1) > BRIGHT]  # (N, 3)
    if not len(bright):
        return "red"
    return "red" if 2 * int(red_mask(bright).sum()) >= len(bright) else "white"


def subject_mask(frames: np.ndarray, style: MaskStyle = "auto") -> tuple[np.ndarray, str]:
    """A mask video's frames (uint8 ``[T, H, W, 3]``) → (bool ``[T, H, W]``, the style read: "red"/"white")."""
    if style not in MASK_STYLES:
        raise InputError(f"mask style: expected one of {', '.join(MASK_STYLES)}, got {style!r}")
    chosen = mask_style(frames) if style == "auto" else style
    return (red_mask(frames) if chosen == "red" else white_mask(frames)), chosen


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
    path: Path, num_frames: int | None, height: int | None, width: int | None, style: MaskStyle = "auto"
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A mask video → (bool masks ``[T, H, W]``, boxes ``[T, 4]``, the style read), with the clip's resize/crop
    geometry."""
    masks, chosen = subject_mask(read_frames(path, num_frames, height, width), style)
    masks = torch.from_numpy(masks)
    return masks, subject_boxes(masks), chosen


# ----------------------------------------------------------------------------------------------
# check.json


def read_visibility_changes(data: Any, where: str | os.PathLike = "check.json") -> tuple[VisibilityChange, ...] | None:
    """check.json in the published schema → its visibility changes, sorted by (clip, subject, frame); None when
    `data` is not in that schema (no ``cond_check`` / ``tgt_check`` key). A malformed entry is an error naming
    `where` and its keys."""
    if not isinstance(data, dict) or not any(key in data for key in CHECK_CLIPS):
        return None
    changes = []
    for key, clip in CHECK_CLIPS.items():
        actors = data.get(key, {})
        if not isinstance(actors, dict):
            raise InputError(f'{where}: key "{key}": expected {{ACTOR: {{CHARACTER: [entries]}}}}')
        for actor, characters in actors.items():
            if not isinstance(characters, dict):
                raise InputError(f'{where}: key "{key}"/"{actor}": expected {{CHARACTER: [entries]}}')
            for character, entries in characters.items():
                here = f'{where}: key "{key}"/"{actor}"/"{character}"'
                if not isinstance(entries, list):
                    raise InputError(f'{here}: expected a list of {{"frame": int, "inFrame": bool}}')
                for i, entry in enumerate(entries):
                    frame = entry.get("frame") if isinstance(entry, dict) else None
                    in_frame = entry.get("inFrame") if isinstance(entry, dict) else None
                    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
                        raise InputError(f'{here}[{i}]: expected "frame": an integer >= 0, got {entry!r:.60}')
                    if not isinstance(in_frame, bool):
                        raise InputError(f'{here}[{i}]: expected "inFrame": true or false, got {entry!r:.60}')
                    changes.append(VisibilityChange(clip, f"{actor}/{character}", frame, in_frame))
    order = {clip: i for i, clip in enumerate(CHECK_CLIPS.values())}
    return tuple(sorted(changes, key=lambda c: (order[c.clip], c.subject, c.frame)))


def visibility_in_view(
    changes: Sequence[VisibilityChange], context_frames: int, target_frames: int
) -> tuple[list[str], np.ndarray]:
    """Visibility changes → ``(subjects, in_view bool [context_frames + target_frames, S])``.

    Clip-global frames: context first, target frame f is ``context_frames + f``. A subject keeps its state
    across the cut; before its first change it is in the opposite state of that change (an exit means it was in
    view). Changes beyond the clips' frames are ignored.
    """
    subjects = sorted({c.subject for c in changes}, key=natural_key)
    total = context_frames + target_frames
    in_view = np.zeros((total, len(subjects)), dtype=bool)
    for s, subject in enumerate(subjects):
        timeline = sorted(
            (c.frame + (context_frames if c.clip == "tgt" else 0), c.in_frame)
            for c in changes
            if c.subject == subject and c.frame < (context_frames if c.clip == "cond" else target_frames)
        )
        if not timeline:
            continue
        in_view[:, s] = not timeline[0][1]
        for frame, state in timeline:
            in_view[frame:, s] = state
    return subjects, in_view


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
    """Parsed check.json (any shape but the published one) → ``(exit_frames, entry_frames)`` sorted, or None when
    nothing is recognisable: the old tolerant reading (module docstring)."""
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


def sample_events(
    check: Any, where: str | os.PathLike, context_frames: int
) -> tuple[tuple[VisibilityChange, ...] | None, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """Parsed check.json → (visibility changes or None, (exit_frames, entry_frames) or None): the published schema
    first (its frames made clip-global with `context_frames`), else the tolerant reading (with a warning when it
    recognises nothing)."""
    visibility = read_visibility_changes(check, where)
    if visibility is not None:
        glob = [(c.frame + (context_frames if c.clip == "tgt" else 0), c.in_frame) for c in visibility]
        exits = tuple(sorted(f for f, entered in glob if not entered))
        return visibility, (exits, tuple(sorted(f for f, entered in glob if entered)))
    events = read_check_events(check)
    if events is None:
        warnings.warn(f"{where}: no exit/entry events recognised; kept as raw JSON only", stacklevel=3)
    return None, events


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


def _keyed_caption(line: str, known: set[str]) -> tuple[str, str] | None:
    """``name<TAB>caption`` (the name may be a path: its deepest part naming a sample), ``name: caption`` or
    ``name|caption`` → (sample name, caption); None when the line does not start with a sample's name."""
    if "\t" in line:
        key, caption = line.split("\t", 1)
    else:
        match = re.match(r"\s*([^:|]+?)\s*[:|]\s*(.*)", line)
        if not match:
            return None
        key, caption = match.groups()
    key = key.strip()
    path = PurePosixPath(key.replace("\\", "/"))
    for candidate in (key, *reversed(path.parts), path.stem):
        if candidate in known:
            return candidate, caption.strip()
    return None


def map_captions(path: Path, names: list[str], *, strict: bool = True) -> dict[str, str]:
    """caption.txt → {sample name: caption}, by the rules in the module docstring (`names` sorted).

    `strict`: a sample without a caption is an error; otherwise it is left out of the result (an incomplete
    sample). A file that fits no rule is an error either way.
    """
    lines = _read_lines(path)
    known = set(names)
    keyed: dict[str, str] = {}
    for line in lines:
        found = _keyed_caption(line, known)
        if found is not None:
            keyed[found[0]] = found[1]
    if keyed:
        rule = "as 'name<TAB>caption' / 'name: caption' lines"
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
                "(sorted folder order) or 'name<TAB>caption' lines"
            )
    for name in names:
        if not keyed.get(name):
            if strict:
                raise InputError(f"{path}: no caption for sample {name!r} (read {rule})")
            keyed.pop(name, None)
    return keyed


class HMWorldDataset:
    """Lazy reader of an HM-World folder (published layout) or the authors' example folder.

    Nothing is decoded until a sample is indexed. `num_frames` (None: every frame of each file), `height`
    and `width` (None: native size) apply to clips and masks alike, so that boxes line up with the clips.
    `load_clips`/`load_masks` skip the video decoding a caller does not need. `require`: published file names
    a sample must have to be listed in `names` (``camera.json`` always; in the example layout ``cond.mp4`` means
    ``N.mp4`` and ``camera.json`` ``camN.json``); the others are listed in `incomplete`. `mask_style`: how mask
    videos draw the subject (module docstring); `fov_deg`: the cameras' horizontal field of view.
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
        require: Sequence[str] = ("camera.json",),
        mask_style: MaskStyle = "auto",
        fov_deg: float = UNREAL_DEFAULT_HFOV_DEG,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: not a directory")
        unknown = sorted(set(require) - set(PUBLISHED_FILES))
        if unknown:
            raise InputError(f"require: unknown file(s) {', '.join(unknown)}; expected some of {PUBLISHED_FILES}")
        if mask_style not in MASK_STYLES:
            raise InputError(f"mask style: expected one of {', '.join(MASK_STYLES)}, got {mask_style!r}")
        intrinsics(1, 1, hfov_deg=fov_deg)  # checks the field of view
        self.num_frames, self.height, self.width = num_frames, height, width
        self.load_clips, self.load_masks = load_clips, load_masks
        self.latent_stride, self.camera_numerics = latent_stride, camera_numerics
        self.mask_style, self.fov_deg = mask_style, fov_deg
        self.require = tuple(f for f in PUBLISHED_FILES if f in ("camera.json", *require))
        sample_dirs = [
            d.name for d in self.root.iterdir() if d.is_dir() and any((d / f).is_file() for f in PUBLISHED_FILES)
        ]
        examples = [p.stem for p in self.root.glob("*.mp4") if p.stem.isdigit()]
        if sample_dirs:
            self.layout = "hm_world"
            found = sorted(sample_dirs, key=natural_key)
        elif examples:
            self.layout = "examples"
            found = sorted(examples, key=int)
        else:
            raise InputError(
                f"{self.root}: neither HM-World sample folders (cond.mp4, camera.json, …) "
                "nor example files (1.mp4, cam1.json, …) found"
            )
        self.captions = map_captions(self.root / "caption.txt", found, strict=False)
        self.incomplete: dict[str, list[str]] = {}
        """{sample: what it lacks (file names, `CAPTION`)} for the samples left out of `names`."""
        for name in found:
            missing = [self.path_of(name, f).name for f in self.require if not self.path_of(name, f).is_file()]
            missing += [CAPTION] if name not in self.captions else []
            if missing:
                self.incomplete[name] = missing
        self.names = [name for name in found if name not in self.incomplete]

    def path_of(self, name: str, published: str) -> Path:
        """Where sample `name` keeps the file the published layout calls `published` (the example layout has
        only the condition clip and the cameras: any other file is looked for, and not found, in NAME/)."""
        if self.layout == "examples" and published in ("cond.mp4", "camera.json"):
            return self.root / (f"{name}.mp4" if published == "cond.mp4" else f"cam{name}.json")
        return self.root / name / published

    def describe_incomplete(self) -> list[str]:
        """One line per incomplete sample: ``NAME: missing tgt.mp4, camera.json``."""
        return [f"{name}: missing {', '.join(missing)}" for name, missing in self.incomplete.items()]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[HMWorldSample]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index: int | str) -> HMWorldSample:
        name = index if isinstance(index, str) else self.names[index]
        if name in self.incomplete:
            raise InputError(f"{self.root / name}: incomplete sample: missing {', '.join(self.incomplete[name])}")
        if name not in self.captions:
            raise InputError(f"{self.root}: no sample named {name!r}")
        if self.layout == "examples":
            return self._example_sample(name)
        return self._published_sample(name)

    def _clip(self, path: Path) -> torch.Tensor | None:
        if not (self.load_clips and path.is_file()):
            return None
        return read_video(path, self.num_frames, self.height, self.width)

    def _masks(self, path: Path) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
        if not (self.load_masks and path.is_file()):
            return None, None, None
        return read_masks(path, self.num_frames, self.height, self.width, self.mask_style)

    def _cameras(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        if not path.is_file():
            raise InputError(f"{path}: file not found (every sample needs its cameras)")
        return load_relative_cameras(path, latent_stride=self.latent_stride, numerics=self.camera_numerics)

    def _intrinsics(self, video: Path) -> np.ndarray | None:
        if not video.is_file():
            return None
        source = video_size(video)
        height, width = (self.height, self.width) if self.height is not None else source
        return intrinsics(height, width, hfov_deg=self.fov_deg, source_size=source)

    def _example_sample(self, name: str) -> HMWorldSample:
        context_cameras, target_cameras = self._cameras(self.path_of(name, "camera.json"))
        return HMWorldSample(
            name=name,
            caption=self.captions[name],
            context_cameras=context_cameras,
            target_cameras=target_cameras,
            condition=self._clip(self.path_of(name, "cond.mp4")),
            fov_deg=self.fov_deg,
            intrinsics=self._intrinsics(self.path_of(name, "cond.mp4")),
        )

    def _published_sample(self, name: str) -> HMWorldSample:
        folder = self.root / name
        context_cameras, target_cameras = self._cameras(folder / "camera.json")
        condition_masks, condition_boxes, condition_style = self._masks(folder / "cond_mask.mp4")
        target_masks, target_boxes, target_style = self._masks(folder / "tgt_mask.mp4")
        styles = {f: s for f, s in (("cond_mask.mp4", condition_style), ("tgt_mask.mp4", target_style)) if s}
        check = read_json(folder / "check.json") if (folder / "check.json").is_file() else None
        context_frames = (len(context_cameras) - 1) * self.latent_stride + 1  # the frames the cameras cover
        visibility, events = (None, None)
        if check is not None:
            visibility, events = sample_events(check, folder / "check.json", context_frames)
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
            visibility=visibility,
            mask_styles=styles or None,
            fov_deg=self.fov_deg,
            intrinsics=self._intrinsics(folder / "cond.mp4"),
        )
