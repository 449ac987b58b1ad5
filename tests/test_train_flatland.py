"""`hydra-wm train flatland:PRESET`: the built-in model trains on Flatland clips encoded on the fly, no disk data."""

import json
import math

import pytest

from hydra_wm.cli import main
from hydra_wm.loading import load_dit

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
