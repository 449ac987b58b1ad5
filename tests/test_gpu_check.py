"""benchmarks/gpu_check.py at its tiny size (what a CPU-only machine runs), and the benchmarks' flag errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import load_script


def load(name: str):
    return load_script(f"benchmarks/{name}.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the tiny CPU run; on a GPU the script runs at real size")
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_gpu_check_runs_every_phase_at_tiny_size(tmp_path):
    from hydra_wm.config import dit_config
    from hydra_wm.models.dit import HydraDiT

    out = tmp_path / "check.json"
    assert load("gpu_check").main(["--out", str(out), "--steps", "2"]) == 0
    result = json.loads(out.read_text())
    assert result["tiny"] and result["environment"]["device"] == "cpu"
    for phase in ("forward", "generation", "offload", "train"):
        assert "error" not in json.dumps(result[phase]) and "skipped" not in result[phase], result[phase]
    with torch.device("meta"):
        params = sum(p.numel() for p in HydraDiT(dit_config("debug")).parameters())
    assert result["model"]["parameters"] == params
    forward = result["forward"]
    assert all(forward[name]["seconds"] > 0 for name in ("memory", "memory_flex", "full"))
    # the flex path computes what the gather path computes (float32 on the CPU)
    assert forward["memory_flex"]["max_abs_diff_vs_gather"] <= 1e-5 * max(1.0, forward["memory_flex"]["output_max_abs"])
    gen = result["generation"]
    assert gen["measured_steps"] == 2
    assert math.isclose(gen["dit_50_steps_seconds"], 50 * gen["step_seconds"])
    assert math.isclose(
        gen["continuation_seconds"], gen["vae_encode_seconds"] + gen["dit_50_steps_seconds"] + gen["vae_decode_seconds"]
    )
    assert {"none", "model", "blocks"} <= result["offload"].keys()
    assert math.isfinite(result["train"]["loss"]) and result["train"]["step_seconds"] > 0
    assert result["goals"]["applies"] is False  # a tiny CPU run says nothing about the GPU goals


@pytest.mark.parametrize(
    "name,argv,message",
    [
        ("gpu_check", ["--steps", "0"], "--steps"),
        ("gpu_check", ["--device", "tpu"], "--device"),
        ("gpu_check", ["--out", "/nonexistent-dir/x.json"], "does not exist"),
        ("dit_forward", ["--pairs", "0"], "--pairs"),
        ("dit_forward", ["--authors-src", "/nonexistent-dir"], "wan_video_dit.py not found"),
        ("dit_forward", ["--baseline-src", "/nonexistent-dir"], "hydra_wm/__init__.py not found"),
        ("dit_forward", ["--fixtures", "hd64"], "invalid choice"),
    ],
)
def test_benchmark_flag_errors_are_one_line_with_exit_code_2(name, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load(name).main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
