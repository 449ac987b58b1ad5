"""Every command, every bad input, as a new user meets it, through the CLI (issue 26).

Each case runs `hydra_wm.cli.main([...])` in this process (a few cases need a real process: a broken pipe, a real
SIGTERM) and checks the exit code (2 bad input, 3 finished with some items failed, 128 + N stopped by signal N),
exactly one line on stderr naming the file, key or flag, no traceback, and no partial output left behind.

Read-only and full file systems: as root, a 64 KiB tmpfs remounted read-only and one filled to the last byte;
without root, a directory without write permission (and no full-disk case). Where mounting is not permitted the
cases are skipped with that reason.
"""

import errno
import fractions
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXAMPLES
from safetensors.torch import save_file
from test_generate_cli import checkpoints, examples, small_args  # noqa: F401 - fixtures: tiny Wan2.1 files
from test_preprocess import ckpt_dir  # noqa: F401 - fixture: tiny VAE and umT5 files
from test_text_encoder import tokenizer_dir  # noqa: F401 - fixture: tiny tokenizer folder
from test_train import data  # noqa: F401 - fixture: a preprocessed folder

from hydra_wm.cli import main
from hydra_wm.data import samples as sample_format
from hydra_wm.data.preprocess import pixel_encoders, preprocess
from hydra_wm.data.video import read_frames, write_video
from hydra_wm.errors import EXIT_BAD_INPUT, EXIT_SOME_FAILED
from hydra_wm.flatland import flatland_config, write_dataset
from hydra_wm.io_utils import atomic_path
from hydra_wm.models.state_dicts import METADATA_KEY, read_state_dict

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, *needles) -> None:
    """Exactly one line on stderr, no traceback, naming every needle (a path, key or flag)."""
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    for needle in needles:
        assert str(needle) in err, (needle, err)


