"""Non-learned baselines: camera distances with known answers, and the videos they write (generate's layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hydra_wm.cli import main
from hydra_wm.data.cameras import closest_context_frames, frame_poses, pose_distance
from hydra_wm.data.video import read_frames
from hydra_wm.evaluation.baselines import run_baseline
from hydra_wm.flatland import flatland_config, render_clip, write_dataset


def _pose(yaw_deg: float, position=(0.0, 0.0, 0.0)) -> np.ndarray:
    yaw = np.deg2rad(yaw_deg)
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:3, 3] = position
    return pose


@pytest.fixture(scope="module")
def flatland(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines") / "flatland"
    write_dataset(root, flatland_config("debug"), 2, seed=5, progress=False)
    return root


def test_pose_distance_and_closest_frame():
    # 90 degrees of yaw plus 1 m of translation at the default 10 degrees per metre
    assert pose_distance(_pose(0.0), _pose(90.0, (1.0, 0.0, 0.0))) == pytest.approx(100.0)
    assert pose_distance(_pose(30.0), _pose(30.0)) == pytest.approx(0.0, abs=1e-6)
    context = np.stack([_pose(y) for y in (0.0, 20.0, 40.0, 20.0)])
    target = np.stack([_pose(y) for y in (19.0, 38.0, -5.0, 20.0)])
    # 19 → 20 degrees (frames 1 and 3 tie: the latest wins), 38 → 40, -5 → 0, 20 → 3 (tie, latest)
    assert closest_context_frames(context, target).tolist() == [3, 2, 0, 3]
    # a camera 2 m away at the same angle loses against one 5 degrees off at the same place
    far = np.stack([_pose(0.0, (2.0, 0.0, 0.0)), _pose(5.0)])
    assert closest_context_frames(far, _pose(0.0)[None]).tolist() == [1]
    assert closest_context_frames(far, _pose(0.0)[None], deg_per_metre=1.0).tolist() == [0]


def test_frame_poses_spread_poses_over_frames():
    poses = np.stack([_pose(float(y)) for y in range(5)])
    assert frame_poses(poses, 5) is poses
    picked = frame_poses(poses, 9)  # video frame i → pose round(i * 4 / 8)
    assert [round(np.degrees(np.arctan2(p[1, 0], p[0, 0]))) for p in picked] == [0, 0, 1, 2, 2, 2, 3, 4, 4]


def test_repeat_last_writes_context_then_frozen_frames(flatland, tmp_path):
    names = run_baseline("repeat-last", flatland, tmp_path, progress=False)
    assert names == ["sample_00000", "sample_00001"]
    for name in names:
        video, context = read_frames(tmp_path / f"{name}.mp4"), read_frames(flatland / name / "cond.mp4")
        assert len(video) == len(context) + len(read_frames(flatland / name / "tgt.mp4"))
        assert np.array_equal(video[: len(context)], context)  # lossless
        assert (video[len(context) :] == context[-1]).all()


def test_closest_camera_copies_the_frame_with_the_nearest_yaw(flatland, tmp_path):
    run_baseline("closest-camera", flatland, tmp_path, progress=False)
    for name in ("sample_00000", "sample_00001"):
        video, context = read_frames(tmp_path / f"{name}.mp4"), read_frames(flatland / name / "cond.mp4")
        truth = json.loads((flatland / name / "truth.json").read_text())
        for t, frame in enumerate(video[len(context) :]):
            copied = [c for c in range(len(context)) if np.array_equal(frame, context[c])]
            assert copied, f"{name}: target frame {t} is no context frame"
            # the copied frame's yaw is the nearest to the target yaw (Flatland turns about one axis only)
            gaps = np.abs((np.array(truth["cond"]["yaw_deg"]) - truth["tgt"]["yaw_deg"][t] + 180.0) % 360.0 - 180.0)
            assert gaps[copied[0]] == pytest.approx(gaps.min(), abs=1e-6)


def test_baseline_command(flatland, tmp_path, capsys):
    assert main(["baseline", "repeat-last", str(flatland), str(tmp_path / "out"), "--quiet"]) == 0
    assert "wrote 2 repeat-last predictions" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sample_00000.mp4", "sample_00001.mp4"]
    assert main(["baseline", "repeat-last", str(tmp_path / "nothing"), str(tmp_path / "out2"), "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_oracles_render_the_clip_again_with_the_subjects_stopped_or_walking_on(flatland, tmp_path, capsys):
    config = flatland_config("debug")
    for kind, motion in (("oracle-frozen", "frozen"), ("oracle-walk-on", "walk-on")):
        assert run_baseline(kind, flatland, tmp_path / kind, progress=False) == ["sample_00000", "sample_00001"]
        for index, name in enumerate(("sample_00000", "sample_00001")):
            video, context = read_frames(tmp_path / kind / f"{name}.mp4"), read_frames(flatland / name / "cond.mp4")
            assert np.array_equal(video[: len(context)], context)
            expected = render_clip(config, 5, index, subject_motion=motion).frames[len(context) :]
            assert np.abs(video[len(context) :].astype(int) - expected).max() <= 1  # lossless up to YUV rounding
    # not a Flatland set: one line naming the file it needs
    other = tmp_path / "other"
    (other / "sample_00000").mkdir(parents=True)
    for item in ("cond.mp4", "tgt.mp4", "camera.json", "character.json"):
        (other / "sample_00000" / item).write_bytes((flatland / "sample_00000" / item).read_bytes())
    assert main(["baseline", "oracle-frozen", str(other), str(tmp_path / "out"), "--quiet"]) == 3
    out = capsys.readouterr().out
    assert "flatland.json: file not found" in out and "sample_00000" in out


def test_eval_scores_the_closest_camera_copy_as_a_stale_copy(flatland, tmp_path):
    # Copying the aligned context view draws every subject exactly where that view showed it: stale presence 1.
    # The oracle that walks the subjects on draws them where they are (the truth wherever no subject turns later).
    for kind in ("closest-camera", "oracle-walk-on"):
        run_baseline(kind, flatland, tmp_path / kind, progress=False)
        assert main(["eval", str(tmp_path / kind), str(flatland), "--quiet"]) == 0
    copy = json.loads((tmp_path / "closest-camera" / "eval" / "metrics.json").read_text())
    walk = json.loads((tmp_path / "oracle-walk-on" / "eval" / "metrics.json").read_text())
    defined = [s["metrics"] for s in copy["per_sample"] if s["metrics"].get("stale_presence") is not None]
    assert defined, "no frame where both the truth and the aligned view show a subject"
    assert all(m["stale_presence"] == pytest.approx(1.0) for m in defined)
    assert copy["mean"]["stale_presence_truth"] < 1.0  # the subjects moved since
    assert walk["mean"]["stale_presence_truth"] > walk["mean"]["stale_presence"]
