"""The built-in Flatland world model's machinery: view geometry, retrieval scoring, export, the demo path."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hydra_wm.cli import main
from hydra_wm.config import dit_config
from hydra_wm.flatland import model as world_model
from hydra_wm.flatland import render_clip
from hydra_wm.flatland.views import revisited_beyond_window, view_columns, view_overlap
from hydra_wm.models.dit import HydraDiT
from hydra_wm.models.loading import load_dit
from hydra_wm.pipeline import RetrievalRecord
from hydra_wm.training.checkpoint import latest_checkpoint, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

QUANTUM = 360.0 / 32  # width 8, fov 90: a 32-column panorama


def test_view_columns_and_overlap_follow_the_yaw():
    yaw = np.array([0, 1, 8, 16, 32]) * QUANTUM  # in panorama columns: 0, 1, 8, 16, 32 (= 0 again)
    columns = view_columns(yaw, 8, 90.0)
    assert columns[0].tolist() == [28, 29, 30, 31, 0, 1, 2, 3]
    assert columns[1].tolist() == [29, 30, 31, 0, 1, 2, 3, 4]
    overlap = view_overlap(yaw, 8, 90.0)
    assert np.allclose(np.diag(overlap), 1.0)
    assert overlap[0, 1] == pytest.approx(7 / 8) and overlap[0, 2] == 0.0 and overlap[0, 4] == 1.0
    assert np.allclose(overlap, overlap.T)


def test_revisited_beyond_window_marks_context_background_out_of_the_windows_reach():
    # 6 context frames at column 0; the target pans away and comes back: 0, 8, 16, 8, 0, 0
    yaw = np.array([0] * 6 + [0, 8, 16, 8, 0, 0]) * QUANTUM
    mask = revisited_beyond_window(yaw, 6, 8, 90.0, window=3)
    assert mask.shape == (6, 8)
    assert not mask[0].any()  # its window (frames 5..7) holds context frame 5, which shows the same view
    assert not mask[1].any() and not mask[2].any() and not mask[3].any()  # views the context never showed
    assert mask[4].all() and mask[5].all()  # back at the context's view, no context frame within reach
    # a window as long as the clip covers everything: nothing is beyond its reach
    assert not revisited_beyond_window(yaw, 6, 8, 90.0, window=12).any()


def test_retrieval_scores_count_hits_against_the_true_view_overlap():
    # 4 frames (2 context, 2 target), memory frames of 1 frame each, window 1: each query may retrieve any other
    overlap = np.array([[1.0, 0.9, 0.1, 0.0], [0.9, 1.0, 0.2, 0.0], [0.1, 0.2, 1.0, 0.6], [0.0, 0.0, 0.6, 1.0]])
    # one step, one block, one pass; target frame 2 picks memory frame 3 (hit), frame 3 picks 0 (miss)
    indices = torch.tensor([[[[[1], [0], [3], [0]]]]])
    record = RetrievalRecord(
        indices=indices,
        scores=torch.zeros(indices.shape),
        valid=torch.ones(indices.shape, dtype=torch.bool),
        num_context_frames=2,
        num_memory_frames=4,
        frames_per_memory=1,
    )
    scores = world_model.retrieval_scores(record, overlap, window=1)
    assert scores["retrieval_hit"] == pytest.approx(0.5)
    assert scores["retrieval_overlap"] == pytest.approx((0.6 + 0.0) / 2)
    # eligible (not in a 1-frame window = not itself): frame 2 -> {0, 1, 3}, frame 3 -> {0, 1, 2}
    assert scores["retrieval_overlap_chance"] == pytest.approx(((0.1 + 0.2 + 0.6) / 3 + (0.0 + 0.0 + 0.6) / 3) / 2)
    assert scores["retrieval_hit_chance"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    # same view (overlap >= 0.9): neither pick (0.6, 0.0); no eligible frame reaches 0.9 for either query
    assert scores["retrieval_same_view"] == 0.0 and scores["retrieval_same_view_chance"] == 0.0
    overlap[2, 3] = overlap[3, 2] = 0.95  # frames 2 and 3 now show nearly the same view
    scores = world_model.retrieval_scores(record, overlap, window=1)
    assert scores["retrieval_same_view"] == pytest.approx(0.5)  # frame 2's pick (3) is, frame 3's (0) is not
    assert scores["retrieval_same_view_chance"] == pytest.approx((1 / 3 + 1 / 3) / 2)


def _train_args(out, *extra):
    return ["train", "flatland:debug", "--out", str(out), "--preset", "flatland-tiny", "--batch-size", "2",
            "--flatland-samples", "4", "--log-every", "1", "--device", "cpu", "--no-progress",
            "--no-activation-checkpointing", *extra]  # fmt: skip


def test_export_writes_the_checkpoints_ema_or_raw_weights_as_a_loadable_dit(tmp_path, capsys):
    run = tmp_path / "run"
    options = ["--steps", "6", "--ema-decay", "0.5", "--lr", "1e-3", "--prediction", "sample", "--qk-norm-init", "2",
               "--camera-init-std", "0.5"]  # fmt: skip
    assert main(_train_args(run, "--stop-after", "2", *options, "--tokenizer-kernel", "1", "2", "2")) == 0
    assert not (run / "hydra.safetensors").exists()  # stopped early: no export at the end
    tensors, record = read_checkpoint(latest_checkpoint(run))
    assert record["step"] == 2
    assert main(["export", str(run), "--out", str(tmp_path / "ema.safetensors")]) == 0
    assert main(["export", str(latest_checkpoint(run)), "--out", str(tmp_path / "raw.safetensors"), "--no-ema"]) == 0
    ema, raw = load_file(tmp_path / "ema.safetensors"), load_file(tmp_path / "raw.safetensors")
    name = "blocks.0.self_attn.q.weight"
    assert torch.equal(ema[name], tensors[f"ema.{name}"]) and torch.equal(raw[name], tensors[f"model.{name}"])
    assert not torch.equal(ema[name], raw[name])
    model = load_dit(tmp_path / "ema.safetensors")
    assert model.cfg.attention == "memory" and model.cfg.in_dim == 12 and model.cfg.prediction == "sample"
    assert model.cfg.tokenizer_kernel == (1, 2, 2) and ema["blocks.0.self_attn.tokenizer.conv.weight"].shape[2] == 1
    for norm in ("norm_q", "norm_k"):  # 2 steps at lr 1e-3 move a gain by at most ~2e-3
        assert torch.allclose(raw[f"blocks.3.self_attn.{norm}.weight"], torch.tensor(2.0), atol=0.01)
        assert torch.allclose(raw[f"blocks.3.cross_attn.{norm}.weight"], torch.tensor(1.0), atol=0.01)
    for encoder in ("cam_encoder_con", "cam_encoder_tgt"):  # N(0, 0.5²) instead of the reference's zeros
        weight = raw[f"blocks.2.{encoder}.weight"]
        assert 0.45 < weight.std().item() < 0.55 and abs(weight.mean().item()) < 0.05
    capsys.readouterr()
    for bad, message in ((["--tokenizer-kernel", "0", "2", "2"], "tokenizer_kernel: expected three positive"),
                         (["--stop-after", "4", *options, "--resume"], "other settings (tokenizer_kernel)"),
                         (["--init", str(tmp_path / "raw.safetensors"), "--tokenizer-kernel", "1", "1", "1"],
                          "tokenizer_kernel: only for a fresh preset"),
                         (["--init", str(tmp_path / "raw.safetensors"), "--num-layers", "8"],
                          "num_layers: only for a fresh preset"),
                         (["--dim", "0"], "dim: expected a positive integer"),
                         (["--num-heads", "5"], "is not divisible by num_heads"),
                         (["--qk-norm-init", "0"], "qk_norm_init: expected > 0"),
                         (["--camera-init-std", "-1"], "camera_init_std: expected > 0")):  # fmt: skip
        args = _train_args(run, *bad)
        if "--init" in bad:  # a checkpoint instead of the preset
            del args[args.index("--preset") : args.index("--preset") + 2]
        assert main(args) == 2, bad
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and message in err, err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no training checkpoint" in err
    assert main(["export", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "missing.safetensors: training checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def _random_flatland_weights(path, attention="memory", num_steps=2):
    torch.manual_seed(0)
    model = HydraDiT(dit_config("flatland-tiny", attention=attention))
    model.init_weights()
    with torch.no_grad():  # the init zeroes the head (and camera encoders): perturb so every path matters
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    metadata = {key: str(value) for key, value in model.cfg.to_dict().items()}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    card = {"flatland_preset": "debug", "codec_factor": 2, "num_steps": num_steps, "shift": 1.0}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def test_demo_writes_videos_heat_maps_and_metrics_that_eval_recomputes(tmp_path, capsys):
    weights = _random_flatland_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "demo"
    assert main(["demo", "--weights", str(weights), "--samples", "2", "--seed", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "retrieval hit" in printed
    for name in ("sample_00000", "sample_00001"):
        assert (out / f"{name}.mp4").is_file() and (out / f"{name}_retrieval.png").is_file()
        assert (out / "pred" / f"{name}.mp4").is_file() and (out / "data" / name / "truth.json").is_file()
    report = json.loads((out / "metrics.json").read_text())
    assert report["attention"] == "memory" and report["seed"] == 5 and len(report["samples"]) == 2
    mean = report["mean"]
    for key in (
        "retrieval_hit",
        "retrieval_hit_chance",
        "retrieval_overlap",
        "retrieval_overlap_chance",
        "retrieval_same_view",
        "retrieval_same_view_chance",
    ):
        assert 0.0 <= mean[key] <= 1.0
    assert math.isfinite(mean["psnr"]) and math.isfinite(mean["background_psnr_revisit"])
    # the same numbers from the written files (mp4 RGB<->YUV rounding aside)
    assert main(["eval", str(out / "pred"), str(out / "data"), "--quiet"]) == 0
    evaluated = json.loads((out / "pred" / "eval" / "metrics.json").read_text())["mean"]
    assert evaluated["psnr"] == pytest.approx(mean["psnr"], abs=0.1)
    assert evaluated["background_psnr_revisit"] == pytest.approx(mean["background_psnr_revisit"], abs=0.1)


def test_demo_is_deterministic_and_the_attention_mode_changes_the_result(tmp_path):
    weights = _random_flatland_weights(tmp_path / "m.safetensors")
    window = _random_flatland_weights(tmp_path / "w.safetensors", attention="window")
    model = world_model.load_flatland_model(weights=weights)
    clip = render_clip(model.flatland, 3, 0)
    first = world_model.run_clip(model, clip)
    again = world_model.run_clip(model, clip)
    assert torch.equal(first.generated, again.generated) and first.scores == again.scores
    other = world_model.run_clip(world_model.load_flatland_model(weights=window), clip)
    assert other.retrieval is None and "retrieval_hit" not in other.scores
    assert not torch.equal(first.generated, other.generated)
    frames = world_model.side_by_side(first, "HyDRA")
    Tt, H, W = first.generated.shape[1:]
    assert frames.shape[0] == Tt and frames.shape[2] == 3 * W * 4 + 2 * 4 and frames.dtype == np.uint8
    # a caption too long for its panel is cut short: the other panels' captions stay as they were
    long = world_model.side_by_side(first, "HyDRA, camera-FOV retrieval, logits x0.75, view snap 1")
    panel = W * 4 + 4
    assert np.array_equal(long[:, :12, 2 * panel :], frames[:, :12, 2 * panel :])
    assert not np.array_equal(long[:, :12, panel : 2 * panel], frames[:, :12, panel : 2 * panel])


def test_camera_fov_retrieval_finds_the_frames_that_show_the_view(tmp_path, capsys):
    """The camera ablation ranks memory frames from the cameras alone: in Flatland's exact geometry its top-1
    choice must show the query frame's view far more often than chance (and than an untrained model's scores)."""
    weights = _random_flatland_weights(tmp_path / "m.safetensors")
    clip = render_clip(world_model.load_flatland_model(weights=weights).flatland, 3, 0)
    learned = world_model.run_clip(world_model.load_flatland_model(weights=weights), clip).scores
    camera = world_model.run_clip(world_model.load_flatland_model(weights=weights, retrieval="camera"), clip).scores
    assert camera["retrieval_hit"] >= 0.9 and camera["retrieval_hit"] > camera["retrieval_hit_chance"] + 0.2
    assert camera["retrieval_hit"] > learned["retrieval_hit"]  # (top-10 of this short clip's ~7 eligible memory
    # frames is all of them for both, so only the ranking, i.e. the top-1 hit, can differ)
    out = tmp_path / "demo"
    args = ["demo", "--weights", str(weights), "--samples", "1", "--seed", "3", "--out", str(out), "--no-video"]
    assert main([*args, "--retrieval", "camera"]) == 0
    assert "camera-FOV retrieval" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["retrieval"] == "camera"


def test_demo_without_weights_for_the_mode_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(world_model, "WEIGHTS_DIR", tmp_path / "empty")
    assert main(["demo", "--attention", "full", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no shipped Flatland weights for attention 'full'" in err
    assert main(["demo", "--weights", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o")]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_demo_rollout_continues_long_clips_in_chunks_that_eval_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--rollout", "2", "--samples", "1", "--steps", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PSNR per chunk" in printed and "long-glance" in printed
    report = json.loads((out / "metrics.json").read_text())
    assert report["flatland_preset"] == "long-glance" and report["rollout"]["history"] == "memory"
    # the memory model fine-tuned on rollout chunks, in chunks of what it was trained on
    assert Path(report["model"]).name == "flatland-memory-rollout.safetensors"
    assert report["rollout"]["chunk_frames"] == 20
    assert len(report["mean"]["psnr_per_chunk"]) == 2 and len(report["chunk_seconds"][0]) == 2
    assert (out / "sample_00000_timeline.png").is_file() and (out / "sample_00000.mp4").is_file()
    assert main(["eval", str(out / "pred"), str(out / "data"), "--quiet"]) == 0
    evaluated = json.loads((out / "pred" / "eval" / "metrics.json").read_text())["mean"]
    assert evaluated["psnr"] == pytest.approx(report["mean"]["psnr"], abs=0.1)
