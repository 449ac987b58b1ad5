"""`hydra-wm train flatland:PRESET`: the built-in model trains on Flatland clips encoded on the fly, no disk data."""

import json
import math

import pytest
from conftest import load_script

from hydra_wm.cli import main
from hydra_wm.models.loading import load_dit

pytestmark = pytest.mark.usefixtures("one_thread")


def train_args(out, data="flatland:debug", *extra) -> list[str]:
    return ["train", data, "--out", str(out), "--preset", "flatland-tiny", "--steps", "3", "--batch-size", "2",
            "--flatland-samples", "4", "--flatland-seed", "1", "--log-every", "1", "--device", "cpu",
            "--no-progress", "--no-activation-checkpointing", *extra]  # fmt: skip


def test_train_on_flatland_exports_a_loadable_model_and_refuses_another_source_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(out)) == 0
    model = load_dit(out / "hydra.safetensors")
    # PixelCodec(2) latents: 12 channels; null text as wide as the preset's text input
    assert (model.cfg.in_dim, model.cfg.out_dim, model.cfg.text_dim) == (12, 12, 8)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
    recorded = json.loads((out / "config.json").read_text())
    assert (recorded["data"], recorded["flatland_samples"], recorded["flatland_seed"]) == ("flatland:debug", 4, 1)
    # the data source is part of the run: another Flatland preset (or a folder) cannot resume it
    capsys.readouterr()
    assert main(train_args(out, "flatland:small", "--resume")) == 2
    assert "(data)" in capsys.readouterr().err


