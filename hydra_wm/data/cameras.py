"""Camera files → relative camera encodings, one 12-vector per latent frame (docs/reference.md §2).

Formats read (detected from the top-level keys):

1. ``{"cond_cam": {"0".."n-1": 4x4}, "tgt_cam": {...}}``: Unreal Engine (UE) camera-to-world matrices in
   column-vector form (translation in the last column), centimetres. The authors' examples use this.
2. ``{"context_camera": X, "video_camera": Y}``: either already-relative ``[m, 12]`` vectors (used as they
   are) or ``[n, 4, 4]`` UE matrices as in format 1.
3. The raw UE dump: keys ``"0".."148"``, each a string of four bracketed groups of four numbers (an
   ``FMatrix`` in row-vector form, so it is transposed). See `raw_ue_streams` for its frame bookkeeping.

HM-World ``camera.json`` is format 1, 77 + 77 matrices matching ``cond.mp4`` and ``tgt.mp4`` (as third-party
loaders run over the released dataset show; the published dataset documents it only as "camera pose
information"); it is read with the same detection, so the other formats work there too.

Checked on reading (errors name the file and frame): each matrix rigid (`RIGID_TOL`) and finite, each camera within
`MAX_POSITION_M` of the origin, every relative camera finite after conversion.

Conversion (reference ``infer_hydra.py``): reorder the columns of a UE matrix to (right, up, forward,
position), negate the second column (up → down), divide the translation by 100 (cm → m); take each pose
relative to the first *target* frame, ``inverse(T_ref) @ T_m``; keep every 4th frame; flatten the top 3×4
block row-major.

Numerics: the released model was trained on encodings computed in float32 with an LU inverse
(``torch.inverse``) and float32 matrix products without fused multiply-adds. HM-World positions lie ~200 m
from the UE origin, where one float32 step is ~1.5e-5 m, so exact float64 maths differs from those encodings
by up to ~3e-5 m in the translations. ``numerics="reference"`` (the default) reproduces the reference's
float32 arithmetic, which the parity fixture needs (max error 1.2e-7 on the examples);
``numerics="float64"`` does exact maths with the closed-form rigid inverse, for users who prefer it over
bit-parity.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import InputError
from ..io_utils import read_json
from .video import cover_geometry

Numerics = Literal["reference", "float64"]
Stream = Literal["context", "target"]

# Orthonormality tolerance for rotation blocks: UE writes float32 matrices (errors ~1e-6); anything
# beyond this is a scaled, sheared or corrupted matrix, which the model has never seen.
RIGID_TOL = 1e-3

# The reference reads exactly 149 raw UE frames (keys "0".."148").
RAW_UE_FRAMES = 149

MAX_POSITION_M = 1.0e5
"""Largest camera distance from the world origin accepted, in metres (100 km; UE matrices hold centimetres,
relative vectors metres). Beyond it float32, the reference's arithmetic, resolves a position to worse than 1 cm,
and far beyond it (1e300 cm) the conversion overflows to infinity: such a file is an error naming the frame."""

UNREAL_DEFAULT_HFOV_DEG = 90.0
"""Horizontal field of view assumed for HM-World and Unreal camera files, which ship no intrinsics (Unreal's
default camera; what third-party HM-World loaders assume). See `intrinsics`."""

# UE axes are (forward X, right Y, up Z); the camera convention is (right, down, forward).
_UE_TO_CAMERA_COLUMNS = [1, 2, 0, 3]
_CM_PER_M = 100.0

_BRACKET_GROUP = re.compile(r"\[([^\[\]]*)\]")


# ----------------------------------------------------------------------------------------------
# Reading and validating


def _as_matrix(value: Any, where: str) -> np.ndarray:
    """A JSON value → float64 4x4, or an error naming `where` and what is wrong with its shape."""
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a 4x4 matrix (list of 4 rows), got {type(value).__name__}")
    if len(value) != 4:
        raise InputError(f"{where}: expected a 4x4 matrix, got {len(value)} rows")
    for r, row in enumerate(value):
        if not isinstance(row, list) or len(row) != 4:
            got = f"{len(row)} numbers" if isinstance(row, list) else type(row).__name__
            raise InputError(f"{where}: expected a 4x4 matrix, row {r} has {got}")
        for x in row:
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise InputError(f"{where}: expected numbers, got {json.dumps(x)} in row {r}")
    return np.asarray(value, dtype=np.float64)


def check_rigid(matrix: np.ndarray, where: str, *, tol: float = RIGID_TOL, metres_per_unit: float = 0.01) -> None:
    """Raise unless `matrix` (4x4, column-vector form) is a finite rigid transform: orthonormal rotation
    with determinant +1 (within `tol`), a last row of (0, 0, 0, 1) and a position within `MAX_POSITION_M` of
    the origin (`metres_per_unit`: 0.01 for UE matrices in centimetres, 1 for relative vectors in metres)."""
    if not np.isfinite(matrix).all():
        raise InputError(f"{where}: matrix contains NaN or infinity")
    distance = float(np.abs(matrix[:3, 3]).max()) * metres_per_unit
    if distance > MAX_POSITION_M:
        raise InputError(
            f"{where}: camera position {distance:.3g} m from the origin; at most {MAX_POSITION_M:g} m is accepted "
            f"(MAX_POSITION_M)"
        )
    if np.abs(matrix[3] - (0.0, 0.0, 0.0, 1.0)).max() > tol:
        raise InputError(f"{where}: last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
    rotation = matrix[:3, :3]
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if error > tol or np.linalg.det(rotation) < 0:
        raise InputError(
            f"{where}: rotation block is not a rigid rotation (|R^T R - I| = {error:.2g}, "
            f"det = {np.linalg.det(rotation):.4g}; tolerance {tol:g})"
        )


def _frames_dict(frames: Any, where: str) -> list[Any]:
    """``{"0": m0, "1": m1, ...}`` → ``[m0, m1, ...]``, requiring the keys to be exactly 0..n-1."""
    if not isinstance(frames, Mapping) or not frames:
        raise InputError(f'{where}: expected an object of frames {{"0": 4x4, "1": 4x4, ...}}')
    indices = {}
    for key in frames:
        if not key.isdigit():
            raise InputError(f'{where}/"{key}": frame keys must be integers "0", "1", ...')
        indices[int(key)] = key
    count = max(indices) + 1
    missing = [i for i in range(count) if i not in indices]
    if missing:
        raise InputError(f'{where}/"{missing[0]}": missing (frames must be numbered 0..{count - 1})')
    return [frames[indices[i]] for i in range(count)]


def parse_ue_matrix_string(text: Any, where: str) -> np.ndarray:
    """One raw UE dump entry → float64 4x4 in column-vector form.

    The string holds four bracketed groups of four numbers, the rows of an ``FMatrix``, which UE applies
    to row vectors (translation in the last row); transposing gives the column-vector form.
    """
    if not isinstance(text, str):
        raise InputError(f"{where}: expected a string of four bracketed groups, got {type(text).__name__}")
    groups = _BRACKET_GROUP.findall(text)
    if len(groups) != 4 or _BRACKET_GROUP.sub("", text).strip():
        raise InputError(f"{where}: expected four bracketed groups of four numbers, got {text.strip()[:80]!r}")
    rows = []
    for g, group in enumerate(groups):
        fields = group.split()
        if len(fields) != 4:
            raise InputError(f"{where}: group {g} must hold four numbers, got {len(fields)}")
        try:
            rows.append([float(x) for x in fields])
        except ValueError:
            raise InputError(f"{where}: group {g} holds a non-number: [{group.strip()}]") from None
    return np.asarray(rows, dtype=np.float64).T


def raw_ue_streams(
    data: Mapping[str, Any], where: str, *, num_frames: int = RAW_UE_FRAMES, tol: float = RIGID_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """The raw UE dump → (context, target) UE matrices ``[h+2, 4, 4]``, with the reference's bookkeeping.

    Keys ``"0".."num_frames-1"``; a missing key repeats the previous matrix (the dump skips frames). Frame 0
    is replaced by frame 1 and the last matrix is appended (149 → 150); the first half is the context, the
    second the target (75/75), and each is padded by repeating its first and last matrix (→ 77 + 77).
    """
    parsed: dict[int, np.ndarray] = {}
    for key, value in data.items():
        if not key.isdigit():
            raise InputError(f'{where}: key "{key}": a raw UE dump has only frame keys "0".."{num_frames - 1}"')
        index = int(key)
        if index >= num_frames:
            raise InputError(f'{where}: key "{key}": beyond the {num_frames} frames of a raw UE dump')
        matrix = parse_ue_matrix_string(value, f'{where}: key "{key}"')
        check_rigid(matrix, f'{where}: key "{key}"', tol=tol)
        parsed[index] = matrix
    if 1 not in parsed and 0 not in parsed:
        raise InputError(f'{where}: key "1": missing, and no earlier frame to repeat')
    frames: list[np.ndarray] = []
    for i in range(num_frames):
        # Frame 0 may be absent: it is replaced by frame 1 below (frame 1 then repeats frame 0 if absent).
        frames.append(parsed[i] if i in parsed else (frames[-1] if frames else parsed[1]))
    frames[0] = frames[1]  # the reference drops the first dumped frame
    frames.append(frames[-1])  # 149 → 150
    if len(frames) % 2:
        raise InputError(f"{where}: {num_frames} raw frames + 1 do not split into two equal halves")
    half = len(frames) // 2
    context = [frames[0], *frames[:half], frames[half - 1]]
    target = [frames[half], *frames[half:], frames[-1]]
    return np.stack(context), np.stack(target)


def _matrix_stream(frames: list[Any], where: str, tol: float) -> np.ndarray:
    mats = []
    for i, value in enumerate(frames):
        matrix = _as_matrix(value, f'{where}/"{i}"')
        check_rigid(matrix, f'{where}/"{i}"', tol=tol)
        mats.append(matrix)
    return np.stack(mats)


def _array_stream(value: Any, where: str, tol: float) -> np.ndarray:
    """``context_camera``/``video_camera``: ``[m, 12]`` relative vectors or ``[n, 4, 4]`` UE matrices."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(f"{where}: expected an [m,12] or [n,4,4] array of numbers (ragged or non-numeric)") from None
    if array.ndim == 3 and array.shape[1:] == (4, 4) and len(array):
        for i, matrix in enumerate(array):
            check_rigid(matrix, f"{where}[{i}]", tol=tol)
        return array
    if array.ndim == 2 and array.shape[1] == 12 and len(array):
        if not np.isfinite(array).all():
            raise InputError(f"{where}: vectors contain NaN or infinity")
        for i, vector in enumerate(array):
            check_rigid(np.vstack([vector.reshape(3, 4), (0, 0, 0, 1)]), f"{where}[{i}]", tol=tol, metres_per_unit=1)
        return array
    raise InputError(f"{where}: expected an [m,12] or [n,4,4] array, got shape {list(array.shape)}")


