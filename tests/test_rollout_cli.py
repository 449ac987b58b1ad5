"""`hydra-wm rollout` and `HydraPipeline.rollout` on the CPU with tiny checkpoints in the published file formats:
one chunk equals `generate` bit for bit, 3 chunks (the last shorter) through the command, an interrupted rollout
resumed to the same frames, and bad camera files refused in one line with nothing written."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from test_generate_cli import checkpoints, examples  # noqa: F401 - fixtures: tiny Wan2.1 files, a 9-frame clip

from hydra_wm import cli
from hydra_wm.cli import main
from hydra_wm.data.cameras import latent_frame_indices, load_pose_streams, load_relative_cameras
from hydra_wm.data.video import count_frames, read_video
from hydra_wm.flatland.world import ue_yaw_matrices
from hydra_wm.pipeline import GenerationConfig, HydraPipeline, Rollout, RolloutSample, Sample
from hydra_wm.rollout import RolloutConfig

SIZE, CONTEXT, CHUNK, TARGET = 32, 9, 9, 23  # 23 target frames: chunks of 9, 9 and a shorter last one of 5
PROMPT = "a red car drives along the coast road"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def only_rollout_command(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["hydra_wm.commands.rollout"])


def ue_matrices(frames: int, start: float = 0.0) -> list:
    """UE camera-to-world matrices (cm) of a camera turning 7 degrees a frame."""
    return ue_yaw_matrices(start + 7.0 * np.arange(frames), np.array([120.0, -40.0, 170.0])).tolist()


def write_cameras(path, context: int = CONTEXT, target: int = TARGET, *, nan_at: int | None = None):
    poses = ue_matrices(context + target)
    if nan_at is not None:
        poses[nan_at][0][3] = float("nan")
    streams = {"cond_cam": poses[:context], "tgt_cam": poses[context:]}
    path.write_text(json.dumps({key: {str(i): m for i, m in enumerate(v)} for key, v in streams.items()}))
    return path


@pytest.fixture(scope="module")
def cameras(tmp_path_factory):
    return write_cameras(tmp_path_factory.mktemp("cams") / "path.json")


def rollout_args(checkpoints, examples, cameras, out, *extra):  # noqa: F811 - fixtures passed in
    return ["rollout", "--video", str(examples / "1.mp4"), "--cameras", str(cameras), "--prompt", PROMPT,
            "--ckpt-dir", str(checkpoints), "--hydra-ckpt", str(checkpoints / "hydra.ckpt"), "--out", str(out),
            "--height", str(SIZE), "--width", str(SIZE), "--context-frames", str(CONTEXT), "--chunk-frames",
            str(CHUNK), "--recent-frames", "2", "--memory-frames", "2", "--steps", "1", "--cfg", "1",
            "--device", "cpu", "--no-progress", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def finished(checkpoints, examples, cameras, tmp_path_factory):  # noqa: F811
    """An uninterrupted 3-chunk rollout through the command."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rollout") / "out"
    try:
        assert main(rollout_args(checkpoints, examples, cameras, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def bank_latents(out) -> list[torch.Tensor]:
    names = ["condition", "chunk_0000", "chunk_0001", "chunk_0002"]
    tensors = []
    for name in names:
        with safe_open(str(out / "bank" / f"{name}.safetensors"), "pt") as f:
            tensors.append(f.get_tensor("latents"))
    return tensors


def test_one_chunk_rollout_equals_generate_bit_for_bit(checkpoints, examples, cameras, tmp_path):  # noqa: F811
    config = GenerationConfig(height=SIZE, width=SIZE, context_frames=CONTEXT, target_frames=CHUNK, num_steps=2)
    pipeline = HydraPipeline.from_pretrained(checkpoints, checkpoints / "hydra.ckpt", device="cpu", offload="none")
    video = read_video(examples / "1.mp4", CONTEXT, SIZE, SIZE)
    cam_context, cam_target = load_relative_cameras(write_cameras(tmp_path / "generate.json", target=CHUNK))
    [expected] = pipeline([Sample("1", PROMPT, video, cam_context, cam_target)], config, progress=False)
    streams = load_pose_streams(cameras)
    sample = RolloutSample("1", PROMPT, video, streams.context[latent_frame_indices(CONTEXT)])
    rollout = pipeline.rollout(sample, config, RolloutConfig(chunk_frames=CHUNK), progress=False)
    chunk = rollout.step(streams.target[:CHUNK:4])
    assert torch.equal(chunk.latents, expected.target_latents)
    assert torch.equal(torch.cat([video, chunk.video], dim=1), expected.video)


def test_three_chunks_through_the_command_with_a_shorter_last_one(finished):
    assert [count_frames(finished / "chunks" / f"chunk_{i:04d}.mp4") for i in range(3)] == [9, 9, 5]
    assert count_frames(finished / "1.mp4") == CONTEXT + TARGET
    records = json.loads((finished / "retrieval.json").read_text())
    assert [r["dit_frames"] for r in records] == [6, 7, 6]  # 3 condition latents, then 2 recent + 2 selected
    assert records[1]["recent"] == [4, 5] and len(records[1]["selected"]) == 2
    assert (finished / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((finished / "rollout.json").read_text())["complete"] is True
    assert [t.shape[2] for t in bank_latents(finished)] == [3, 3, 3, 2]
    assert not list(finished.rglob(".*tmp*"))


def test_interrupted_rollout_resumes_to_the_same_frames(
    checkpoints,  # noqa: F811
    examples,  # noqa: F811
    cameras,
    finished,
    tmp_path,
    monkeypatch,
    capsys,
):
    out = tmp_path / "out"
    step, calls = Rollout.step, []

    def stop_at_second_chunk(self, poses):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return step(self, poses)

    monkeypatch.setattr(Rollout, "step", stop_at_second_chunk)
    assert main(rollout_args(checkpoints, examples, cameras, out)) == 130
    assert sorted(p.name for p in (out / "bank").iterdir()) == ["chunk_0000.safetensors", "condition.safetensors"]
    monkeypatch.setattr(Rollout, "step", step)
    assert main(rollout_args(checkpoints, examples, cameras, out)) == 0
    assert "resuming after chunk 0" in capsys.readouterr().out
    for resumed, whole in zip(bank_latents(out), bank_latents(finished), strict=True):
        assert torch.equal(resumed, whole)
    assert json.loads((out / "retrieval.json").read_text()) == json.loads((finished / "retrieval.json").read_text())
    # other settings into the same folder: refused without --overwrite
    assert main(rollout_args(checkpoints, examples, cameras, out, "--seed", "7")) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "extra", "nan_at", "message"),
    [
        (TARGET, ["--frames", "40"], None, "the target path has 23 poses; --frames 40 needs 40"),
        (22, [], None, "last chunk would hold 4 frames, not 4k+1"),
        (TARGET, [], 12, "NaN or infinity"),
        (TARGET, ["--context-frames", "13"], None, "the condition clip has 9 poses; --context-frames 13 needs 13"),
        (TARGET, ["--memory-frames", "3"], None, "memory_frames 3: expected a multiple of the memory tokenizer's 2"),
    ],
)
def test_bad_camera_files_give_one_line_and_write_nothing(
    checkpoints,  # noqa: F811
    examples,  # noqa: F811
    tmp_path,
    capsys,
    target,
    extra,
    nan_at,
    message,
):
    cameras = write_cameras(tmp_path / "bad.json", target=target, nan_at=nan_at)
    out = tmp_path / "out"
    assert main(rollout_args(checkpoints, examples, cameras, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_plain_list_of_poses_splits_at_the_condition_clip(tmp_path):
    from hydra_wm.commands.rollout import trajectory

    path = tmp_path / "list.json"
    path.write_text(json.dumps(ue_matrices(CONTEXT + TARGET)))
    config = GenerationConfig(height=SIZE, width=SIZE, context_frames=CONTEXT, target_frames=CHUNK)
    context, chunks, plan = trajectory(str(path), config, RolloutConfig(chunk_frames=CHUNK), None)
    assert context.shape == (3, 4, 4) and plan == [9, 9, 5] and [len(c) for c in chunks] == [3, 3, 2]
    same = trajectory(str(write_cameras(tmp_path / "streams.json")), config, RolloutConfig(chunk_frames=CHUNK), None)
    assert torch.equal(context, same[0]) and all(torch.equal(a, b) for a, b in zip(chunks, same[1], strict=True))


def test_relative_vectors_split_into_chunks_of_latent_frames(tmp_path):
    from hydra_wm.commands.rollout import trajectory
    from hydra_wm.errors import InputError

    vector = lambda x: [1, 0, 0, x, 0, 1, 0, 0, 0, 0, 1, 0]  # noqa: E731
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps({"context_camera": [vector(-i) for i in range(4)],
                                "video_camera": [vector(i) for i in range(7)]}))  # fmt: skip
    config = GenerationConfig(height=SIZE, width=SIZE, context_frames=CONTEXT, target_frames=CHUNK)
    context, chunks, plan = trajectory(str(path), config, RolloutConfig(chunk_frames=CHUNK), None)
    assert context.shape == (3, 4, 4) and [len(c) for c in chunks] == [3, 3, 1] and plan == [9, 9, 1]
    with pytest.raises(InputError, match="--frames needs 4x4 poses"):
        trajectory(str(path), config, RolloutConfig(chunk_frames=CHUNK), 9)
