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