def test_rope_yaw_columns_is_trained_exported_and_loaded(tmp_path):
    out = tmp_path / "run"
    assert main(train_args(out, "flatland:debug", "--steps", "1", "--rope-yaw-columns", "2.5")) == 0
    assert load_dit(out / "hydra.safetensors").cfg.rope_yaw_columns == 2.5
    # continued from that export without the option: the model keeps it
    again = tmp_path / "again"
    assert main(["train", "flatland:debug", "--out", str(again), "--init", str(out / "hydra.safetensors"),
                 "--steps", "1", "--batch-size", "1", "--flatland-samples", "2", "--device", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    assert load_dit(again / "hydra.safetensors").cfg.rope_yaw_columns == 2.5


def test_rope_head_options_are_trained_exported_and_loaded(tmp_path):
    out = tmp_path / "run"
    velocity = ["0", "0.1", "0", "-0.1"] * 2  # flatland-tiny: 4 blocks of 2 heads, one value per block and head
    args = ["--steps", "1", "--rope-yaw-columns", "2.5", "--rope-yaw-heads", "0", "1"]
    args += ["--rope-head-velocity", *velocity]
    assert main(train_args(out, "flatland:debug", *args)) == 0
    cfg = load_dit(out / "hydra.safetensors").cfg
    assert (cfg.rope_yaw_heads, cfg.rope_head_velocity) == ((0.0, 1.0), (0.0, 0.1, 0.0, -0.1) * 2)
    assert cfg.head_columns() == [((0.0, 1.0), (0.0, 0.1)), ((0.0, 1.0), (0.0, -0.1))] * 2


def test_unknown_flatland_preset_is_a_one_line_error(tmp_path, capsys):
    assert main(train_args(tmp_path / "run", "flatland:nope")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "data: unknown flatland preset 'nope'" in err and "small" in err
    assert not (tmp_path / "run").exists()


def test_codec_factor_sets_the_latent_width_is_part_of_the_run_and_old_runs_still_resume(tmp_path, capsys):
    from safetensors.torch import save_file

    from hydra_wm.training.checkpoint import STATE_KEY, latest_checkpoint, read_checkpoint

    out = tmp_path / "run"
    assert main(train_args(out, "flatland:debug", "--flatland-codec-factor", "4", "--stop-after", "2")) == 0
    # PixelCodec(4) latents: 3 * 4 * 4 = 48 channels at a quarter of the frame size
    tensors, record = read_checkpoint(latest_checkpoint(out))
    assert record["config"]["flatland_codec_factor"] == 4
    assert tensors["model.patch_embedding.weight"].shape[1] == 48
    capsys.readouterr()
    assert main(train_args(out, "flatland:debug", "--resume")) == 2  # factor 2 (the default) is another run
    assert "(flatland_codec_factor)" in capsys.readouterr().err
    assert main(train_args(out, "flatland:debug", "--flatland-codec-factor", "4", "--resume")) == 0
    assert load_dit(out / "hydra.safetensors").cfg.in_dim == 48

    # A run recorded before a field existed resumes when the current value is that field's default.
    old = tmp_path / "old"
    assert main(train_args(old, "flatland:debug", "--stop-after", "2")) == 0
    path = latest_checkpoint(old)
    tensors, record = read_checkpoint(path)
    del record["config"]["flatland_codec_factor"]
    save_file(tensors, str(path), metadata={STATE_KEY: json.dumps(record)})
    assert main(train_args(old, "flatland:debug", "--resume")) == 0
    assert main(train_args(tmp_path / "x", "flatland:debug", "--flatland-codec-factor", "0")) == 2
    assert "flatland_codec_factor: expected a positive integer" in capsys.readouterr().err


def test_camera_retrieval_ablation_trains_and_exports_its_setting(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(out, "flatland:debug", "--retrieval", "camera")) == 0
    model = load_dit(out / "hydra.safetensors")
    assert (model.cfg.attention, model.cfg.retrieval) == ("memory", "camera")
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices: exit code 2, usage + one error line
        main(train_args(tmp_path / "bad", "flatland:debug", "--retrieval", "fov"))
    assert exit_info.value.code == 2 and "invalid choice: 'fov'" in capsys.readouterr().err


def test_keep_every_keeps_milestones_and_the_validation_curve_scores_them_like_the_demo(tmp_path, capsys):
    from hydra_wm.training.checkpoint import CHECKPOINT_DIR

    out = tmp_path / "run"
    # keep only the latest checkpoint, but every multiple of 2 for good
    assert main(train_args(out, "flatland:debug", "--save-every", "1", "--keep-checkpoints", "1",
                           "--keep-every", "2")) == 0  # fmt: skip
    assert sorted(p.name for p in (out / CHECKPOINT_DIR).iterdir()) == [
        "step_00000002.safetensors", "step_00000003.safetensors"]  # fmt: skip
    plain = tmp_path / "plain"
    assert main(train_args(plain, "flatland:debug", "--save-every", "1", "--keep-checkpoints", "1")) == 0
    assert [p.name for p in (plain / CHECKPOINT_DIR).iterdir()] == ["step_00000003.safetensors"]
    # keep_every may change on resume (it does not change the result); it must not be negative
    assert main(train_args(tmp_path / "neg", "flatland:debug", "--keep-every", "-1")) == 2
    assert "keep_every: expected >= 0" in capsys.readouterr().err

    validate = load_script("scripts/flatland_validate.py")
    argv = [str(out), "--samples", "1", "--num-steps", "2", "--threads", "1"]
    assert validate.main(argv) == 0
    files = list((out / "validation").glob("*.json"))
    assert len(files) == 1
    results = json.loads(files[0].read_text())["checkpoints"]
    assert sorted(results) == ["2", "3"] and results["2"]["psnr"] != results["3"]["psnr"]
    assert "retrieval_same_view" in results["3"]  # flatland-tiny trains `memory` by default

    # the same numbers as the demo on the exported checkpoint (raw weights) with a card naming preset and steps
    weights = tmp_path / "step3.safetensors"
    assert main(["export", str(out), "--out", str(weights), "--no-ema"]) == 0
    weights.with_suffix(".json").write_text(json.dumps({"flatland_preset": "debug", "num_steps": 2}))
    demo = tmp_path / "demo"
    assert main(["demo", "--weights", str(weights), "--seed", "2000", "--samples", "1", "--no-video",
                 "--out", str(demo), "--threads", "1"]) == 0  # fmt: skip
    mean = json.loads((demo / "metrics.json").read_text())["mean"]
    for key in ("psnr", "background_psnr", "retrieval_same_view"):
        assert results["3"][key] == pytest.approx(mean[key], rel=1e-6, abs=1e-9)

    # with --view-snap: its own results file, and the demo's numbers with the same flag
    assert validate.main(argv + ["--step", "3", "--view-snap", "0.5"]) == 0
    snapped = [f for f in (out / "validation").glob("*.json") if f != files[0]]
    assert len(snapped) == 1 and "view_snap0.5" in snapped[0].name
    snap_scores = json.loads(snapped[0].read_text())["checkpoints"]["3"]
    assert main(["demo", "--weights", str(weights), "--seed", "2000", "--samples", "1", "--no-video",
                 "--out", str(tmp_path / "demo-snap"), "--threads", "1", "--view-snap", "0.5"]) == 0  # fmt: skip
    snap_mean = json.loads((tmp_path / "demo-snap" / "metrics.json").read_text())["mean"]
    assert snap_scores["psnr"] == pytest.approx(snap_mean["psnr"], rel=1e-6) and snap_scores["psnr"] != mean["psnr"]
    assert validate.main(argv + ["--view-snap", "-1"]) == 2
    assert "--view-snap: expected a tolerance >= 0" in capsys.readouterr().err

    # scored checkpoints are read back, not scored again
    data = json.loads(files[0].read_text())
    data["checkpoints"]["2"]["psnr"] = 123.0
    files[0].write_text(json.dumps(data))
    capsys.readouterr()
    assert validate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "0 to score" in printed and "| 2 | 123.00 |" in printed

    # bad input: one line, exit code 2
    assert validate.main([str(out), "--step", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no checkpoint for --step 5" in err
    assert validate.main([str(tmp_path / "nowhere")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_chunk_items_are_what_a_rollout_feeds_the_model():
    """Chunk 0 is a FlatlandDataset item cut to the chunk; a later chunk's context latents and cameras are exactly
    what `Rollout.step` gives the DiT when the bank holds the true frames (teacher forcing)."""
    import torch

    from hydra_wm.data.cameras import camera_poses
    from hydra_wm.flatland import flatland_config, render_clip
    from hydra_wm.flatland.dataset import FlatlandDataset
    from hydra_wm.flatland.model import load_flatland_model
    from hydra_wm.flatland.rollout import start_rollout
    from hydra_wm.flatland.training import FlatlandChunkDataset
    from hydra_wm.rollout import MemoryBank, RolloutConfig

    config = flatland_config("long-glance")
    history = RolloutConfig(chunk_frames=20, recent_frames=8, memory_frames=12)
    chunks = FlatlandChunkDataset(config, 40, 3, history=history, kernel=2)
    picked = [chunks.chunk_of(i) for i in range(40)]
    assert len(set(picked)) > 5 and max(picked) == len(chunks.plan) - 1 == 10  # 220 target frames, chunks of 20
    first = picked.index(0)
    item, whole = chunks[first], FlatlandDataset(config, 40, 3, latent_stride=1)[first]
    assert torch.equal(item["context"], whole["context"]) and torch.equal(item["target"], whole["target"][:, :20])
    assert torch.equal(item["context_cameras"], whole["context_cameras"])
    assert torch.equal(item["target_cameras"], whole["target_cameras"][:20])

    index = next(i for i, c in enumerate(picked) if c >= 5)
    model = load_flatland_model("memory")
    chunks.set_kernel(model.dit.cfg.tokenizer_kernel[0])  # the rollout pre-selects in the model's units
    item, chunk = chunks[index], picked[index]
    start = config.context_frames + 20 * chunk
    assert item["context_frames"].tolist()[-8:] == list(range(start - 8, start))  # the 8 newest frames
    assert len(set(item["context_frames"].tolist())) == 20 and item["context_frames"].max() < start
    clip = render_clip(config, 3, index)
    poses = camera_poses(clip.camera_to_world)
    bank = MemoryBank()
    pixels = torch.from_numpy(clip.frames[:start]).float() / 127.5 - 1.0
    bank.append(model.codec.encode(pixels.permute(3, 0, 1, 2)[None]), poses[:start])
    seen = {}

    def record(module, args, kwargs):
        seen.setdefault("inputs", (args, kwargs))

    rollout = start_rollout(model, clip, history, bank=bank, num_steps=1, record_retrieval=False)
    handle = model.dit.register_forward_pre_hook(record, with_kwargs=True)
    try:
        rollout.step(poses[start : start + 20])
    finally:
        handle.remove()
    (latents, _, _, cam_context, cam_target), kwargs = seen["inputs"]
    context_latents = model.codec.encode(item["context"][None])
    assert torch.equal(latents[:, :, :20], context_latents)
    assert torch.equal(cam_context[0], item["context_cameras"]) and torch.equal(cam_target[0], item["target_cameras"])


def test_train_on_rollout_chunks_selects_in_the_models_tokenizer_units(tmp_path):
    from hydra_wm.training import TrainConfig
    from hydra_wm.training.loop import _setup, training_dataset

    out = tmp_path / "run"
    assert main(train_args(out, "flatland:long-glance", "--flatland-chunk-frames", "20")) == 0
    assert json.loads((out / "config.json").read_text())["flatland_chunk_frames"] == 20
    assert load_dit(out / "hydra.safetensors").cfg.in_dim == 12
    # its card says it generates one chunk of the long clips at a time (what `demo --rollout` splits them into)
    from hydra_wm.flatland.model import load_flatland_model

    card = {"flatland_preset": "long-glance", "chunk_frames": 20}
    (out / "hydra.json").write_text(json.dumps(card))
    trained = load_flatland_model("memory", out / "hydra.safetensors").flatland
    assert (trained.context_frames, trained.target_frames, trained.camera_motion) == (20, 20, "tour")
    # a model whose memory tokenizer takes 1 frame: the chunks' history is picked frame by frame
    config = TrainConfig(
        data="flatland:long-glance",
        preset="flatland-tiny",
        flatland_chunk_frames=20,
        tokenizer_kernel=(1, 2, 2),
        flatland_samples=4,
        out=str(tmp_path / "k1"),
        device="cpu",
    )
    assert training_dataset(config).dataset.kernel == 1
    # a dataset made for another kernel (as with --init, whose kernel the checkpoint fixes) follows the model's
    import torch

    from hydra_wm.flatland.training import flatland_training_dataset
    from hydra_wm.training.loop import DistInfo

    other = flatland_training_dataset("long-glance", 4, chunk_frames=20, kernel=2)
    run = _setup(config, other, DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    assert run.dataset.dataset.kernel == run.raw.cfg.tokenizer_kernel[0] == 1
