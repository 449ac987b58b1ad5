"""Metrics on cases with known answers: identical videos, uniform offsets, shifted and missing subjects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hydra_wm.errors import InputError
from hydra_wm.flatland import FlatlandDataset, flatland_config
from hydra_wm.metrics import (
    background_psnr,
    centroids,
    colour_histogram,
    flatland_scores,
    identity_distance,
    mask_iou,
    nan_mean,
    position_error,
    psnr,
    segment_subjects,
    ssim,
)

MAGENTA, YELLOW, BLUE = (220, 40, 200), (250, 215, 20), (30, 80, 255)
GREY = (128, 128, 128)


def _video_with_square(colours, x, y, side=4, size=(3, 16, 20), background=GREY):
    """[3, T, H, W] in [-1, 1]: a grey frame with a `side`-pixel square whose left/top corner is (x, y).

    The square's left half takes colours[0], right half colours[1]; x or y None leaves it out.
    """
    T, H, W = size
    rgb = np.empty((T, H, W, 3), dtype=np.float64)
    rgb[:] = background
    if x is not None:
        rgb[:, y : y + side, x : x + side // 2] = colours[0]
        rgb[:, y : y + side, x + side // 2 : x + side] = colours[1]
    return torch.from_numpy(rgb).permute(3, 0, 1, 2) / 127.5 - 1.0


def _naive_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """SSIM of two [H, W] images by looping over every valid 11x11 window (independent of the module)."""
    taps = np.array([math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)])
    weights = np.outer(taps, taps) / np.outer(taps, taps).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            ma, mb = (weights * a).sum(), (weights * b).sum()
            va, vb = (weights * (a - ma) ** 2).sum(), (weights * (b - mb) ** 2).sum()
            cov = (weights * (a - ma) * (b - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_nan_mean_skips_undefined_entries():
    assert nan_mean([1.0, math.nan, 3.0]) == 2.0
    assert nan_mean(torch.tensor([1.0, 5.0, math.nan]), where=torch.tensor([False, True, True])) == 5.0
    assert math.isnan(nan_mean(np.array([math.nan]))) and math.isnan(nan_mean([]))


def test_identical_videos_score_perfectly():
    video = torch.rand(3, 4, 16, 16) * 2 - 1
    assert torch.isinf(psnr(video, video)).all()
    assert torch.equal(psnr(video, video, max_db=100.0), torch.full((4,), 100.0, dtype=torch.float64))
    assert torch.allclose(ssim(video, video), torch.ones(4, dtype=torch.float64))


def test_uniform_offset_has_the_analytic_psnr_and_ssim():
    base = torch.rand(3, 2, 16, 16) * 1.6 - 0.8
    offset = 0.1
    # MSE = offset^2 on [-1, 1], i.e. (offset / 2)^2 on [0, 1]: PSNR = 10 log10(4 / offset^2).
    expected = torch.full((2,), 10 * math.log10(4.0 / offset**2), dtype=torch.float64)
    assert torch.allclose(psnr(base + offset, base), expected)
    # Constant images a and b (on [0, 1]): only the luminance term is left, (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.2, 0.5, 0.01**2
    flat = lambda v: torch.full((3, 1, 12, 12), v, dtype=torch.float64)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(flat(a), flat(b), value_range=(0, 1)).item() == pytest.approx(expected, abs=1e-12)
    assert ssim(flat(2 * a - 1), flat(2 * b - 1)).item() == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_a_window_by_window_computation_and_is_range_invariant():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 14, 17))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    expected = [np.mean([_naive_ssim(x[c, t], y[c, t], 1.0) for c in range(3)]) for t in range(2)]
    assert np.allclose(ssim(x, y, value_range=(0, 1)).numpy(), expected, atol=1e-10)
    # The same frames in [-1, 1] (the default) or in [0, 255] give the same numbers.
    assert np.allclose(ssim(2 * x - 1, 2 * y - 1).numpy(), expected, atol=1e-10)
    assert np.allclose(ssim(255 * x, 255 * y, value_range=(0, 255)).numpy(), expected, atol=1e-10)
    mse = ((x - y) ** 2).mean(axis=(0, 2, 3))
    assert np.allclose(psnr(255 * x, 255 * y, value_range=(0, 255)).numpy(), 10 * np.log10(1.0 / mse))
    with pytest.raises(InputError, match="window"):
        ssim(x[:, :, :8], y[:, :, :8])


def test_shifted_subject_gives_the_shift_as_position_error():
    colours = torch.tensor([[MAGENTA, YELLOW]])
    truth = _video_with_square((MAGENTA, YELLOW), 4, 5)
    shifted = _video_with_square((MAGENTA, YELLOW), 7, 9)  # moved by (3, 4): 5 pixels
    true_mask = segment_subjects(truth, colours) == 1
    found = segment_subjects(shifted, colours) == 1
    assert true_mask.sum(dim=(1, 2)).tolist() == [16, 16, 16]
    assert torch.allclose(position_error(found, true_mask), torch.full((3,), 5.0, dtype=torch.float64))
    assert torch.allclose(centroids(true_mask)[0], torch.tensor([6.0, 7.0], dtype=torch.float64))
    # Overlap of two 4x4 squares offset by (3, 4) is empty; by (1, 0) it is 3x4 = 12 of a 20-pixel union.
    assert mask_iou(found, true_mask).tolist() == [0.0] * 3
    nudged = segment_subjects(_video_with_square((MAGENTA, YELLOW), 5, 5), colours) == 1
    assert mask_iou(nudged, true_mask)[0].item() == pytest.approx(12 / 20)
    # Same subject, same look: identity distance 0 despite the move.
    assert torch.allclose(identity_distance(shifted, truth, found, true_mask), torch.zeros(3, dtype=torch.float64))


def test_missing_subject_has_presence_zero():
    colours = np.array([[MAGENTA, YELLOW]])
    truth = _video_with_square((MAGENTA, YELLOW), 4, 5)
    empty = _video_with_square((MAGENTA, YELLOW), None, None)
    labels = segment_subjects(truth, colours)
    scores = flatland_scores(empty, truth, labels, colours, reentry=torch.ones(3, 1, dtype=torch.bool))
    assert scores["frames"]["presence"].tolist() == [[0.0]] * 3
    assert scores["frames"]["missing"].tolist() == [[1.0]] * 3
    assert torch.isnan(scores["frames"]["position_error"]).all()
    assert scores["reentry"]["presence"] == 0.0 and scores["overall"]["missing"] == 1.0
    # Only subject pixels differ, so the background is untouched.
    assert scores["overall"]["background_psnr"] == 100.0 and scores["overall"]["psnr"] < 30.0


def test_stale_presence_tells_a_copied_subject_from_a_carried_one():
    colours = np.array([[MAGENTA, YELLOW]])
    truth = _video_with_square((MAGENTA, YELLOW), 9, 5)  # where the subject is now
    view = _video_with_square((MAGENTA, YELLOW), 4, 5)  # where the aligned context view showed it
    labels, stale = segment_subjects(truth, colours), segment_subjects(view, colours)
    stale[2] = 0  # the view of frame 2 does not show the subject: undefined there
    copied = flatland_scores(view, truth, labels, colours, stale_labels=stale)
    carried = flatland_scores(truth, truth, labels, colours, stale_labels=stale)
    nan = math.nan
    assert np.allclose(copied["frames"]["stale_presence"].numpy(), [[1.0], [1.0], [nan]], equal_nan=True)
    # 4x4 squares 5 columns apart do not overlap: the copy scores 0 against the truth, the carried one 1
    assert np.allclose(copied["frames"]["stale_presence_truth"].numpy(), [[0.0], [0.0], [nan]], equal_nan=True)
    assert carried["overall"]["stale_presence"] == 0.0 and carried["overall"]["stale_presence_truth"] == 1.0
    assert carried["overall"]["presence"] == 1.0  # the ordinary metrics are unchanged
    assert "stale_presence" not in flatland_scores(view, truth, labels, colours)["overall"]
    with pytest.raises(InputError, match="stale_labels: expected shape"):
        flatland_scores(view, truth, labels, colours, stale_labels=stale[:2])


def test_recoloured_subject_has_a_large_identity_distance():
    truth = _video_with_square((MAGENTA, YELLOW), 4, 5)
    recoloured = _video_with_square((BLUE, BLUE), 4, 5)
    mask = segment_subjects(truth, [[MAGENTA, YELLOW]]) == 1
    # The boxes hold only subject pixels: magenta+yellow histogram bins vs one blue bin share nothing.
    assert torch.allclose(identity_distance(recoloured, truth, mask, mask), torch.ones(3, dtype=torch.float64))
    histogram = colour_histogram(truth, mask)
    assert histogram.shape == (3, 64) and torch.allclose(histogram.sum(dim=1), torch.ones(3, dtype=torch.float64))
    assert (histogram[0] > 0).sum() == 2


def test_segmentation_respects_tolerance_and_background_colours():
    near_magenta = (200, 60, 180)  # 34.6 from magenta
    video = _video_with_square((near_magenta, near_magenta), 2, 2)
    colours = [[MAGENTA, YELLOW]]
    assert (segment_subjects(video, colours) == 1).sum() == 3 * 16
    assert (segment_subjects(video, colours, tolerance=30.0) == 1).sum() == 0
    assert (segment_subjects(video, colours, background_colours=[near_magenta]) == 1).sum() == 0


def test_background_psnr_ignores_subject_pixels():
    truth = _video_with_square((MAGENTA, YELLOW), 4, 5)
    moved = _video_with_square((MAGENTA, YELLOW), 10, 5)
    true_mask = segment_subjects(truth, [[MAGENTA, YELLOW]]) == 1
    found = segment_subjects(moved, [[MAGENTA, YELLOW]]) == 1
    assert torch.isfinite(background_psnr(moved, truth, true_mask)).all()  # the moved square is background
    assert torch.isinf(background_psnr(moved, truth, true_mask, found)).all()  # excluding both: identical


def test_flatland_clip_against_itself_is_perfect():
    item = FlatlandDataset(flatland_config("debug"), 2, seed=9)[0]
    S = item["num_subjects"]
    scores = flatland_scores(
        item["target"],
        item["target"],
        item["target_labels"],
        item["subject_colours"][:S],
        background_colours=item["background_colours"],
        reentry=item["reentry"][:, :S],
    )
    for summary in (scores["overall"], scores["reentry"]):
        assert summary["presence"] == 1.0 and summary["position_error"] == 0.0 and summary["identity"] == 0.0
        assert summary["missing"] == 0.0 and summary["psnr"] == 100.0  # capped at max_db
    # A frozen prediction (the last context frame repeated) loses the moving camera's content.
    frozen = item["context"][:, -1:].expand_as(item["target"])
    worse = flatland_scores(frozen, item["target"], item["target_labels"], item["subject_colours"][:S])
    assert worse["overall"]["psnr"] < 30.0 and worse["overall"]["ssim"] < 0.9
