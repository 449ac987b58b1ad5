"""scripts/flatland_device_train.py: train to a clock, stop with SIGTERM, export, and continue in the next call."""

from __future__ import annotations

import json

from conftest import load_script

from hydra_wm.models.loading import load_dit
from hydra_wm.training.checkpoint import checkpoint_step, latest_checkpoint


def test_trains_to_the_clock_exports_and_the_returned_run_resumes(tmp_path, capsys):
    script = load_script("scripts/flatland_device_train.py")
    out, runs = tmp_path / "out", tmp_path / "runs"
    common = ["--runs", str(runs), "--attention", "window", "--from", "scratch", "--batch-size", "1",
              "--num-workers", "0", "--data", "flatland:debug"]  # fmt: skip
    # the clock stops the run (SIGTERM: it saves and exits 143); the export and the cut-down run folder come back
    assert script.main(["--out", str(out), "--seconds", "15", *common, "--", "--no-compile", "--log-every", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [] and summary["runs"]["window"]["exit_code"] == 143
    assert "--attention window" in summary["runs"]["window"]["command"]
    first = checkpoint_step(latest_checkpoint(out / "runs" / "window"))
    assert first >= 1 and load_dit(out / "flatland-window.safetensors").cfg.attention == "window"
    assert sorted(p.name for p in (out / "runs" / "window").iterdir()) == [
        "checkpoints", "config.json", "train_log.jsonl"]  # fmt: skip

    # the next call (the run folder put back at --runs) continues it: --resume, a few steps more, exit 0
    out2 = tmp_path / "out2"
    argv = ["--out", str(out2), "--seconds", "300", *common, "--", "--no-compile", "--stop-after", str(first + 2)]
    assert script.main(argv) == 0
    record = json.loads((out2 / "summary.json").read_text())["runs"]["window"]
    assert record["exit_code"] == 0 and record["command"].split().count("--resume") == 1
    assert checkpoint_step(latest_checkpoint(out2 / "runs" / "window")) == first + 2

    # --from DIR continues the weights of a folder (a lineage in training): they become the run's init
    lineage = tmp_path / "lineage"
    lineage.mkdir()
    (out / "flatland-window.safetensors").rename(lineage / "flatland-window.safetensors")
    out3, runs3 = tmp_path / "out3", tmp_path / "runs3"
    argv = ["--out", str(out3), "--seconds", "300", *common, "--", "--no-compile", "--stop-after", "1"]
    argv[argv.index(str(runs))], argv[argv.index("scratch")] = str(runs3), str(lineage)
    assert script.main(argv) == 0
    record = json.loads((out3 / "summary.json").read_text())["runs"]["window"]
    assert f"--init {runs3 / 'window' / 'init.safetensors'}" in record["command"]
    assert (runs3 / "window" / "init.safetensors").read_bytes() == (
        lineage / "flatland-window.safetensors"
    ).read_bytes()

    # bad input: one line, exit code 2, nothing started
    for bad, name in ((["--attention", "dense"], "--attention"), (["--from", str(tmp_path / "none")], "--from")):
        capsys.readouterr()
        assert script.main(["--out", str(tmp_path / "x"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and name in err and not (tmp_path / "x").exists()
    capsys.readouterr()
    assert script.main(["--out", str(tmp_path / "x"), "--attention", "full", "--from", str(lineage)]) == 2
    assert "flatland-full.safetensors: no weights to continue" in capsys.readouterr().err
