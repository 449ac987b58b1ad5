"""mp4 reading (reference geometry and scaling) and writing (H.264, atomic)."""

import warnings

import numpy as np
import pytest
import torch
from conftest import EXAMPLES

import hydra_wm
from hydra_wm.data.video import count_frames, cover_and_crop, read_frames, read_video, write_video
from hydra_wm.errors import InputError


def _pattern(frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: flat 8x8 blocks of distinct colours that H.264 keeps nearly exact."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height) // 8, np.arange(width) // 8, indexing="ij")
    return np.stack([(40 * x + 20 * t) % 256, (50 * y) % 256, (30 * (x + y)) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_example_clips(index):
    path = EXAMPLES / f"{index}.mp4"
    assert count_frames(path) == 77  # condition frames only
    video = hydra_wm.read_video(path, 4, 48, 64)
    assert video.shape == (3, 4, 48, 64) and video.dtype == torch.float32
    assert video.min() >= -1.0 and video.max() <= 1.0
    assert video.max() - video.min() > 0.5  # real content, not a flat frame
    assert not torch.equal(video[:, 0], video[:, 3])  # the camera moves


def test_whole_clip():
    video = read_video(EXAMPLES / "2.mp4", None, 24, 40)
    assert video.shape == (3, 77, 24, 40)


def test_cover_and_centre_crop():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 255  # white centre third
    out = cover_and_crop(frame, 50, 50)  # scale 0.5 → 50x150, crop columns 50..100
    assert out.shape == (50, 50, 3)
    assert out[:, 2:-2].min() == 255  # only the centre third survives
    tall = cover_and_crop(np.zeros((300, 100, 3), np.uint8), 40, 80)  # covers width: 240x80, crop rows
    assert tall.shape == (40, 80, 3)


def test_write_then_read_roundtrip(tmp_path):
    frames = _pattern(6, 32, 48)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=15, crf=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # written atomically, no leftovers
    back = read_frames(path)
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 3
    video = read_video(path, 6)
    expected = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1
    assert (video - expected).abs().mean() < 0.03


def test_write_float_tensor_and_odd_size(tmp_path):
    video = torch.linspace(-1, 1, 3 * 2 * 33 * 45).reshape(3, 2, 33, 45)
    path = tmp_path / "odd.mp4"
    write_video(path, video, fps=8)
    assert read_frames(path).shape == (2, 34, 46, 3)  # padded to even sides for yuv420p
    with pytest.raises(InputError, match="expected float \\[3,T,H,W\\]"):
        write_video(tmp_path / "bad.mp4", torch.zeros(2, 3, 8, 8))
    with pytest.raises(InputError, match="expected uint8 \\[T,H,W,3\\]"):
        write_video(tmp_path / "bad.mp4", np.zeros((2, 8, 8, 3), np.float32))


def test_short_video_is_padded_with_warning(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, _pattern(3, 16, 16), fps=15, crf=0)
    with pytest.warns(UserWarning, match="holds 3 frames, 5 requested"):
        video = read_video(path, 5)
    assert video.shape == (3, 5, 16, 16)
    assert torch.equal(video[:, 4], video[:, 2]) and torch.equal(video[:, 3], video[:, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_frames(path, 5, pad=False).shape[0] == 3


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="nothere.mp4: file not found"):
        read_video(tmp_path / "nothere.mp4", 4)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video")
    with pytest.raises(InputError, match="garbage.mp4: cannot read video"):
        read_video(garbage, 4)
    with pytest.raises(InputError, match="give both height and width"):
        read_video(EXAMPLES / "1.mp4", 1, 48)