def read_camera_streams(
    path: str | os.PathLike, *, raw_frames: int = RAW_UE_FRAMES, tol: float = RIGID_TOL, equal_lengths: bool = True
) -> tuple[np.ndarray, np.ndarray, str]:
    """Read and validate a camera file → ``(context, target, format)``.

    ``context``/``target`` are float64 UE camera-to-world matrices ``[n, 4, 4]`` (cm), except for
    ``format == "relative"`` where they are already-relative ``[m, 12]`` vectors. ``format`` is one of
    ``"cond_tgt"``, ``"context_video"``, ``"relative"``, ``"raw_ue"``. With ``equal_lengths=False`` the two
    streams may differ in length (a rollout's target runs past the context's length).
    """
    return _camera_streams(read_json(path), path, raw_frames=raw_frames, tol=tol, equal_lengths=equal_lengths)


def _camera_streams(
    data: Any, path: str | os.PathLike, *, raw_frames: int, tol: float, equal_lengths: bool
) -> tuple[np.ndarray, np.ndarray, str]:
    if not isinstance(data, Mapping):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    pairs = (("cond_cam", "tgt_cam"), ("context_camera", "video_camera"))
    for context_key, target_key in pairs:
        if context_key in data or target_key in data:
            for key in (context_key, target_key):
                if key not in data:
                    raise InputError(
                        f'{path}: key "{key}": missing (a camera file with "{context_key}" '
                        f'needs both "{context_key}" and "{target_key}")'
                    )
            if context_key == "cond_cam":
                context = _matrix_stream(
                    _frames_dict(data[context_key], f'{path}: key "cond_cam"'), f'{path}: key "cond_cam"', tol
                )
                target = _matrix_stream(
                    _frames_dict(data[target_key], f'{path}: key "tgt_cam"'), f'{path}: key "tgt_cam"', tol
                )
                fmt = "cond_tgt"
            else:
                context = _array_stream(data[context_key], f'{path}: key "{context_key}"', tol)
                target = _array_stream(data[target_key], f'{path}: key "{target_key}"', tol)
                if context.ndim != target.ndim:
                    raise InputError(
                        f'{path}: keys "{context_key}"/"{target_key}": one holds vectors, the other matrices'
                    )
                fmt = "relative" if context.ndim == 2 else "context_video"
            if equal_lengths and len(context) != len(target):
                raise InputError(
                    f'{path}: keys "{context_key}"/"{target_key}": unequal stream lengths '
                    f"({len(context)} context vs {len(target)} target frames)"
                )
            return context, target, fmt
    if data and all(isinstance(k, str) and k.isdigit() for k in data):
        context, target = raw_ue_streams(data, str(path), num_frames=raw_frames, tol=tol)
        return context, target, "raw_ue"
    keys = ", ".join(f'"{k}"' for k in list(data)[:4])
    raise InputError(
        f'{path}: unknown camera format (keys {keys}); expected "cond_cam"/"tgt_cam", '
        '"context_camera"/"video_camera" or raw UE frame keys "0".."148"'
    )


