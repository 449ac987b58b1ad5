"""Evaluation: ROI-align, DSC and its tracker, VBench consistency on tiny random-weight CLIP/DINO models, and
`hydra-wm eval` end to end on a tiny Flatland set (against itself, a baseline, and malformed predictions)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hydra_wm.cli import main
from hydra_wm.data.video import read_frames, write_video
from hydra_wm.evaluation.baselines import run_baseline
from hydra_wm.flatland import flatland_config, write_dataset

SAMPLES = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random CLIP (vision tower + projection) and DINO (ViT) folders, as save_pretrained writes them."""
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
        Dinov2Config,
        Dinov2Model,
        ViTConfig,
        ViTModel,
    )

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
    CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=64, projection_dim=16, **small)).save_pretrained(
        folder / "clip"
    )
    CLIPVisionModel(CLIPVisionConfig(image_size=32, **small)).save_pretrained(folder / "clip_no_projection")
    ViTModel(ViTConfig(image_size=32, **small), add_pooling_layer=False).save_pretrained(folder / "dino")
    Dinov2Model(Dinov2Config(image_size=32, **small)).save_pretrained(folder / "dinov2")
    return folder


@pytest.fixture(scope="module")
def flatland(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "flatland"
    write_dataset(root, flatland_config("debug"), SAMPLES, seed=3, progress=False)
    return root


def _square_video(positions, size=64, side=16):
    """``[3, T, size, size]``: grey with a red/yellow square whose top-left corner is at positions[t]."""
    video = torch.full((3, len(positions), size, size), -0.2)
    for t, (x, y) in enumerate(positions):
        video[:, t, y : y + side, x : x + side] = torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1)
        video[:, t, y : y + side // 2, x : x + side] = torch.tensor([1.0, 0.8, -1.0]).view(3, 1, 1)
    return video


def _box(x, y, side=16, size=64):
    return [x / size, y / size, (x + side) / size, (y + side) / size]


# ----------------------------------------------------------------------------------------------
# ROI-align, DSC, tracker, VBench


def _naive_roi_align(features, box, out=7):
    """torchvision's CPU roi_align (aligned=True, adaptive sampling) for one map, written with loops."""
    C, H, W = features.shape
    x0, y0, x1, y1 = (float(v) - 0.5 for v in box)
    bin_h, bin_w = (y1 - y0) / out, (x1 - x0) / out
    grid_h, grid_w = math.ceil((y1 - y0) / out), math.ceil((x1 - x0) / out)
    result = torch.zeros(C, out, out, dtype=torch.float64)

    def sample(y, x):
        if y < -1.0 or y > H or x < -1.0 or x > W:
            return torch.zeros(C, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= H - 1:
            yl = yh = H - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= W - 1:
            xl = xh = W - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        f = features.double()
        return (
            (1 - ly) * (1 - lx) * f[:, yl, xl]
            + (1 - ly) * lx * f[:, yl, xh]
            + ly * (1 - lx) * f[:, yh, xl]
            + ly * lx * f[:, yh, xh]
        )

    for ph in range(out):
        for pw in range(out):
            acc = torch.zeros(C, dtype=torch.float64)
            for iy in range(grid_h):
                for ix in range(grid_w):
                    yy = y0 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    xx = x0 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    acc += sample(yy, xx)
            result[:, ph, pw] = acc / max(grid_h * grid_w, 1)
    return result


def test_roi_align_matches_torchvision_semantics():
    from hydra_wm.evaluation.dsc import roi_align

    gen = torch.Generator().manual_seed(0)
    features = torch.randn(4, 5, 14, 14, generator=gen, dtype=torch.float64)
    # inside, touching the border, larger than 7 cells (2x2 samples per bin), tiny, and partly outside
    boxes = torch.tensor(
        [[2.3, 3.1, 9.7, 8.2], [0.0, 0.0, 14.0, 14.0], [5.0, 5.0, 5.6, 6.0], [-2.0, 10.0, 3.0, 16.0]],
        dtype=torch.float64,
    )
    got = roi_align(features, boxes)
    for n in range(4):
        assert torch.allclose(got[n], _naive_roi_align(features[n], boxes[n]), atol=1e-12), n


def test_tracker_finds_a_subject_that_moved(models):
    from hydra_wm.evaluation import load_clip
    from hydra_wm.evaluation.dsc import roi_features
    from hydra_wm.evaluation.features import clip_patch_grid
    from hydra_wm.evaluation.tracker import track_subject

    clip = load_clip(models / "clip")
    context = _square_video([(8, 8), (16, 8), (8, 16)])
    context_boxes = torch.tensor([_box(8, 8), _box(16, 8), _box(8, 16)])
    template = F.normalize(roi_features(clip_patch_grid(clip, context), context_boxes).mean(0), dim=0)
    moved = [(40, 32), (32, 40), (0, 40)]
    boxes, similarity = track_subject(clip_patch_grid(clip, _square_video(moved)), template, context_boxes)
    assert torch.allclose(boxes.float(), torch.tensor([_box(x, y) for x, y in moved]))
    assert (similarity > 0.9).all()


def test_dsc_is_one_for_a_static_identical_subject_and_drops_when_it_vanishes(models):
    from hydra_wm.evaluation import dsc_scores, load_clip

    clip = load_clip(models / "clip")
    video = _square_video([(24, 24)] * 3)
    boxes = torch.tensor([_box(24, 24)] * 3)
    same = dsc_scores(clip, video, boxes, video, video, boxes)
    assert same["dsc_ctx"] == pytest.approx(1.0, abs=1e-5) and same["dsc_gt"] == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(same["track_boxes"], boxes)
    vanished = dsc_scores(clip, video, boxes, torch.full_like(video, -0.2), video, boxes)
    assert vanished["dsc_gt"] < same["dsc_gt"] - 0.05 and vanished["dsc_ctx"] < same["dsc_ctx"] - 0.05
    no_subject = torch.full((3, 4), math.nan)
    assert math.isnan(dsc_scores(clip, video, no_subject, video, video, boxes)["dsc_ctx"])


def test_vbench_consistency(models):
    from hydra_wm.evaluation import background_consistency, consistency, load_clip, load_dino, subject_consistency

    # hand-made features: i=1: cos to previous 0, to first 0; i=2: to previous 0, to first 1 (negatives clip to 0)
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [-1.0, 0.0]])
    assert consistency(features) == pytest.approx((0.0 + 0.5 + 0.0) / 3)
    clip, dino = load_clip(models / "clip"), load_dino(models / "dino")
    still = _square_video([(20, 20)] * 4)
    assert subject_consistency(dino, still) == pytest.approx(1.0, abs=1e-6)
    assert background_consistency(clip, still) == pytest.approx(1.0, abs=1e-6)
    moving = torch.cat([_square_video([(20, 20)] * 2), torch.rand(3, 2, 64, 64) * 2 - 1], dim=1)
    assert subject_consistency(dino, moving) < 0.999
    assert subject_consistency(load_dino(models / "dinov2"), still) == pytest.approx(1.0, abs=1e-6)
    pooled = load_clip(models / "clip_no_projection")
    assert not pooled.has_projection and clip.has_projection
    assert background_consistency(pooled, still) == pytest.approx(1.0, abs=1e-6)
    assert background_consistency(pooled, moving) < 0.999