def tree(path: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under `path`: what a failed command must leave unchanged."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


# ------------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """Two Flatland clips (debug preset: 16x24, 9 + 9 frames) in the HM-World layout."""
    root = tmp_path_factory.mktemp("flat")
    write_dataset(root, flatland_config("debug"), 2, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def prepared(data):  # noqa: F811 - test_train's preprocessed folder of 8 random samples
    return data


def train_args(source, out, *extra):
    return ["train", source, "--preset", "debug", "--out", out, "--batch-size", "2", "--device", "cpu",
            "--no-progress", "--log-every", "100", "--no-activation-checkpointing", "--export", "", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, prepared):
    """A training run stopped at step 2 of 6 with checkpoints at steps 1 and 2."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert (
        main([str(a) for a in train_args(prepared, out, "--steps", "6", "--stop-after", "2", "--save-every", "1")]) == 0
    )
    names = [p.name for p in sorted((out / "checkpoints").iterdir())]
    assert names == ["step_00000001.safetensors", "step_00000002.safetensors"]
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two minimal `hydra-wm eval` reports of the same two samples."""
    root = tmp_path_factory.mktemp("reports")
    for name, values in (("a", (20.0, 22.0)), ("b", (19.0, 21.0))):
        per_sample = [{"name": f"s{i}", "metrics": {"psnr": v}} for i, v in enumerate(values)]
        (root / f"{name}.json").write_text(json.dumps({"columns": ["psnr"], "per_sample": per_sample}))
    return root


def fill(path: Path) -> None:
    """Append to `path` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def _mountinfo() -> list[list[str]]:
    return [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def mount_id_of(folder: Path) -> str:
    """The id of the mount at `folder` (the last one: mounts stack)."""
    return [fields[0] for fields in _mountinfo() if fields[4] == str(folder.resolve())][-1]


def mount_point(mount_id: str) -> str | None:
    """Where the mount `mount_id` is now, or None once it is gone."""
    return next((fields[4] for fields in _mountinfo() if fields[0] == mount_id), None)


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    """{"readonly": folder, "full": folder}, or the reason a kind is unavailable in place of the folder."""
    base = tmp_path_factory.mktemp("disks")
    readonly, full = base / "readonly", base / "full"
    readonly.mkdir()
    full.mkdir()
    mounted = []
    try:
        if os.geteuid() != 0:
            readonly.chmod(0o555)
            yield {"readonly": readonly, "full": "a full disk needs root (to mount a small tmpfs)"}
            return
        try:
            for folder in (readonly, full):
                mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
                subprocess.run(mount, check=True, capture_output=True)
                mounted.append(mount_id_of(folder))
            subprocess.run(["mount", "-o", "remount,ro", str(readonly)], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            reason = (getattr(exc, "stderr", b"") or str(exc).encode()).decode().strip()
            yield dict.fromkeys(("readonly", "full"), f"mounting a tmpfs is not permitted here: {reason}")
            return
        fill(full / "filler")
        yield {"readonly": readonly, "full": full}
    finally:
        for mount_id in mounted:  # by id: a concurrent pytest may have renamed the folder to garbage-*
            if (point := mount_point(mount_id)) is not None:
                subprocess.run(["umount", point], check=False, capture_output=True)
        readonly.chmod(0o755)


# ---------------------------------------------------------------------------------- outputs that cannot be written

# Every command that writes: (kind of output, argv with OUT where the output goes). The probe of the output comes
# before any heavy work, so the inputs only need to be plausible.
OUTPUTS = {
    "generate": ("dir", lambda f, out: small_args(f["ckpt"], out, f["examples"], "--samples", "1")),
    "preprocess": ("dir", lambda f, out: ["preprocess", f["flat"], out, "--ckpt-dir", f["ckpt"], "--quiet"]),
    "train": ("dir", lambda f, out: train_args(f["prepared"], out, "--steps", "1")),
    "eval": ("dir", lambda f, out: ["eval", f["flat"], f["flat"], "--out", out, "--quiet"]),
    "baseline": ("dir", lambda f, out: ["baseline", "repeat-last", f["flat"], out, "--quiet"]),
    "flatland make": (
        "dir",
        lambda f, out: ["flatland", "make", out, "--preset", "debug", "--samples", "1", "--quiet"],
    ),
    "demo": ("dir", lambda f, out: ["demo", "--out", out, "--samples", "1", "--no-video"]),
    "rollout": ("dir", lambda f, out: rollout_args(f, out)),
    "compare": ("file", lambda f, out: ["compare", f["reports"] / "a.json", f["reports"] / "b.json", "--out", out]),
    "cameras --out": ("file", lambda f, out: ["cameras", EXAMPLES / "cam1.json", "--out", out]),
    "cameras --plot": ("file", lambda f, out: ["cameras", EXAMPLES / "cam1.json", "--plot", out]),
    "export": ("file", lambda f, out: ["export", f["run"], "--out", out]),
}


def rollout_args(f, out) -> list:
    return ["rollout", "--video", f["examples"] / "1.mp4", "--cameras", f["examples"] / "cam1.json", "--prompt",
            "a car", "--ckpt-dir", f["ckpt"], "--out", out, "--height", "32", "--width", "32", "--context-frames",
            "9"]  # fmt: skip


PROBLEMS = {
    "readonly": ("read-only file system", "permission denied"),
    "full": ("no space left on device",),
    "existing file": ("exists and is not a directory",),
}


@pytest.fixture
def inputs(checkpoints, examples, flat, prepared, reports, run_dir):  # noqa: F811
    return {"ckpt": checkpoints, "examples": examples, "flat": flat, "prepared": prepared, "reports": reports,
            "run": run_dir}  # fmt: skip


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("command", list(OUTPUTS))
def test_an_unwritable_output_is_one_line_before_any_work(command, problem, inputs, disks, tmp_path, capsys):
    kind, argv = OUTPUTS[command]
    if problem == "existing file":
        where = tmp_path / "taken"
        where.write_text("not a folder")
        out = where if kind == "dir" else where / "out.json"
    else:
        if isinstance(disks[problem], str):
            pytest.skip(disks[problem])
        where = disks[problem]
        out = where / ("out" if kind == "dir" else "out.png")
    before = tree(where)
    code, stdout, err = run(capsys, *argv(inputs, out))
    assert code == EXIT_BAD_INPUT
    assert_one_line(err, out)
    assert any(words in err for words in PROBLEMS[problem]), err
    assert stdout == ""  # nothing was read, loaded or generated first
    assert tree(where) == before  # nothing left behind


def test_a_disk_that_fills_while_writing_is_one_line_and_no_partial_file(disks, tmp_path, capsys):
    """The probe passes, then the disk is full when the output is written: still one line, no temporary file."""
    if isinstance(disks["full"], str):
        pytest.skip(disks["full"])
    filler = disks["full"] / "filler"
    os.truncate(filler, filler.stat().st_size - 2 * 4096)  # room for the probe, not for a 100 KB plot
    try:
        before = tree(disks["full"])
        code, _, err = run(capsys, "cameras", EXAMPLES / "raw_ue_cam3.json", "--plot", disks["full"] / "path.png")
        assert code == EXIT_BAD_INPUT
        assert_one_line(err, disks["full"] / "path.png", "no space left on device")
        assert tree(disks["full"]) == before
    finally:
        fill(filler)


# ------------------------------------------------------------------------------------------------ the bad inputs

CASES = {}


def case(name: str, code: int = EXIT_BAD_INPUT, *, slow: bool = False):
    """Register a case: a function (fixtures, tmp_path) -> {"argv", "needles", "absent": [paths], "check": fn}."""

    def register(fn):
        CASES[name] = (fn, code, slow)
        return fn

    return register


def _ue_file(path: Path, frames: int = 5, *, bad: tuple[str, int, float] | None = None, text: str | None = None):
    cams = {key: {str(i): [[1, 0, 0, 100.0 * i], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]] for i in range(frames)}
            for key in ("cond_cam", "tgt_cam")}  # fmt: skip
    if bad is not None:
        key, frame, value = bad
        cams[key][str(frame)][0][3] = value
    path.write_text(text or json.dumps(cams))
    return path


@case("cameras: a position beyond the bound names the file and frame")
def _(f, tmp):
    cams = _ue_file(tmp / "cam.json", bad=("cond_cam", 3, 1e300))
    return {"argv": ["cameras", cams, "--out", tmp / "v.json"], "needles": [cams, '"cond_cam"/"3"', "MAX_POSITION_M"],
            "absent": [tmp / "v.json"]}  # fmt: skip


@case("cameras: a non-finite value names the file and frame")
def _(f, tmp):
    cams = _ue_file(tmp / "cam.json")
    cams.write_text(cams.read_text().replace("[1, 0, 0, 0.0]", "[1, 0, 0, 1e999]", 1))  # JSON reads 1e999 as inf
    return {"argv": ["cameras", cams, "--out", tmp / "v.json"], "needles": [cams, '"cond_cam"/"0"', "NaN or infinity"],
            "absent": [tmp / "v.json"]}  # fmt: skip


@case("cameras: --latent-stride 0")
def _(f, tmp):
    return {"argv": ["cameras", EXAMPLES / "cam1.json", "--latent-stride", "0"], "needles": ["--latent-stride"]}


@case("cameras: not JSON (already handled)")
def _(f, tmp):
    (tmp / "cam.json").write_text("{")
    return {"argv": ["cameras", tmp / "cam.json"], "needles": [tmp / "cam.json", "not valid JSON"]}


@case("cameras: --out names a folder")
def _(f, tmp):
    return {"argv": ["cameras", EXAMPLES / "cam1.json", "--out", tmp], "needles": ["--out", tmp, "is a directory"]}


def _video(path: Path, frames: int, size: int) -> Path:
    write_video(path, np.full((frames, size, size, 3), 90, np.uint8), crf=0)
    return path


def _single(f, tmp, video, *extra, cams=None, prompt="a red car"):
    args = small_args(f["ckpt"], tmp / "out", "--video", video, "--cameras", cams or f["examples"] / "cam1.json",
                      "--prompt", prompt, *extra)  # fmt: skip
    return args


@case("generate: a 1x1 video")
def _(f, tmp):
    video = _video(tmp / "tiny.mp4", 9, 1)
    return {"argv": _single(f, tmp, video), "needles": [video, "too small"], "absent": [tmp / "out"]}


@case("generate: a video with too few frames")
def _(f, tmp):
    video = _video(tmp / "short.mp4", 3, 32)
    return {"argv": _single(f, tmp, video), "needles": [video, "holds 3 frames", "--context-frames 9"],
            "absent": [tmp / "out"]}  # fmt: skip


@case("generate: an empty --prompt")
def _(f, tmp):
    return {"argv": _single(f, tmp, f["examples"] / "1.mp4", prompt=" "), "needles": ["--prompt"],
            "absent": [tmp / "out"]}  # fmt: skip


@case("generate: a sample without a caption")
def _(f, tmp):
    folder = tmp / "examples"
    shutil.copytree(f["examples"], folder)
    (folder / "caption.txt").write_text("a red car drives along the coast road\n\n")
    argv = small_args(f["ckpt"], tmp / "out", folder, "--samples", "2")
    return {"argv": argv, "needles": [folder / "2", "incomplete sample", "caption"], "absent": [tmp / "out"]}


@case("generate: missing checkpoint files (already handled)")
def _(f, tmp):
    argv = small_args(tmp / "nothing", tmp / "out", f["examples"])
    return {"argv": argv, "needles": ["Wan2.1_VAE.pth", "nothing is downloaded"], "absent": [tmp / "out"]}


def _hydra_ckpt(f, tmp, change) -> Path:
    state = torch.load(f["ckpt"] / "hydra.ckpt", weights_only=True)["state_dict"]
    path = tmp / "hydra.ckpt"
    torch.save(change(dict(state)), path)
    return path


@case("generate: NaN weights")
def _(f, tmp):
    ckpt = _hydra_ckpt(f, tmp, lambda s: {**s, "head.head.weight": torch.full_like(s["head.head.weight"], math.nan)})
    argv = small_args(f["ckpt"], tmp / "out", f["examples"], "--samples", "1", "--hydra-ckpt", ckpt)
    return {"argv": argv, "needles": [ckpt, "head.head.weight", "NaN"], "absent": [tmp / "out"]}


@case("generate: int32 weights")
def _(f, tmp):
    ckpt = _hydra_ckpt(f, tmp, lambda s: {**s, "head.head.bias": s["head.head.bias"].to(torch.int32)})
    argv = small_args(f["ckpt"], tmp / "out", f["examples"], "--samples", "1", "--hydra-ckpt", ckpt)
    return {"argv": argv, "needles": [ckpt, "head.head.bias", "dtype int32"], "absent": [tmp / "out"]}


@case("generate: a checkpoint holding pickled objects")
def _(f, tmp):
    ckpt = _hydra_ckpt(f, tmp, lambda s: {"state_dict": s, "note": fractions.Fraction(1, 3)})
    argv = small_args(f["ckpt"], tmp / "out", f["examples"], "--samples", "1", "--hydra-ckpt", ckpt)
    return {"argv": argv, "needles": [ckpt, "refused to load", "fractions.Fraction"], "absent": [tmp / "out"]}


def _truncated_wan(f, tmp) -> tuple[Path, Path]:
    folder = tmp / "wan"
    folder.mkdir()
    for entry in f["ckpt"].iterdir():
        (folder / entry.name).symlink_to(entry)
    (folder / "Wan2.1_VAE.pth").unlink()
    blob = (f["ckpt"] / "Wan2.1_VAE.pth").read_bytes()
    (folder / "Wan2.1_VAE.pth").write_bytes(blob[: len(blob) // 2])
    return folder, folder / "Wan2.1_VAE.pth"


@case("generate: a truncated VAE file")
def _(f, tmp):
    folder, vae = _truncated_wan(f, tmp)
    argv = small_args(folder, tmp / "out", f["examples"], "--samples", "1", "--hydra-ckpt", f["ckpt"] / "hydra.ckpt")
    return {"argv": argv, "needles": [vae, "truncated or corrupt"], "absent": [tmp / "out"]}


def _preprocess(f, tmp, source, *extra):
    return ["preprocess", source, tmp / "prepared", "--ckpt-dir", f["wan"], "--tokenizer", f["tokenizer"],
            "--vae-preset", "debug", "--text-encoder-preset", "debug", "--text-length", "16", "--device", "cpu",
            "--quiet", *extra]  # fmt: skip


@case("preprocess: --num-frames not 4k+1, refused before anything")
def _(f, tmp):
    argv = _preprocess(f, tmp, f["flat"], "--num-frames", "8")
    return {"argv": argv, "needles": ["--num-frames", "4k+1", "got 8"], "absent": [tmp / "prepared"]}


@case("preprocess: a truncated VAE file")
def _(f, tmp):
    folder, vae = _truncated_wan(f | {"ckpt": f["wan"]}, tmp)
    argv = _preprocess(f | {"wan": folder}, tmp, f["flat"])
    return {"argv": argv, "needles": [vae, "truncated or corrupt"], "absent": [tmp / "prepared"]}


@case("preprocess: an incomplete sample is skipped and listed", EXIT_SOME_FAILED)
def _(f, tmp):
    source = tmp / "source"
    shutil.copytree(f["flat"], source)
    (source / "sample_00001" / "tgt.mp4").unlink()
    (source / "sample_00001" / "camera.json").unlink()

    def check(out):
        failed = json.loads((tmp / "prepared" / "failed.json").read_text())
        assert failed == {"sample_00001": "incomplete sample: missing tgt.mp4, camera.json"}
        assert [p.name for p in (tmp / "prepared" / "samples").iterdir()] == ["sample_00000.safetensors"]
        assert "failed: sample_00001: incomplete sample: missing tgt.mp4, camera.json" in out

    return {"argv": _preprocess(f, tmp, source), "needles": ["1 of 2 samples", tmp / "prepared" / "failed.json"],
            "check": check}  # fmt: skip


@case("preprocess: every sample fails (clips the VAE cannot encode): named by clip", EXIT_SOME_FAILED)
def _(f, tmp):
    source = tmp / "source"
    shutil.copytree(f["flat"], source)
    for sample in source.glob("sample_*"):  # 3 frames: not 4k+1, and no --num-frames to cut them
        for clip in ("cond", "tgt"):
            write_video(sample / f"{clip}.mp4", read_frames(sample / f"{clip}.mp4")[:3], crf=0, pix_fmt="yuv444p")

    def check(out):
        failed = json.loads((tmp / "prepared" / "failed.json").read_text())
        assert sorted(failed) == ["sample_00000", "sample_00001"]
        reason = failed["sample_00000"]
        assert str(source / "sample_00000") in reason and "context clip (cond.mp4): VAE encode: got 3 frames" in reason

    return {"argv": _preprocess(f, tmp, source), "needles": ["2 of 2 samples", "failed.json"], "check": check}


@case("train: a truncated sample is found before step 0")
def _(f, tmp):
    source = tmp / "prepared"
    shutil.copytree(f["prepared"], source)
    sample = source / "samples" / "s2.safetensors"
    sample.write_bytes(sample.read_bytes()[:-100])
    return {"argv": train_args(source, tmp / "run", "--steps", "2"), "needles": [sample, "truncated"],
            "absent": [tmp / "run"]}  # fmt: skip


@case("train: an option out of range (already handled)")
def _(f, tmp):
    return {"argv": train_args(f["prepared"], tmp / "run", "--steps", "0"), "needles": ["steps"],
            "absent": [tmp / "run"]}  # fmt: skip


@case("export: a safetensors file that is not a training checkpoint")
def _(f, tmp):
    save_file({"x": torch.zeros(2)}, str(tmp / "model.safetensors"))
    argv = ["export", tmp / "model.safetensors", "--out", tmp / "out.safetensors"]
    return {"argv": argv, "needles": [tmp / "model.safetensors", "'hydra_wm_train_state'", "hydra-wm train"],
            "absent": [tmp / "out.safetensors"]}  # fmt: skip


def _predictions(f, tmp, scale: int) -> Path:
    pred = tmp / "pred"
    for name in ("sample_00000", "sample_00001"):
        frames = np.concatenate([read_frames(f["flat"] / name / f"{clip}.mp4") for clip in ("cond", "tgt")])
        write_video(pred / f"{name}.mp4", frames.repeat(scale, 1).repeat(scale, 2), crf=0, pix_fmt="yuv444p")
    return pred


@case("eval: a prediction of another size is refused, not resized silently")
def _(f, tmp):
    pred = _predictions(f, tmp, 2)
    return {"argv": ["eval", pred, f["flat"], "--quiet"], "needles": [pred / "sample_00000.mp4", "32x48", "--resize"],
            "absent": [pred / "eval"]}  # fmt: skip


@case("eval: frames too small for SSIM name the prediction")
def _(f, tmp):
    gt, pred = tmp / "gt", tmp / "pred"
    for clip in ("cond", "tgt"):
        _video(gt / "tiny" / f"{clip}.mp4", 3, 4)
    shutil.copy(gt / "tiny" / "tgt.mp4", _video(pred / "tiny.mp4", 3, 4))
    return {"argv": ["eval", pred, gt, "--quiet"], "needles": [pred / "tiny.mp4", "ssim", "4x4"],
            "absent": [pred / "eval"]}  # fmt: skip


@case("eval: a missing prediction (already handled)")
def _(f, tmp):
    (tmp / "pred").mkdir()
    return {"argv": ["eval", tmp / "pred", f["flat"], "--quiet"], "needles": [tmp / "pred", "sample_00000"],
            "absent": [tmp / "pred" / "eval"]}  # fmt: skip


@case("compare: a non-numeric value")
def _(f, tmp):
    report = json.loads((f["reports"] / "b.json").read_text())
    report["per_sample"][1]["metrics"]["psnr"] = "21 dB"
    (tmp / "b.json").write_text(json.dumps(report))
    argv = ["compare", f["reports"] / "a.json", tmp / "b.json", "--out", tmp / "cmp.json"]
    return {"argv": argv, "needles": [tmp / "b.json", "'s1'", "'psnr'", "'21 dB'"], "absent": [tmp / "cmp.json"]}


@case("baseline: a bad sample does not stop the others", EXIT_SOME_FAILED)
def _(f, tmp):
    source = tmp / "source"
    shutil.copytree(f["flat"], source)
    (source / "sample_00000" / "cond.mp4").write_bytes(b"not a video")

    def check(out):
        assert sorted(p.name for p in (tmp / "pred").iterdir()) == ["failed.json", "sample_00001.mp4"]
        failed = json.loads((tmp / "pred" / "failed.json").read_text())
        assert list(failed) == ["sample_00000"] and str(source / "sample_00000" / "cond.mp4") in failed["sample_00000"]
        assert "failed: sample_00000" in out

    return {"argv": ["baseline", "repeat-last", source, tmp / "pred", "--quiet"],
            "needles": ["1 of 2 samples", tmp / "pred" / "failed.json"], "check": check}  # fmt: skip


@case("flatland make: a folder holding other files (already handled)")
def _(f, tmp):
    (tmp / "set").mkdir()
    (tmp / "set" / "notes.txt").write_text("mine")
    return {"argv": ["flatland", "make", tmp / "set", "--preset", "debug", "--samples", "1", "--quiet"],
            "needles": [tmp / "set", "not empty", "--overwrite"]}  # fmt: skip


@case("demo: --samples 0")
def _(f, tmp):
    return {
        "argv": ["demo", "--samples", "0", "--out", tmp / "demo"],
        "needles": ["--samples"],
        "absent": [tmp / "demo"],
    }


@case("parity: a missing fixture")
def _(f, tmp):
    return {"argv": ["parity", tmp / "nothing"], "needles": [tmp / "nothing_io.safetensors", "not found"]}


@pytest.fixture
def case_inputs(checkpoints, examples, flat, prepared, reports, ckpt_dir, tokenizer_dir):  # noqa: F811
    return {"ckpt": checkpoints, "examples": examples, "flat": flat, "prepared": prepared, "reports": reports,
            "wan": ckpt_dir, "tokenizer": tokenizer_dir}  # fmt: skip


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if CASES[n][2] else []) for n in CASES])
def test_bad_input(name, case_inputs, tmp_path, capsys):
    build, code, _ = CASES[name]
    spec = build(case_inputs, tmp_path)
    got, out, err = run(capsys, *spec["argv"])
    assert got == code, (got, out, err)
    assert_one_line(err, *spec["needles"])
    for path in spec.get("absent", []):
        assert not Path(path).exists(), f"{path} left behind"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name], "temporary files left behind"
    if "check" in spec:
        spec["check"](out)


# ----------------------------------------------------------------------------------------- stops, resumes, modes


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_train_stopped_by_a_signal_saves_and_exits_128_plus_signal(signum, prepared, tmp_path, monkeypatch, capsys):
    reads = []
    original = sample_format.read_sample

    def read_and_signal(path):
        reads.append(path)
        if len(reads) == 4:  # during step 2: the setup reads 1 sample, step 1 reads 2
            os.kill(os.getpid(), signum)
        return original(path)

    monkeypatch.setattr(sample_format, "read_sample", read_and_signal)
    code, out, err = run(capsys, *train_args(prepared, tmp_path / "run", "--steps", "50"))
    assert code == 128 + signum and err == ""
    assert "stopped by signal at step 2" in out
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_00000002.safetensors"]
    monkeypatch.setattr(sample_format, "read_sample", original)
    code, out, _ = run(
        capsys, *train_args(prepared, tmp_path / "run", "--steps", "50", "--stop-after", "3", "--resume")
    )
    assert code == 0 and "resumed from" in out and "step 3" in out


@pytest.mark.slow
def test_train_process_stopped_by_sigterm(prepared, tmp_path):
    """A real process and a real SIGTERM, as a cluster's time limit sends it."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "hydra_wm", *map(str, train_args(prepared, out, "--steps", "100000", "--log-every",
                                                                      "1"))]  # fmt: skip
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if line.startswith("step 2 "):
                break
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by signal" in stdout and "Traceback" not in stderr
    assert list((out / "checkpoints").glob("step_*.safetensors"))
    assert not list((out / "checkpoints").glob(".*"))


