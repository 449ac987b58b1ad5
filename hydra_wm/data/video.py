"""Reading and writing mp4 clips (PyAV).

Reading matches the reference's ``load_condition_video`` (``infer_hydra.py``): the first N frames, each
resized so that it covers the target size (PIL bilinear, new size ``round(side * scale)``), centre-cropped
as ``torchvision.transforms.functional.center_crop`` does, and scaled to [-1, 1]. PIL's bilinear filter
widens its support when downscaling (an antialiased resize), so we call PIL itself rather than
``torch.nn.functional.interpolate`` to keep the reference's pixels.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image

from ..errors import InputError
from ..io_utils import atomic_path


def _open_error(path: str | os.PathLike, exc: Exception) -> InputError:
    return InputError(f"{path}: cannot read video ({type(exc).__name__}: {exc})")


def cover_geometry(src_h: int, src_w: int, height: int, width: int) -> tuple[int, int, int, int]:
    """What `cover_and_crop` does to a ``src_h x src_w`` frame: ``(new_h, new_w, top, left)``, the size it is
    scaled to (covering ``height x width``) and the offsets of the centre crop."""
    if (src_h, src_w) == (height, width):
        return src_h, src_w, 0, 0
    scale = max(width / src_w, height / src_h)
    new_h, new_w = round(src_h * scale), round(src_w * scale)
    # torchvision's centre crop: offsets rounded half-to-even, as Python's round does.
    return new_h, new_w, round((new_h - height) / 2.0), round((new_w - width) / 2.0)


def cover_and_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` → ``[height, width, 3]``: bilinear scale to cover the target, centre crop."""
    src_h, src_w = frame.shape[:2]
    if (src_h, src_w) == (height, width):
        return frame
    new_h, new_w, top, left = cover_geometry(src_h, src_w, height, width)
    if (new_h, new_w) != (src_h, src_w):
        frame = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))
    return frame[top : top + height, left : left + width]


@contextlib.contextmanager
def _video_stream(path: str | os.PathLike):
    """The container and first video stream of `path`, with one-line errors for a missing or unreadable file."""
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            yield container, container.streams.video[0]
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise _open_error(path, exc) from None


def video_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a video's frames, from its stream header (nothing is decoded)."""
    with _video_stream(path) as (_, stream):
        return int(stream.codec_context.height), int(stream.codec_context.width)


def video_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, height, width)`` of a video without decoding it: the size from the stream header, the frames by
    counting its packets (one per frame in H.264 / mp4; far cheaper than `count_frames`)."""
    with _video_stream(path) as (container, stream):
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        return frames, int(stream.codec_context.height), int(stream.codec_context.width)


def read_frames(
    path: str | os.PathLike,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    *,
    pad: bool = True,
) -> np.ndarray:
    """Decode the first `num_frames` frames (all when None) → uint8 ``[T, H, W, 3]`` RGB.

    With `height` and `width`, each frame is resized to cover that size and centre-cropped. A video shorter
    than `num_frames` is padded by repeating its last frame, with a warning (`pad=False`: returned short).
    """
    if (height is None) != (width is None):
        raise InputError(f"{path}: give both height and width, or neither")
    if num_frames is not None and num_frames < 1:
        raise InputError(f"{path}: num_frames must be at least 1, got {num_frames}")
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            for frame in container.decode(video=0):
                image = frame.to_ndarray(format="rgb24")
                frames.append(image if height is None else cover_and_crop(image, height, width))
                if num_frames is not None and len(frames) == num_frames:
                    break
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise _open_error(path, exc) from None
    if not frames:
        raise InputError(f"{path}: no frames could be decoded")
    if num_frames is not None and len(frames) < num_frames and pad:
        warnings.warn(
            f"{path}: holds {len(frames)} frames, {num_frames} requested; repeating the last frame",
            stacklevel=2,
        )
        frames.extend([frames[-1]] * (num_frames - len(frames)))
    return np.stack(frames)


def read_video(
    path: str | os.PathLike,
    num_frames: int | None,
    height: int | None = None,
    width: int | None = None,
) -> torch.Tensor:
    """Read the first `num_frames` frames → float32 ``[3, T, H, W]`` in [-1, 1] (see `read_frames`)."""
    frames = torch.from_numpy(read_frames(path, num_frames, height, width))
    video = rearrange(frames, "t h w c -> c t h w").float()  # (3, T, H, W)
    # The reference: ToTensor (x / 255) then Normalize(0.5, 0.5), kept in that order for identical rounding.
    return (video / 255.0 - 0.5) / 0.5


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames in a video, by decoding it (container metadata is not always present or right)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found")
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as exc:
        raise _open_error(path, exc) from None


def to_uint8_frames(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, T, H, W]`` float in [-1, 1] or uint8 ``[T, H, W, 3]`` → uint8 ``[T, H, W, 3]`` (numpy)."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu()
        if video.dtype == torch.uint8:
            video = video.numpy()
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise InputError(f"video array: expected uint8 [T,H,W,3], got {video.dtype} {list(video.shape)}")
        return video
    if not video.is_floating_point() or video.ndim != 4 or video.shape[0] != 3:
        raise InputError(f"video tensor: expected float [3,T,H,W] in [-1,1], got {video.dtype} {list(video.shape)}")
    # The reference's tensor2video: (x + 1) * 127.5, clipped, truncated to uint8.
    frames = ((video.float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
    return rearrange(frames, "c t h w -> t h w c").numpy()  # (T, H, W, 3)


def write_video(
    path: str | os.PathLike,
    video: torch.Tensor | np.ndarray,
    fps: float = 15,
    *,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> None:
    """Write an H.264 mp4 (libx264) atomically.

    `video`: float ``[3, T, H, W]`` in [-1, 1] or uint8 ``[T, H, W, 3]``. `pix_fmt` "yuv420p" plays
    everywhere but needs even sides (an odd height or width is padded by repeating the last row or column)
    and averages chroma over 2x2 pixels; "yuv444p" with `crf` 0 is lossless up to RGB<->YUV rounding
    (used for Flatland's ground truth and masks, where exact colours matter). `options` are extra
    libx264 options (e.g. {"preset": "veryfast", "threads": "1"}).
    """
    write_video_parts(path, [video], fps, crf=crf, pix_fmt=pix_fmt, options=options)


def write_video_parts(
    path: str | os.PathLike,
    parts: Iterable[torch.Tensor | np.ndarray],
    fps: float = 15,
    *,
    crf: int = 18,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> None:
    """`write_video` for a video given in consecutive parts of the same frame size (e.g. a rollout's chunks, read
    one at a time), so that the whole video is never in memory at once."""
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise InputError(f"{path}: pix_fmt: expected 'yuv420p' or 'yuv444p', got {pix_fmt!r}")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = None
            for part in parts:
                frames = to_uint8_frames(part)
                pad_h, pad_w = (frames.shape[1] % 2, frames.shape[2] % 2) if pix_fmt == "yuv420p" else (0, 0)
                if pad_h or pad_w:
                    frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                if stream is None and len(frames):
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                    stream.height, stream.width = frames.shape[1:3]
                    stream.pix_fmt = pix_fmt
                    stream.options = {"crf": str(crf), **(options or {})}
                elif stream is not None and frames.shape[1:3] != (stream.height, stream.width):
                    raise InputError(
                        f"{path}: a part of {frames.shape[1:3]} frames, the video is {stream.height}x{stream.width}"
                    )
                for image in frames:
                    container.mux(
                        stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
                    )
            if stream is None:
                raise InputError(f"{path}: no frames to write")
            container.mux(stream.encode())  # flush delayed frames
