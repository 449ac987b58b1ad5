"""Flatland on disk (the published HM-World layout) and in memory (a torch Dataset rendering on the fly).

Layout written by `write_dataset(out, ...)`::

    out/
      caption.txt            one line per sample folder, sorted: "sample_00000: <caption>"
      flatland.json          how the set is made: {"format", "seed", "samples", "config", "complete"}
      sample_00000/
        cond.mp4  tgt.mp4            context and target clips
        cond_mask.mp4  tgt_mask.mp4  subjects pure red (255, 0, 0) on black
        camera.json          {"cond_cam": {"0": 4x4, ...}, "tgt_cam": {...}}: Unreal camera-to-world, cm
        character.json       the subjects and the scene (schema: `character_record`)
        check.json           exit and entry frames (schema: `check_record`)
        truth.json           Flatland extension, per-frame truth (schema: `truth_record`)

Videos are H.264 in 4:4:4 chroma at crf 0, i.e. lossless up to RGB<->YUV rounding (max error 1/255): with
4:2:0 chroma the 2x2-averaged colour of small two-colour sprites is lost (a colour segmentation of a decoded
yuv420p ground-truth clip overlaps the true subject mask only ~0.7 IoU), which would spoil exact truth.
Masks are read back by thresholding the red channel at 128.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset
from tqdm import tqdm

from ..data.cameras import latent_frame_indices, pose_vectors, relative_poses
from ..data.video import read_frames, write_video
from ..errors import InputError
from ..io_utils import atomic_dir, read_json, write_text_atomic
from ..metrics import segment_subjects
from .config import FlatlandConfig
from .scenery import SCENE_STYLES, background_colours
from .world import FlatlandClip, reentry_mask, render_clip

FORMAT = "flatland-1"
STREAMS = ("cond", "tgt")
MASK_THRESHOLD = 128  # a decoded mask pixel is "subject" where red >= this


def sample_name(index: int, samples: int) -> str:
    return f"sample_{index:0{max(5, len(str(max(samples - 1, 0))))}d}"


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """uint8 ``[T, H, W, 3]`` -> lossless H.264 4:4:4 mp4 (exact colours survive; masks stay exact).

    One x264 thread: its thread start-up costs more than it saves on clips this small.
    """
    write_video(path, frames, fps, crf=0, pix_fmt="yuv444p", options={"preset": "veryfast", "threads": "1"})


# ----------------------------------------------------------------------------------------------
# JSON records


def camera_record(clip: FlatlandClip) -> dict:
    """``{"cond_cam": {"0": 4x4, ...}, "tgt_cam": {...}}``, docs/reference.md §2 format 1 (Unreal, cm)."""
    split = clip.context_frames
    streams = {"cond_cam": clip.camera_to_world[:split], "tgt_cam": clip.camera_to_world[split:]}
    return {key: {str(i): m.tolist() for i, m in enumerate(mats)} for key, mats in streams.items()}


def character_record(clip: FlatlandClip, config: FlatlandConfig) -> dict:
    """The scene and its subjects.

    ``{"format", "seed": [dataset_seed, index], "style", "landmarks": [kinds left to right],
    "background_colours": [[r, g, b], ...] (every colour the scenery can contain),
    "subjects": [{"id": s, "name", "shape", "pattern", "colour_names": [primary, secondary],
    "colours": [[r, g, b] primary, [r, g, b] secondary], "size": [h, w] pixels, "description"}],
    "frame_size": [H, W], "fps", "context_frames", "target_frames", "fov_deg"}``. Subject ``id`` s is the
    index used by check.json and truth.json; subjects use only their two colours.
    """
    return {
        "format": FORMAT,
        "seed": clip.seed,
        "style": clip.style,
        "landmarks": clip.landmarks,
        "background_colours": background_colours(SCENE_STYLES[clip.style]).astype(int).tolist(),
        "subjects": [
            {
                "id": s,
                "name": k.name,
                "shape": k.shape,
                "pattern": k.pattern,
                "colour_names": list(k.colours),
                "colours": k.rgb.astype(int).tolist(),
                "size": list(clip.sprite_sizes[s]),
                "description": k.words,
            }
            for s, k in enumerate(clip.subjects)
        ],
        "frame_size": [config.height, config.width],
        "fps": config.fps,
        "context_frames": config.context_frames,
        "target_frames": config.target_frames,
        "fov_deg": config.fov_deg,
    }


def _stream_frame(frame: int, context_frames: int) -> tuple[str, int]:
    return ("cond", frame) if frame < context_frames else ("tgt", frame - context_frames)


def check_record(clip: FlatlandClip) -> dict:
    """Exit and entry frames of every subject, in HM-World's published schema and as paired events.

    ``{"cond_check": {ACTOR: {CHARACTER: [{"frame": i, "inFrame": bool}, ...]}}, "tgt_check": {...},
    "events": [{"subject": s, "exit_stream": "cond"|"tgt", "exit_frame": i, "entry_stream": ...,
    "entry_frame": j, "out_of_view_frames": n}]}``. The first two are what HM-World's check.json holds
    (`data.hmworld.read_visibility_changes` reads them): every change of a subject's visibility in each clip,
    ACTOR ``subject_{s}`` and CHARACTER its catalogue name; a subject whose visibility never changes has no
    entry. ``events`` pairs each exit with the next entry, sorted by entry. Frames index their stream's video
    from 0. A subject *exits* on the first frame with none of its pixels inside the view and *enters* on the
    first frame with some again (occlusion by another subject does not count as leaving). ``out_of_view_frames``
    counts the frames in between across the cond→tgt boundary. Every Flatland clip has at least one event
    with its entry in "tgt".
    """
    published: dict[str, dict] = {"cond_check": {}, "tgt_check": {}}
    for s, kind in enumerate(clip.subjects):
        seen = clip.in_view[:, s]
        for t in np.flatnonzero(seen[1:] != seen[:-1]) + 1:
            key, frame = ("cond_check", t) if t < clip.context_frames else ("tgt_check", t - clip.context_frames)
            entries = published[key].setdefault(f"subject_{s}", {}).setdefault(kind.name, [])
            entries.append({"frame": int(frame), "inFrame": bool(seen[t])})
    events = []
    for e in clip.events:
        exit_stream, exit_frame = _stream_frame(e["exit"], clip.context_frames)
        entry_stream, entry_frame = _stream_frame(e["entry"], clip.context_frames)
        events.append(
            {
                "subject": e["subject"],
                "exit_stream": exit_stream,
                "exit_frame": exit_frame,
                "entry_stream": entry_stream,
                "entry_frame": entry_frame,
                "out_of_view_frames": e["out_of_view"],
            }
        )
    return {**published, "events": events}


def truth_record(clip: FlatlandClip) -> dict:
    """Per-frame truth (a Flatland extension of the layout).

    ``{"cond": {...}, "tgt": {...}}``, each with per-frame lists: ``yaw_deg`` [n], and per frame one entry per
    subject: ``in_view`` (bool, some pixel inside the frame), ``visible_px`` (pixels where it is the visible
    surface), ``box`` ([x0, y0, x1, y1], end-exclusive, or null), ``centroid`` ([x, y] mean of pixel centres,
    or null), ``azimuth_deg`` (world azimuth of its centre, also while out of view).
    """
    out = {}
    for name, frames in zip(STREAMS, (slice(0, clip.context_frames), slice(clip.context_frames, None)), strict=True):
        boxes, centroids = clip.boxes[frames], clip.centroids[frames]
        out[name] = {
            "yaw_deg": clip.yaw_deg[frames].tolist(),
            "in_view": clip.in_view[frames].tolist(),
            "visible_px": clip.visible_px[frames].tolist(),
            "box": [[b.tolist() if b[0] >= 0 else None for b in row] for row in boxes],
            "centroid": [[c.tolist() if np.isfinite(c).all() else None for c in row] for row in centroids],
            "azimuth_deg": clip.azimuth_deg[frames].tolist(),
        }
    return out


# ----------------------------------------------------------------------------------------------
# Writing


def write_sample(folder: Path, clip: FlatlandClip, config: FlatlandConfig) -> None:
    """Write one sample folder: into a temporary sibling first, renamed into place when complete."""
    with atomic_dir(folder) as tmp:
        split = clip.context_frames
        masks = clip.masks
        for name, frames in (("cond", slice(0, split)), ("tgt", slice(split, None))):
            _write_mp4(tmp / f"{name}.mp4", clip.frames[frames], config.fps)
            _write_mp4(tmp / f"{name}_mask.mp4", masks[frames], config.fps)
        records = {
            "camera.json": camera_record(clip),
            "character.json": character_record(clip, config),
            "check.json": check_record(clip),
            "truth.json": truth_record(clip),
        }
        for name, record in records.items():
            (tmp / name).write_text(json.dumps(record))


MANIFEST = "flatland.json"


def _owned(entry: Path) -> bool:
    """What `write_dataset` writes into its folder: sample folders, caption.txt, flatland.json, and the
    temporary names (``.sample_00003.xyz.tmp``, ``.caption.xyz.tmp.txt``) a stopped run can leave."""
    name = entry.name
    if name in ("caption.txt", MANIFEST):
        return True
    if name.startswith("sample_"):
        return entry.is_dir()
    return name.startswith((".sample_", ".caption.", ".flatland.")) and ".tmp" in name


def write_dataset(
    out: str | os.PathLike,
    config: FlatlandConfig,
    samples: int,
    seed: int,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> list[str]:
    """Render `samples` clips (sample i from (seed, i)) into `out`; returns the sample folder names.

    `out` must be empty or absent, or hold a set that the same command started: flatland.json (how the set is
    made) is written first and every sample folder atomically, so a run that was stopped is resumed by running it
    again (finished samples are skipped). `overwrite` first removes everything an earlier Flatland run wrote there
    (also a stopped one); a folder holding anything else is never touched.
    """
    if samples < 1:
        raise InputError(f"--samples: expected at least 1, got {samples}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a directory")
    manifest = {"format": FORMAT, "seed": seed, "samples": samples, "config": config.to_dict()}
    manifest = json.loads(json.dumps(manifest))  # as read back: tuples become lists
    entries = list(root.iterdir()) if root.is_dir() else []
    if entries:
        previous = None
        if (root / MANIFEST).is_file():
            try:
                previous = json.loads((root / MANIFEST).read_text())
            except (OSError, ValueError):
                previous = None
        foreign = [e.name for e in entries if not _owned(e)]
        if overwrite:
            if foreign and previous is None:
                raise InputError(
                    f"{root}: not a Flatland dataset (no flatland.json; holds {foreign[0]}); refusing to overwrite it"
                )
            for entry in entries:
                if _owned(entry):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        elif previous is None or {k: v for k, v in previous.items() if k != "complete"} != manifest:
            hint = "made with other settings" if previous is not None else "not empty"
            raise InputError(f"{root}: directory is {hint} (pass --overwrite to replace a Flatland set there)")
        else:  # the same set: resume it
            for entry in entries:
                if entry.name.startswith(".") and _owned(entry):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    write_text_atomic(root / MANIFEST, json.dumps({**manifest, "complete": False}, indent=1))
    names, captions = [], []
    for index in tqdm(range(samples), desc="flatland", unit="clip", disable=not progress):
        clip = render_clip(config, seed, index)
        names.append(sample_name(index, samples))
        captions.append(f"{names[-1]}: {clip.caption()}")
        if not (root / names[-1]).is_dir():  # a finished sample of a stopped run is kept
            write_sample(root / names[-1], clip, config)
    write_text_atomic(root / "caption.txt", "\n".join(captions) + "\n")
    write_text_atomic(root / MANIFEST, json.dumps({**manifest, "complete": True}, indent=1))
    return names


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """caption.txt → {sample folder: caption}; raises InputError naming the line that does not parse."""
    captions = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, caption = line.partition(": ")
        if not sep or not name.startswith("sample_"):
            raise InputError(f"{path}: line {number}: expected 'sample_NNNNN: <caption>', got {line[:60]!r}")
        captions[name] = caption
    return captions


def read_clip_source(folder: str | os.PathLike) -> tuple[FlatlandConfig, int, int]:
    """(config, dataset seed, index) that render a written sample again: the set's flatland.json (one folder up)
    and the sample's character.json; InputError naming the file otherwise."""
    folder = Path(folder)
    manifest_path = folder.parent / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path}: file not found (expected a Flatland set of `hydra-wm flatland make`)")
    manifest, character = read_json(manifest_path), read_json(folder / "character.json")
    try:
        config = FlatlandConfig(**manifest["config"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"{manifest_path}: expected a 'config' of Flatland settings ({exc})") from None
    seed = character.get("seed") if isinstance(character, dict) else None
    if not (isinstance(seed, list) and len(seed) == 2 and all(isinstance(v, int) for v in seed)):
        raise InputError(f"{folder / 'character.json'}: 'seed': expected [dataset_seed, index], got {seed!r}")
    return config, seed[0], seed[1]


def read_truth(folder: str | os.PathLike) -> dict:
    """A written sample's target-clip truth, as `metrics.flatland_scores` takes it.

    Returns numpy arrays: ``labels`` ``[Tt, H, W]`` int64 (0 background, s + 1 subject s: the colour
    segmentation of the lossless tgt.mp4 inside tgt_mask.mp4, exact for Flatland), ``subject_colours``
    ``[S, 2, 3]``, ``background_colours`` ``[B, 3]``, ``reentry`` ``[Tt, S]`` bool, ``in_view``
    ``[Tc + Tt, S]`` bool; ``events`` (check.json's list); ``yaw_deg`` ``[Tc + Tt]`` and ``fov_deg``
    (the camera, for `views.revisited_beyond_window`).
    """
    folder = Path(folder)
    character = read_json(folder / "character.json")
    truth = read_json(folder / "truth.json")
    try:
        colours = np.array([s["colours"] for s in character["subjects"]], dtype=np.uint8)
        background = np.array(character["background_colours"], dtype=np.uint8)
        in_view = np.array(truth["cond"]["in_view"] + truth["tgt"]["in_view"], dtype=bool)
        yaw = np.array(truth["cond"]["yaw_deg"] + truth["tgt"]["yaw_deg"], dtype=np.float64)
        fov = float(character["fov_deg"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{folder}: character.json/truth.json lack a Flatland field ({exc})") from None
    frames = read_frames(folder / "tgt.mp4")
    mask = read_frames(folder / "tgt_mask.mp4")[..., 0] >= MASK_THRESHOLD
    video = rearrange(torch.from_numpy(frames).float() / 127.5 - 1.0, "t h w c -> c t h w")
    labels = segment_subjects(video, colours, background).numpy() * mask
    context_frames = len(truth["cond"]["in_view"])
    return {
        "labels": labels,
        "subject_colours": colours,
        "background_colours": background,
        "reentry": reentry_mask(in_view, context_frames),
        "in_view": in_view,
        "events": read_json(folder / "check.json")["events"],
        "yaw_deg": yaw,
        "fov_deg": fov,
    }


# ----------------------------------------------------------------------------------------------
# In memory


class FlatlandDataset(Dataset):
    """Clips rendered on the fly: item i is clip (seed, i), identical to sample i written by `write_dataset`.

    Each item is a dict of tensors (padded to `config.num_subjects[1]` subjects so batches collate):

    * ``context`` ``[3, Tc, H, W]``, ``target`` ``[3, Tt, H, W]`` float32 in [-1, 1];
    * ``context_cameras`` ``[mc, 12]``, ``target_cameras`` ``[mt, 12]`` float32: relative cameras exactly as
      `data.cameras.load_relative_cameras` computes them from the written camera.json, one per latent frame
      (every `latent_stride`-th video frame);
    * ``context_labels`` ``[Tc, H, W]``, ``target_labels`` ``[Tt, H, W]`` int64: 0 background, s + 1 subject;
    * ``reentry`` ``[Tt, S]`` bool: target frames after subject s re-entered the view (`world.reentry_mask`);
    * ``in_view`` ``[T, S]`` bool, ``centroids`` ``[T, S, 2]`` float32 (NaN where not visible), ``boxes``
      ``[T, S, 4]`` int64 (-1 where not visible), over context then target frames;
    * ``subject_colours`` ``[S, 2, 3]`` uint8, ``background_colours`` ``[B, 3]`` uint8 (B is padded with the
      first colour), ``num_subjects``, ``index``; and ``caption`` (str).
    """

    def __init__(self, config: FlatlandConfig, length: int, seed: int = 0, *, latent_stride: int = 4):
        if length < 1:
            raise InputError(f"FlatlandDataset length: expected at least 1, got {length}")
        for frames in (config.context_frames, config.target_frames):
            latent_frame_indices(frames, latent_stride)  # raises if the clip length does not fit the stride
        self.config, self.length, self.seed, self.latent_stride = config, length, seed, latent_stride

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return clip_to_item(render_clip(self.config, self.seed, index), self.config, self.latent_stride, index)


MAX_BACKGROUND_COLOURS = 16


def clip_to_item(clip: FlatlandClip, config: FlatlandConfig, latent_stride: int, index: int = 0) -> dict:
    """A rendered clip → the tensors `FlatlandDataset` returns (see there)."""
    split, slots = clip.context_frames, config.num_subjects[1]
    video = torch.from_numpy(clip.frames).float() / 127.5 - 1.0
    video = rearrange(video, "t h w c -> c t h w")  # (3, T, H, W)
    # Same arithmetic as cameras.load_relative_cameras on the written camera.json.
    context_rel, target_rel = relative_poses(clip.camera_to_world[:split], clip.camera_to_world[split:])
    cams = [
        torch.from_numpy(pose_vectors(rel[latent_frame_indices(len(rel), latent_stride)])).float()
        for rel in (context_rel, target_rel)
    ]
    S = len(clip.subjects)

    def pad(array: np.ndarray, fill) -> np.ndarray:
        shape = (array.shape[0], slots, *array.shape[2:])
        out = np.full(shape, fill, dtype=array.dtype)
        out[:, :S] = array
        return out

    colours = np.zeros((slots, 2, 3), dtype=np.uint8)
    colours[:S] = np.stack([k.rgb for k in clip.subjects])
    background = background_colours(SCENE_STYLES[clip.style]).astype(np.uint8)
    background = np.concatenate([background, np.repeat(background[:1], MAX_BACKGROUND_COLOURS, 0)])
    labels = torch.from_numpy(clip.labels.astype(np.int64))
    return {
        "context": video[:, :split].contiguous(),
        "target": video[:, split:].contiguous(),
        "context_cameras": cams[0],
        "target_cameras": cams[1],
        "context_labels": labels[:split],
        "target_labels": labels[split:],
        "reentry": torch.from_numpy(pad(reentry_mask(clip.in_view, split), False)),
        "in_view": torch.from_numpy(pad(clip.in_view, False)),
        "centroids": torch.from_numpy(pad(clip.centroids, np.nan).astype(np.float32)),
        "boxes": torch.from_numpy(pad(clip.boxes, -1)),
        "subject_colours": torch.from_numpy(colours),
        "background_colours": torch.from_numpy(background[:MAX_BACKGROUND_COLOURS]),
        "num_subjects": S,
        "index": index,
        "caption": clip.caption(),
    }