def test_resume_falls_back_from_a_truncated_checkpoint(run_dir, prepared, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    latest = out / "checkpoints" / "step_00000002.safetensors"
    latest.write_bytes(latest.read_bytes()[:-1000])  # a copy cut short
    code, stdout, err = run(capsys, *train_args(prepared, out, "--steps", "6", "--stop-after", "3", "--resume"))
    assert code == 0, err
    assert_one_line(err, latest, "truncated", "step_00000001.safetensors")  # one warning line, then on
    assert "step_00000001.safetensors at step 1" in stdout


def test_resume_accepts_the_same_folder_spelled_another_way(run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "nested" / "run"
    shutil.copytree(run_dir, out)
    source = os.path.relpath(json.loads((out / "config.json").read_text())["data"], tmp_path / "nested")
    monkeypatch.chdir(tmp_path / "nested")  # the run was started with an absolute --out; resume it as "run"
    code, stdout, err = run(capsys, *train_args(source, "run", "--steps", "6", "--stop-after", "3", "--resume"))
    assert code == 0, err
    assert "resumed from" in stdout and "at step 2" in stdout


def test_flatland_make_resumes_after_a_kill(tmp_path, monkeypatch, capsys):
    import hydra_wm.flatland.dataset as dataset

    out = tmp_path / "set"
    argv = ["flatland", "make", out, "--preset", "debug", "--samples", "3", "--seed", "4", "--quiet"]
    original, written = dataset.write_sample, []

    def killed_after_two(folder, clip, config):
        if len(written) == 2:
            (folder.parent / f".{folder.name}.abcd.tmp").mkdir()  # what a SIGKILL mid-sample leaves
            raise KeyboardInterrupt
        written.append(folder.name)
        original(folder, clip, config)

    monkeypatch.setattr(dataset, "write_sample", killed_after_two)
    code, _, err = run(capsys, *argv)
    assert code == 128 + signal.SIGINT and err == "hydra-wm flatland make: interrupted\n"
    assert sorted(p.name for p in out.iterdir()) == [".sample_00002.abcd.tmp", "flatland.json", "sample_00000",
                                                     "sample_00001"]  # fmt: skip
    monkeypatch.setattr(dataset, "write_sample", original)
    kept = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("sample_*/cond.mp4")}
    code, _, _ = run(capsys, *argv)  # the same command again: resumes
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["caption.txt", "flatland.json", "sample_00000", "sample_00001",
                                                     "sample_00002"]  # fmt: skip
    assert {name: (out / name / "cond.mp4").stat().st_mtime_ns for name in kept} == kept  # finished ones kept
    assert json.loads((out / "flatland.json").read_text())["complete"] is True
    reference = tmp_path / "reference"
    assert (
        run(capsys, "flatland", "make", reference, "--preset", "debug", "--samples", "3", "--seed", "4", "--quiet")[0]
        == 0
    )
    assert (out / "caption.txt").read_text() == (reference / "caption.txt").read_text()
    # other settings into the stopped set: refused unless --overwrite
    code, _, err = run(capsys, *argv[:-2], "5", "--quiet")
    assert code == EXIT_BAD_INPUT and "other settings" in err
    # a set stopped by an older version (no flatland.json) is overwritable
    (out / "flatland.json").unlink()
    (out / "caption.txt").unlink()
    assert run(capsys, *argv, "--overwrite")[0] == 0


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_and_folders_honour_the_umask(umask, tmp_path, capsys):
    previous = os.umask(umask)
    try:
        out = tmp_path / "set"
        assert run(capsys, "flatland", "make", out, "--preset", "debug", "--samples", "1", "--quiet")[0] == 0
        assert run(capsys, "cameras", EXAMPLES / "cam1.json", "--out", tmp_path / "cams.json")[0] == 0
        with atomic_path(tmp_path / "model.safetensors") as tmp:  # how every weights writer saves
            save_file({"x": torch.zeros(2)}, str(tmp))  # which recreates the file 0600
    finally:
        os.umask(previous)
    written = [out / "sample_00000", out / "sample_00000" / "cond.mp4", out / "caption.txt", tmp_path / "cams.json"]
    for path in [*written, tmp_path / "model.safetensors"]:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == expected, (path, oct(path.stat().st_mode))


def test_cameras_out_is_finite_and_reads_back(tmp_path, capsys):
    cams = _ue_file(tmp_path / "cam.json", bad=("tgt_cam", 2, 9.9e6))  # 99 km: inside the bound
    assert run(capsys, "cameras", cams, "--out", tmp_path / "v.json")[0] == 0
    text = (tmp_path / "v.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert run(capsys, "cameras", tmp_path / "v.json")[0] == 0


@pytest.mark.slow
def test_demo_rerun_removes_the_earlier_runs_extra_files(tmp_path, capsys):
    out = tmp_path / "demo"
    (tmp_path / "demo").mkdir()
    (out / "notes.txt").write_text("mine")
    assert run(capsys, "demo", "--out", out, "--samples", "2", "--steps", "1")[0] == 0
    assert {"sample_00001.mp4", "sample_00001_retrieval.png"} <= {p.name for p in out.iterdir()}
    assert run(capsys, "demo", "--out", out, "--samples", "1", "--steps", "1", "--no-video")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["data", "metrics.json", "notes.txt", "pred"]
    assert [p.name for p in (out / "pred").iterdir()] == ["sample_00000.mp4"]
    assert [p.name for p in (out / "data").iterdir() if p.is_dir()] == ["sample_00000"]


def test_demo_logit_scale_softens_the_shipped_model_and_says_so(tmp_path, capsys):
    code, _, err = run(capsys, "demo", "--logit-scale", "0", "--out", tmp_path / "bad")
    assert code == 2 and "--logit-scale" in err and "Traceback" not in err and not (tmp_path / "bad").exists()
    reports = {}
    for scale in ("1", "0.5"):
        out = tmp_path / f"s{scale}"
        code, text, _ = run(capsys, "demo", "--logit-scale", scale, "--samples", "1", "--steps", "2", "--no-video",
                            "--out", out)  # fmt: skip
        assert code == 0 and ("HyDRA, logits x0.5" in text) == (scale == "0.5")
        reports[scale] = json.loads((out / "metrics.json").read_text())
    assert reports["0.5"]["attention_logit_scale"] == 0.5 and reports["1"]["attention_logit_scale"] == 1.0
    assert reports["0.5"]["mean"]["psnr"] != reports["1"]["mean"]["psnr"]


def test_demo_view_snap_follows_the_card_and_the_flag(tmp_path, capsys):
    for bad in (("--view-snap", "-1"), ("--view-snap", "-0.5", "--rollout", "2")):
        code, _, err = run(capsys, "demo", *bad, "--out", tmp_path / "bad")
        assert code == 2 and "--view-snap" in err and "Traceback" not in err and not (tmp_path / "bad").exists()
    reports = {}
    for flag in ((), ("--view-snap", "0")):
        out = tmp_path / f"s{len(flag)}"
        code, text, _ = run(capsys, "demo", *flag, "--samples", "1", "--steps", "4", "--no-video", "--out", out)
        assert code == 0 and ("view snap 1" in text) == (not flag)  # the shipped card snaps at 1
        reports[flag] = json.loads((out / "metrics.json").read_text())
    assert reports[()]["view_snap"] == 1.0 and reports[("--view-snap", "0")]["view_snap"] == 0.0
    snapped, plain = reports[()]["mean"], reports[("--view-snap", "0")]["mean"]
    assert snapped["background_psnr"] > plain["background_psnr"] + 3  # (at 20 steps, the card: 38.6 vs 22.6 dB)


@pytest.mark.slow
def test_a_model_exported_as_pth_loads_back_in_demo(tmp_path, capsys):
    """An exported .pth/.ckpt carries its config: load_dit and `demo --weights` need no extra flag."""
    from hydra_wm.flatland.model import load_flatland_model
    from hydra_wm.training.checkpoint import export_model
    from hydra_wm.training.loop import _export_metadata
    from hydra_wm.training.parallel import DistInfo

    shipped = load_flatland_model("memory")
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    path = export_model(shipped.dit, tmp_path / "memory.pth", info, metadata=_export_metadata(shipped.dit))
    shutil.copy(shipped.path.with_suffix(".json"), tmp_path / "memory.json")
    state, metadata = read_state_dict(path)
    assert METADATA_KEY not in state and metadata["num_heads"] == str(shipped.dit.cfg.num_heads)
    code, out, err = run(capsys, "demo", "--weights", path, "--samples", "1", "--steps", "1", "--no-video",
                         "--out", tmp_path / "demo")  # fmt: skip
    assert code == 0 and "Traceback" not in err and "memory.pth (HyDRA, view snap 1," in out  # the card came along


# --------------------------------------------------------------------------------------------- the small things


def test_version(capsys):
    from hydra_wm import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"hydra-wm {__version__}\n"


def test_a_closed_pipe_is_no_traceback():
    """`hydra-wm cameras ... | head -1`: the reader goes away; the exit is quiet (128 + SIGPIPE)."""
    argv = [sys.executable, "-m", "hydra_wm", "cameras", str(EXAMPLES / "raw_ue_cam3.json"), "--latent-stride", "1"]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the process writes anything
    _, stderr = process.communicate(timeout=120)
    assert stderr == b"" and process.returncode == 128 + signal.SIGPIPE


def test_the_preprocess_bar_reaches_n_of_n(flat, tmp_path, capsys):
    from hydra_wm.data import HMWorldDataset

    preprocess(HMWorldDataset(flat, load_masks=False), tmp_path, pixel_encoders(), progress=True)
    assert "2/2" in capsys.readouterr().err