# ----------------------------------------------------------------------------------------------
# Conversion


def ue_to_camera_to_world(ue: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """UE camera-to-world ``[..., 4, 4]`` (cm) → columns (right, down, forward, position), metres.

    Rows stay UE world axes (X forward, Y right, Z up). Works in the input's dtype, so float32 input
    reproduces the reference's rounding (``_apply_coordinate_transform``).
    """
    c2w = ue[..., _UE_TO_CAMERA_COLUMNS]
    c2w = c2w.clone() if isinstance(c2w, torch.Tensor) else c2w.copy()
    c2w[..., :3, 1] *= -1.0  # up → down: image rows grow downwards
    c2w[..., :3, 3] /= _CM_PER_M
    return c2w


def rigid_inverse(c2w: np.ndarray) -> np.ndarray:
    """Closed-form inverse of orthogonal-rotation transforms ``[..., 4, 4]``: ``[R^T | -R^T t]``."""
    rotation_t = np.swapaxes(c2w[..., :3, :3], -1, -2)
    inverse = np.zeros_like(c2w)
    inverse[..., :3, :3] = rotation_t
    inverse[..., :3, 3] = -(rotation_t @ c2w[..., :3, 3:4])[..., 0]
    inverse[..., 3, 3] = 1.0
    return inverse


def relative_poses(
    context_ue: np.ndarray,
    target_ue: np.ndarray,
    *,
    reference: tuple[Stream, int] = ("target", 0),
    numerics: Numerics = "reference",
) -> tuple[np.ndarray, np.ndarray]:
    """UE matrices ``[n, 4, 4]`` of both streams → converted poses relative to one reference frame.

    ``reference = (stream, frame)`` picks the frame whose camera becomes the origin (the reference uses the
    first target frame for both streams). Returns float32 (``"reference"``) or float64 (``"float64"``).
    """
    stream, frame = reference
    if stream not in ("context", "target"):
        raise InputError(f'reference stream must be "context" or "target", got {stream!r}')
    ref_stream = target_ue if stream == "target" else context_ue
    if not -len(ref_stream) <= frame < len(ref_stream):
        raise InputError(f"reference frame {frame} is outside the {len(ref_stream)} {stream} frames")
    if numerics == "reference":
        # The reference's arithmetic: float32 tensors, LU inverse, one unfused 4x4 product per frame.
        context = ue_to_camera_to_world(torch.as_tensor(context_ue, dtype=torch.float32))
        target = ue_to_camera_to_world(torch.as_tensor(target_ue, dtype=torch.float32))
        world_to_ref = torch.inverse((target if stream == "target" else context)[frame])
        rel = [_product_without_fma(world_to_ref, poses).numpy() for poses in (context, target)]
        return rel[0], rel[1]
    if numerics == "float64":
        context = ue_to_camera_to_world(np.asarray(context_ue, dtype=np.float64))
        target = ue_to_camera_to_world(np.asarray(target_ue, dtype=np.float64))
        world_to_ref = rigid_inverse((target if stream == "target" else context)[frame])
        return world_to_ref @ context, world_to_ref @ target
    raise InputError(f'numerics must be "reference" or "float64", got {numerics!r}')


def _product_without_fma(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left [4, 4] @ right [n, 4, 4]`` in float32 with one rounding per multiply and per add, k in order.

    Written out by hand because ``@`` is not reproducible across CPUs here: on AVX-512 machines the BLAS
    kernel fuses multiply-adds, which moves the ~200 m translations by one or two float32 steps (3e-5 m)
    away from the reference encodings. Separate elementwise products and sums round the same way on every
    machine, and match the parity fixture (cam2.json: bit for bit; cam1.json: within 1.2e-7).
    """
    terms = left[None, :, :, None] * right[:, None, :, :]  # [n, i, k, j]
    out = terms[:, :, 0]
    for k in range(1, left.shape[-1]):
        out = out + terms[:, :, k]
    return out


def latent_frame_indices(num_frames: int, latent_stride: int = 4) -> list[int]:
    """Video frames that carry one latent frame each: 0, s, 2s, …, for ``num_frames = s·k + 1``.

    The Wan VAE encodes the first frame alone and each further `latent_stride` frames into one latent.
    """
    if latent_stride < 1 or num_frames < 1 or (num_frames - 1) % latent_stride:
        raise InputError(
            f"{num_frames} camera frames do not match the latent stride {latent_stride}: "
            f"expected {latent_stride}k+1 frames (e.g. {latent_stride * 19 + 1})"
        )
    return list(range(0, num_frames, latent_stride))


def pose_vectors(poses: np.ndarray) -> np.ndarray:
    """``[n, 4, 4]`` → ``[n, 12]``: the top 3×4 block ``[R | t]``, row-major."""
    return poses[:, :3, :].reshape(len(poses), 12)


def load_relative_cameras(
    path: str | os.PathLike,
    *,
    latent_stride: int = 4,
    reference: tuple[Stream, int] = ("target", 0),
    numerics: Numerics = "reference",
    raw_frames: int = RAW_UE_FRAMES,
    tol: float = RIGID_TOL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a camera file (any supported format) → ``(context [m, 12], target [m, 12])`` float32 tensors.

    One vector per latent frame (``m = (n - 1) / latent_stride + 1`` for ``n`` video frames): the pose of
    that frame relative to ``reference`` (default: first target frame), top 3×4 block row-major.
    Already-relative files (``context_camera``/``video_camera`` as ``[m, 12]``) are returned as they are.
    Raises `InputError` naming the file and key for any malformed input.
    """
    context, target, fmt = read_camera_streams(path, raw_frames=raw_frames, tol=tol)
    if fmt == "relative":
        vectors = [torch.as_tensor(v, dtype=torch.float32) for v in (context, target)]
        for stream, stream_vectors in zip(("context", "target"), vectors, strict=True):
            check_finite_vectors(stream_vectors, f"{path}: {stream}")
        return vectors[0], vectors[1]
    try:
        indices = latent_frame_indices(len(context), latent_stride)
        context_rel, target_rel = relative_poses(context, target, reference=reference, numerics=numerics)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    vectors = [torch.as_tensor(pose_vectors(rel[indices]), dtype=torch.float32) for rel in (context_rel, target_rel)]
    for stream, stream_vectors in zip(("context", "target"), vectors, strict=True):
        check_finite_vectors(stream_vectors, f"{path}: {stream}", frames=indices)
    return vectors[0], vectors[1]


def check_finite_vectors(vectors: torch.Tensor | np.ndarray, where: str, *, frames: list[int] | None = None) -> None:
    """Raise, naming the first bad frame (video frame `frames[i]` of vector i), unless every value is finite."""
    finite = np.isfinite(np.asarray(vectors, dtype=np.float64)).all(axis=-1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        frame = f"frame {frames[i]}" if frames is not None else f"vector {i}"
        raise InputError(f"{where} {frame}: relative camera is not finite after conversion (NaN or infinity)")


def load_camera_poses(
    path: str | os.PathLike, *, raw_frames: int = RAW_UE_FRAMES, tol: float = RIGID_TOL
) -> tuple[np.ndarray, np.ndarray, str]:
    """Absolute converted poses for plotting → ``(context [n, 4, 4], target [n, 4, 4], frame)`` float64.

    For matrix formats: camera-to-world (columns right, down, forward, position in m) in UE world axes,
    every video frame, ``frame == "world"``. For already-relative vector files there is no world frame:
    the poses are relative to the file's reference camera, ``frame == "reference"``. The two streams may differ in
    length (a rollout's camera path, a long Flatland clip).
    """
    context, target, fmt = read_camera_streams(path, raw_frames=raw_frames, tol=tol, equal_lengths=False)
    if fmt == "relative":
        bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), (len(context), 1, 4))
        as_poses = [np.concatenate([v.reshape(-1, 3, 4), bottom[: len(v)]], axis=1) for v in (context, target)]
        return as_poses[0], as_poses[1], "reference"
    return ue_to_camera_to_world(context), ue_to_camera_to_world(target), "world"


def intrinsics(
    height: int,
    width: int,
    *,
    hfov_deg: float = UNREAL_DEFAULT_HFOV_DEG,
    source_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pinhole intrinsics ``K`` (float64 3x3, pixels) of frames of ``height x width``, for a camera whose
    horizontal field of view is `hfov_deg` (default: Unreal's 90°; HM-World ships no intrinsics).

    Square pixels, principal point at the image centre (pixel i spans [i, i + 1)). With `source_size`
    ``(H0, W0)`` the frames were read from a video of that size by `video.cover_and_crop` (scaled to cover, then
    centre-cropped, as every reader here does): the field of view is the source's, and ``K`` follows the scale
    and the crop, so a crop narrows the view as it does the picture.
    """
    if not 0.0 < hfov_deg < 180.0:
        raise InputError(f"field of view: expected 0 < hfov_deg < 180, got {hfov_deg}")
    src_h, src_w = source_size or (height, width)
    focal = (src_w / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    new_h, new_w, top, left = cover_geometry(src_h, src_w, height, width)
    sx, sy = new_w / src_w, new_h / src_h
    return np.array(
        [[focal * sx, 0.0, src_w / 2.0 * sx - left], [0.0, focal * sy, src_h / 2.0 * sy - top], [0.0, 0.0, 1.0]]
    )


# ----------------------------------------------------------------------------------------------
# Absolute poses, re-referenced per chunk (rollouts: docs/rollout.md)


@dataclass
class PoseStreams:
    """A camera file's poses as absolute float32 camera-to-world matrices (columns right, down, forward, position;
    metres), which a rollout re-references to each chunk's first frame (`relative_vectors`)."""

    context: torch.Tensor | None
    """``[n, 4, 4]`` poses of the condition clip; None for a plain list of poses (the caller splits it)."""
    target: torch.Tensor
    """``[n, 4, 4]`` poses of the frames to generate, of any length."""
    per_latent: bool
    """True: one pose per latent frame (already-relative ``[m, 12]`` files); False: one per video frame."""
    format: str
    """``"cond_tgt"``, ``"context_video"``, ``"relative"``, ``"raw_ue"`` (`read_camera_streams`) or ``"list"``."""


def camera_poses(ue: np.ndarray) -> torch.Tensor:
    """UE camera-to-world matrices ``[n, 4, 4]`` (cm) → float32 poses ``[n, 4, 4]`` (columns right, down, forward,
    position; m), rounded as the reference converts them (`relative_poses` with ``numerics="reference"``)."""
    return ue_to_camera_to_world(torch.as_tensor(np.asarray(ue), dtype=torch.float32))


def vector_poses(vectors: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Relative camera vectors ``[m, 12]`` → float32 poses ``[m, 4, 4]`` in the frame of their reference camera."""
    vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(len(vectors), 1, 4)
    return torch.cat([vectors.reshape(-1, 3, 4), bottom], dim=1)


def relative_vectors(poses: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Poses ``[n, 4, 4]`` → ``[n, 12]`` float32 camera vectors relative to the pose `reference` ``[4, 4]``:
    ``inverse(reference) @ pose``, top 3×4 row-major, with the reference's float32 arithmetic (LU inverse, unfused
    products, as `relative_poses`). For poses from `camera_poses` and the first target frame as `reference`, these
    are bit for bit the vectors `load_relative_cameras` returns, so a one-chunk rollout sees `generate`'s cameras."""
    rel = _product_without_fma(torch.inverse(reference.float()), poses.float())  # (n, 4, 4)
    return rel[:, :3, :].reshape(len(poses), 12)


def load_pose_streams(path: str | os.PathLike, *, tol: float = RIGID_TOL) -> PoseStreams:
    """Read a rollout's camera file: any format `read_camera_streams` reads, its two streams of any lengths (the
    authors' ``cond_cam``/``tgt_cam`` generalised to N target frames), or a plain JSON list of UE 4×4
    camera-to-world matrices (cm), the condition clip's first. Each matrix is checked as `check_rigid` does (NaN,
    infinity, non-rigid: one error naming the file and frame)."""
    data = read_json(path)
    if isinstance(data, list):
        if not data:
            raise InputError(f"{path}: an empty list; expected 4x4 camera-to-world matrices, one per frame")
        return PoseStreams(None, camera_poses(_matrix_stream(data, f"{path}: pose", tol)), False, "list")
    context, target, fmt = _camera_streams(data, path, raw_frames=RAW_UE_FRAMES, tol=tol, equal_lengths=False)
    if fmt == "relative":
        return PoseStreams(vector_poses(context), vector_poses(target), True, fmt)
    return PoseStreams(camera_poses(context), camera_poses(target), False, fmt)


# ------------------------------------------------------------------------------------------ closest cameras
# The closest-camera rule: the closest-camera baseline copies by it, the Flatland stale-subject metrics pick the
# aligned view by it.

DEG_PER_METRE = 10.0


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees of the relative rotation between ``[..., 4, 4]`` (or 3x3) poses, broadcasting."""
    relative = np.swapaxes(a[..., :3, :3], -1, -2) @ b[..., :3, :3]
    cosine = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def pose_distance(a: np.ndarray, b: np.ndarray, deg_per_metre: float = DEG_PER_METRE) -> np.ndarray:
    """``angle(R_a^T R_b)`` (degrees) + ``deg_per_metre`` x translation distance (metres), broadcasting."""
    return rotation_angle_deg(a, b) + deg_per_metre * np.linalg.norm(a[..., :3, 3] - b[..., :3, 3], axis=-1)


def frame_poses(poses: np.ndarray, frames: int) -> np.ndarray:
    """One pose per video frame: ``poses[round(i * (n - 1) / (frames - 1))]``."""
    if len(poses) == frames:
        return poses
    index = np.round(np.arange(frames) * (len(poses) - 1) / max(frames - 1, 1)).astype(int)
    return poses[index]


def closest_context_frames(
    context_poses: np.ndarray, target_poses: np.ndarray, deg_per_metre: float = DEG_PER_METRE
) -> np.ndarray:
    """For each target pose ``[Tt, 4, 4]``, the index of the closest context pose ``[Tc, 4, 4]`` (ties: the
    latest) → ``[Tt]`` int."""
    distance = pose_distance(context_poses[None, :], target_poses[:, None], deg_per_metre)  # (Tt, Tc)
    reversed_best = distance[:, ::-1].argmin(axis=1)  # argmin takes the first minimum: reverse for the latest
    return len(context_poses) - 1 - reversed_best


def closest_context_frames_of(
    path: str | os.PathLike, context_frames: int, target_frames: int, deg_per_metre: float = DEG_PER_METRE
) -> np.ndarray:
    """`closest_context_frames` from a camera.json, per video frame (its poses spread over the ``context_frames``
    and ``target_frames`` by `frame_poses`) → ``[target_frames]`` int."""
    context_poses, target_poses, _ = load_camera_poses(path)
    return closest_context_frames(
        frame_poses(context_poses, context_frames), frame_poses(target_poses, target_frames), deg_per_metre
    )