# ----------------------------------------------------------------------------------------------
# The command


def _eval(capsys, *args):
    code = main(["eval", *map(str, args), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_of_flatland_against_itself_is_perfect(flatland, models, tmp_path, capsys):
    from test_lpips import random_weights

    backbone, heads = random_weights("vgg")  # AlexNet needs frames of at least 31 pixels; debug frames are 16x24
    torch.save({**backbone, **heads}, tmp_path / "lpips_vgg.pth")
    code, out, _ = _eval(
        capsys,
        flatland,
        flatland,
        "--out",
        tmp_path / "out",
        "--clip",
        models / "clip",
        "--dino",
        models / "dino",
        "--lpips-weights",
        tmp_path / "lpips_vgg.pth",
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    mean = report["mean"]
    assert report["flatland"] and report["samples"] == SAMPLES
    assert mean["psnr"] == 100.0 and mean["psnr_reentry"] == 100.0  # capped per frame (identical frames)
    assert mean["ssim"] == pytest.approx(1.0) and mean["ssim_reentry"] == pytest.approx(1.0)
    assert mean["presence"] == 1.0 and mean["presence_reentry"] == 1.0
    assert mean["position_error"] == 0.0 and mean["identity"] == 0.0 and mean["missing"] == 0.0
    assert mean["background_psnr"] == 100.0
    assert mean["lpips"] == 0.0 and mean["lpips_reentry"] == 0.0
    assert 0.0 < mean["subject_consistency"] <= 1.0 and 0.0 < mean["background_consistency"] <= 1.0
    assert math.isfinite(mean["dsc_ctx"]) and math.isfinite(mean["dsc_gt"])
    assert report["skipped"] == {}
    assert (tmp_path / "out" / "per_frame.png").stat().st_size > 1000
    assert all(s["events"] for s in report["per_sample"])  # every Flatland clip has an entry in its target


def test_eval_of_repeat_last_baseline_is_imperfect(flatland, tmp_path, capsys):
    run_baseline("repeat-last", flatland, tmp_path / "pred", progress=False)
    code, out, _ = _eval(capsys, tmp_path / "pred", flatland)
    assert code == 0
    report = json.loads((tmp_path / "pred" / "eval" / "metrics.json").read_text())
    mean = report["mean"]
    # A frozen world: far from the truth, and the re-entering subject is not there.
    assert mean["psnr"] < 30 and mean["ssim"] < 0.9
    assert mean["presence_reentry"] < 0.5 and mean["missing_reentry"] > 0.5
    # No model weights given: every learned metric is reported as skipped with its reason (JSON, CSV, table).
    assert mean["lpips"] == report["skipped"]["lpips"] == "skipped: no --lpips-weights given"
    assert mean["dsc_ctx"] == mean["dsc_gt"] == "skipped: no --clip model given"
    assert mean["subject_consistency"] == "skipped: no --dino model given"
    assert mean["background_consistency"].startswith("skipped: no --clip")
    assert "skipped: no --lpips-weights given" in (tmp_path / "pred" / "eval" / "metrics.csv").read_text()
    assert "skipped: no --dino model given" in out
    assert (tmp_path / "pred" / "eval" / "metrics.csv").read_text().splitlines()[-1].startswith("mean,")


def test_compare_two_eval_reports_of_the_same_clips(flatland, tmp_path, capsys):
    # The ground truth itself vs the repeat-last baseline, paired per clip: truth wins every clip on PSNR.
    run_baseline("repeat-last", flatland, tmp_path / "pred", progress=False)
    assert _eval(capsys, tmp_path / "pred", flatland, "--out", tmp_path / "last")[0] == 0
    assert _eval(capsys, flatland, flatland, "--out", tmp_path / "truth")[0] == 0
    code = main(["compare", str(tmp_path / "truth"), str(tmp_path / "last"), "--out", str(tmp_path / "cmp.json")])
    assert code == 0
    results = {r["metric"]: r for r in json.loads((tmp_path / "cmp.json").read_text())["results"]}
    assert results["psnr"]["clips"] == SAMPLES and results["psnr"]["wins"] == SAMPLES and results["psnr"]["a_better"]
    assert results["missing_reentry"]["losses"] == 0  # the truth never misses a subject
    assert "background_psnr_revisit" in results and "lpips" not in results  # skipped metrics are not compared


def test_generated_only_predictions_give_the_same_scores(flatland, tmp_path, capsys):
    run_baseline("repeat-last", flatland, tmp_path / "full", progress=False)
    (tmp_path / "short").mkdir()
    for path in sorted((tmp_path / "full").glob("*.mp4")):
        frames = read_frames(path)
        write_video(tmp_path / "short" / path.name, frames[-9:], crf=0, pix_fmt="yuv444p")  # debug: 9 target frames
    reports = []
    for name in ("full", "short"):
        assert _eval(capsys, tmp_path / name, flatland, "--out", tmp_path / f"{name}_eval")[0] == 0
        reports.append(json.loads((tmp_path / f"{name}_eval" / "metrics.json").read_text())["mean"])
    assert reports[0] == reports[1]


def test_malformed_predictions_fail_with_one_line(flatland, tmp_path, capsys):
    pred = tmp_path / "pred"
    run_baseline("repeat-last", flatland, pred, progress=False)
    frames = read_frames(pred / "sample_00001.mp4")
    write_video(pred / "sample_00001.mp4", frames[:-2], crf=0, pix_fmt="yuv444p")
    code, _, err = _eval(capsys, pred, flatland)
    assert code == 2 and err.count("\n") == 1
    assert "sample_00001.mp4: 16 frames; expected 18 (9 condition + 9 generated) or 9" in err
    (pred / "sample_00001.mp4").unlink()
    code, _, err = _eval(capsys, pred, flatland)
    assert code == 2 and err.count("\n") == 1 and "no prediction for ground-truth sample 'sample_00001'" in err
    code, _, err = _eval(capsys, flatland, flatland, "--clip", tmp_path / "no_such_model")
    assert code == 2 and "CLIP model folder not found" in err
    code, _, err = _eval(capsys, flatland, flatland, "--frames", "10")
    assert code == 2 and "--frames 10" in err and "holds only 9 target frames" in err


def test_eval_on_a_dataset_without_truth_uses_the_masks(flatland, tmp_path, capsys):
    plain = tmp_path / "plain"
    shutil.copytree(flatland, plain)
    for truth in plain.glob("*/truth.json"):
        truth.unlink()
    code, out, _ = _eval(capsys, plain, plain, "--out", tmp_path / "out")
    assert code == 0 and "HM-World layout" in out
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "presence" not in report["columns"] and report["mean"]["psnr_reentry"] == 100.0
    assert np.isfinite(report["mean"]["ssim_reentry"])


def test_predictions_of_another_size_are_refused_or_compared_with_resized_ground_truth(flatland, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("sample_00000", "sample_00001", "sample_00002"):
        frames = np.concatenate([read_frames(flatland / name / "cond.mp4"), read_frames(flatland / name / "tgt.mp4")])
        write_video(pred / f"{name}.mp4", frames.repeat(2, axis=1).repeat(2, axis=2), crf=0, pix_fmt="yuv444p")
    code, _, err = _eval(capsys, pred, flatland)
    assert code == 2 and err.count("\n") == 1 and "sample_00000.mp4: frames of 32x48" in err and "--resize" in err
    assert not (pred / "eval").exists()
    code, _, _ = _eval(capsys, pred, flatland, "--resize")
    assert code == 0
    report = json.loads((pred / "eval" / "metrics.json").read_text())
    assert 25.0 < report["mean"]["psnr"] < 100.0  # bilinear upscaling of the truth vs pixel repetition
    assert report["skipped"]["presence"].startswith("skipped: not computed for any sample (ground truth resized")
