"""HM-World reader: example layout, a tiny published-layout folder, masks, boxes, captions, events."""

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import EXAMPLES

from hydra_wm.data import HMWorldDataset, read_check_events, red_mask, subject_boxes
from hydra_wm.data.cameras import load_relative_cameras
from hydra_wm.data.hmworld import map_captions, read_visibility_changes, subject_mask
from hydra_wm.data.video import write_video
from hydra_wm.errors import InputError

SIZE, FRAMES = 64, 8
CONDITION_BOX = (16, 32, 8, 40)  # rows y0:y1, columns x0:x1 (even-aligned so 4:2:0 chroma keeps the edges)
TARGET_BOX = (32, 48, 24, 56)


def _mask_video(box, visible) -> np.ndarray:
    """uint8 [T, H, W, 3]: black, the subject red in `visible` frames, plus distractors that are not red."""
    frames = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    frames[:, 50:60, 2:12] = (255, 140, 0)  # orange
    frames[:, 2:12, 50:60] = (90, 0, 0)  # dark red, below the value threshold
    y0, y1, x0, x1 = box
    frames[visible, y0:y1, x0:x1] = (255, 0, 0)
    return frames


def _rgb_video(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def hm_world(tmp_path_factory):
    """sample1: every file (raw UE camera dump); sample2: condition clip and cond_cam/tgt_cam cameras only."""
    root = tmp_path_factory.mktemp("hm_world")
    one, two = root / "sample1", root / "sample2"
    one.mkdir()
    two.mkdir()
    write_video(one / "cond.mp4", _rgb_video(0), crf=0)
    write_video(one / "tgt.mp4", _rgb_video(1), crf=0)
    write_video(one / "cond_mask.mp4", _mask_video(CONDITION_BOX, slice(0, 4)), crf=0)  # exits at frame 4
    write_video(one / "tgt_mask.mp4", _mask_video(TARGET_BOX, slice(5, 8)), crf=0)  # re-enters at frame 5
    shutil.copy(EXAMPLES / "raw_ue_cam3.json", one / "camera.json")
    (one / "character.json").write_text(json.dumps({"name": "knight", "poses": [[0.0, 1.0, 2.0]]}))
    (one / "check.json").write_text(json.dumps({"exit_frame": 4, "enter_frame": 13}))
    write_video(two / "cond.mp4", _rgb_video(2), crf=0)
    shutil.copy(EXAMPLES / "cam1.json", two / "camera.json")
    (two / "check.json").write_text(json.dumps([{"type": "exit", "frame": 3}, {"type": "enter", "frame": 20}]))
    (root / "caption.txt").write_text("a knight walks away\na woman on a rooftop\n")
    return root


def test_published_layout(hm_world):
    dataset = HMWorldDataset(hm_world, num_frames=FRAMES)
    assert dataset.layout == "hm_world" and dataset.names == ["sample1", "sample2"] and len(dataset) == 2
    one = dataset[0]
    assert one.caption == "a knight walks away"
    assert one.condition.shape == one.target.shape == (3, FRAMES, SIZE, SIZE)
    assert one.condition.min() >= -1 and one.condition.max() <= 1
    expected = load_relative_cameras(EXAMPLES / "raw_ue_cam3.json")
    assert torch.equal(one.context_cameras, expected[0]) and torch.equal(one.target_cameras, expected[1])
    assert one.character["name"] == "knight"
    assert one.exit_frames == (4,) and one.entry_frames == (13,)

    # Masks: exactly the red box, not the orange or dark-red distractors.
    assert one.condition_masks.dtype == torch.bool and one.condition_masks.shape == (FRAMES, SIZE, SIZE)
    y0, y1, x0, x1 = CONDITION_BOX
    expected_mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    expected_mask[y0:y1, x0:x1] = True
    assert all(torch.equal(one.condition_masks[t], expected_mask) for t in range(4))
    assert not one.condition_masks[4:].any()
    assert one.condition_masks.any(dim=(1, 2)).tolist() == [True] * 4 + [False] * 4
    assert one.target_masks.any(dim=(1, 2)).tolist() == [False] * 5 + [True] * 3

    # Boxes: normalised (x0, y0, x1, y1), NaN while the subject is out of view.
    box = torch.tensor([x0, y0, x1, y1]) / SIZE
    assert torch.equal(one.condition_boxes[:4], box.expand(4, 4))
    assert torch.isnan(one.condition_boxes[4:]).all()
    ty0, ty1, tx0, tx1 = TARGET_BOX
    assert torch.equal(one.target_boxes[5], torch.tensor([tx0, ty0, tx1, ty1]) / SIZE)
    assert torch.isnan(one.target_boxes[:5]).all()

    two = dataset["sample2"]
    assert two.caption == "a woman on a rooftop"
    assert two.target is None and two.condition_masks is None and two.target_boxes is None
    assert two.character is None
    assert two.exit_frames == (3,) and two.entry_frames == (20,)
    assert torch.equal(two.context_cameras, load_relative_cameras(EXAMPLES / "cam1.json")[0])


def test_published_layout_resized(hm_world):
    # Masks follow the clips' resize and crop, so boxes stay in the same normalised place.
    sample = HMWorldDataset(hm_world, num_frames=2, height=32, width=32, load_clips=False)[0]
    assert sample.condition is None and sample.condition_masks.shape == (2, 32, 32)
    y0, y1, x0, x1 = CONDITION_BOX
    expected = torch.tensor([x0, y0, x1, y1]) / SIZE
    assert (sample.condition_boxes[0] - expected).abs().max() <= 1 / 32 + 1e-6


def test_example_layout():
    dataset = HMWorldDataset(EXAMPLES, num_frames=2, height=32, width=48)
    assert dataset.layout == "examples" and dataset.names == ["1", "2", "3", "4"]
    sample = dataset[2]
    assert sample.name == "3" and sample.caption.startswith("A man in green clothes")
    assert sample.condition.shape == (3, 2, 32, 48)
    assert sample.target is None and sample.condition_masks is None and sample.exit_frames is None
    context, target = load_relative_cameras(EXAMPLES / "cam3.json")
    assert torch.equal(sample.context_cameras, context) and torch.equal(sample.target_cameras, target)


def test_missing_camera_and_unknown_check(tmp_path):
    sample = tmp_path / "s1"
    sample.mkdir()
    (sample / "check.json").write_text(json.dumps({"note": "nothing here"}))
    (tmp_path / "caption.txt").write_text("x\n")
    incomplete = HMWorldDataset(tmp_path)
    assert incomplete.names == [] and incomplete.incomplete == {"s1": ["camera.json"]}
    with pytest.raises(InputError, match="s1: incomplete sample: missing camera.json"):
        incomplete["s1"]
    shutil.copy(EXAMPLES / "cam2.json", sample / "camera.json")
    with pytest.warns(UserWarning, match="no exit/entry events recognised"):
        result = HMWorldDataset(tmp_path)[0]
    assert result.exit_frames is None and result.check == {"note": "nothing here"}
    with pytest.raises(InputError, match="neither HM-World sample folders"):
        HMWorldDataset(sample)


def test_red_mask_thresholds():
    colours = np.array(
        [
            [255, 0, 0],
            [200, 40, 30],
            [180, 20, 60],
            [255, 140, 0],
            [255, 180, 200],
            [90, 0, 0],
            [0, 0, 0],
            [255, 255, 255],
            [0, 200, 0],
        ],
        np.uint8,
    )
    assert red_mask(colours).tolist() == [True, True, True, False, False, False, False, False, False]


def test_subject_boxes():
    masks = torch.zeros(3, 10, 20, dtype=torch.bool)
    masks[0, 2:5, 3:7] = True
    masks[0, 8, 15] = True  # a second blob: the box is their union
    masks[2, 0, 0] = True
    boxes = subject_boxes(masks)
    assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    assert torch.allclose(boxes[0], torch.tensor([3 / 20, 2 / 10, 16 / 20, 9 / 10]))
    assert torch.isnan(boxes[1]).all()
    assert torch.allclose(boxes[2], torch.tensor([0, 0, 1 / 20, 1 / 10]))


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"exit_frame": 4, "enter_frame": 13}, ((4,), (13,))),
        ({"outFrames": [40, 3], "inFrames": ["20"]}, ((3, 40), (20,))),
        ({"events": [{"type": "exit", "frame": 3}, {"event": "reappear", "time": 2.5}]}, ((3,), (2.5,))),
        ({"subject": {"exit": {"frame": 5}}}, ((5,), ())),
        ({"note": "x", "count": 3}, None),
        ([], None),
    ],
)
def test_check_events(data, expected):
    events = read_check_events(data)
    assert events == expected
    if events:
        assert all(not math.isnan(x) for x in events[0] + events[1])


def test_caption_rules(tmp_path):
    path = tmp_path / "caption.txt"
    path.write_text("sample2: second\nsample1\tfirst\n")
    assert map_captions(path, ["sample1", "sample2"]) == {"sample1": "first", "sample2": "second"}
    # name<TAB>caption with the name a path (a third-party loader's lines); a colon inside the caption is kept
    path.write_text("/data/hm/sample2/cond.mp4\tsecond: at dusk\nhm/sample1\tfirst\n")
    assert map_captions(path, ["sample1", "sample2"]) == {"sample1": "first", "sample2": "second: at dusk"}
    assert map_captions(path, ["sample1", "sample2", "sample3"], strict=False) == {
        "sample1": "first",
        "sample2": "second: at dusk",
    }
    path.write_text("sample2: second\nsample1\tfirst\n")
    path.write_text("one\ntwo\nthree\n\n")
    assert map_captions(path, ["sample1", "sample3"]) == {"sample1": "one", "sample3": "three"}
    assert map_captions(path, ["c", "a", "b"]) == {"c": "one", "a": "two", "b": "three"}
    with pytest.raises(InputError, match="2 lines for 3 samples"):
        path.write_text("one\ntwo\n")
        map_captions(path, ["a", "b", "c"])
    with pytest.raises(InputError, match="no caption for sample 'sample2'"):
        path.write_text("one\n\nthree\n")
        map_captions(path, ["sample1", "sample2"])
    with pytest.raises(InputError, match="no caption for sample 'sample9'"):
        map_captions(path, ["sample9"])


# ----------------------------------------------------------------------------------------------
# HM-World as published: camera.json cond_cam/tgt_cam, check.json cond_check/tgt_check per subject and clip,
# red (eval_dsc.py) or white (channel 0 > 127) mask videos, name<TAB>caption lines, incomplete folders.

PUB_FRAMES, PUB_SIZE = 9, 32  # 9 = 4k+1 frames: 3 latent frames, 3 camera vectors per clip
SUBJECT_BOX = (8, 24, 4, 16)  # rows y0:y1, columns x0:x1


def _ue_cameras(frames: int, x0: float) -> dict:
    """{"0".."frames-1": 4x4}: Unreal camera-to-world (column-vector form, cm), moving along world X."""
    return {str(i): [[1, 0, 0, x0 + 50.0 * i], [0, 1, 0, 20.0], [0, 0, 1, 150.0], [0, 0, 0, 1]] for i in range(frames)}


def _subject_video(colour, visible) -> np.ndarray:
    frames = np.zeros((PUB_FRAMES, PUB_SIZE, PUB_SIZE, 3), np.uint8)
    y0, y1, x0, x1 = SUBJECT_BOX
    frames[visible, y0:y1, x0:x1] = colour
    return frames


# The published check.json: per clip, per actor, per character, each entry a change of visibility.
CHECK = {
    "cond_check": {
        "BP_Knight_C_1": {"Knight": [{"frame": 3, "inFrame": False}]},
        "BP_Dog_C_0": {"Dog": [{"frame": 6, "inFrame": True}]},
    },
    "tgt_check": {
        "BP_Knight_C_1": {"Knight": [{"frame": 2, "inFrame": True}, {"frame": 7, "inFrame": False}]},
        "BP_Dog_C_0": {"Dog": []},
    },
}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """red_one: red masks; white_two: white masks; broken: no tgt.mp4 and no camera.json (incomplete);
    caption.txt as path<TAB>caption lines."""
    root = tmp_path_factory.mktemp("published")
    rgb = np.random.default_rng(0).integers(0, 255, (PUB_FRAMES, PUB_SIZE, PUB_SIZE, 3), dtype=np.uint8)
    for name, colour in (("red_one", (255, 0, 0)), ("white_two", (255, 255, 255))):
        folder = root / name
        folder.mkdir()
        for clip in ("cond", "tgt"):
            write_video(folder / f"{clip}.mp4", rgb, crf=0)
        write_video(folder / "cond_mask.mp4", _subject_video(colour, slice(0, 3)), crf=0, pix_fmt="yuv444p")
        write_video(folder / "tgt_mask.mp4", _subject_video(colour, slice(2, 7)), crf=0, pix_fmt="yuv444p")
        cameras = {"cond_cam": _ue_cameras(PUB_FRAMES, 0.0), "tgt_cam": _ue_cameras(PUB_FRAMES, 900.0)}
        (folder / "camera.json").write_text(json.dumps(cameras))
        (folder / "check.json").write_text(json.dumps(CHECK))
        (folder / "character.json").write_text(json.dumps({"Knight": {"mesh": "SK_Knight"}}))
    broken = root / "broken"
    broken.mkdir()
    write_video(broken / "cond.mp4", rgb, crf=0)
    (root / "caption.txt").write_text(
        "/datasets/HM-World/red_one/cond.mp4\ta knight walks away\n"
        "HM-World/white_two\ta knight returns: late\n"
        "broken\ta broken sample\n"
    )
    return root


def test_published_schemas(published):
    dataset = HMWorldDataset(published, require=("cond.mp4", "tgt.mp4", "camera.json"))
    assert dataset.names == ["red_one", "white_two"]
    assert dataset.incomplete == {"broken": ["tgt.mp4", "camera.json"]}
    assert dataset.describe_incomplete() == ["broken: missing tgt.mp4, camera.json"]
    with pytest.raises(InputError, match="broken: incomplete sample: missing tgt.mp4, camera.json"):
        dataset["broken"]
    red, white = dataset[0], dataset["white_two"]
    assert red.caption == "a knight walks away" and white.caption == "a knight returns: late"
    # cameras: cond_cam / tgt_cam, 9 frames each -> 3 vectors per clip, relative to the first target frame (m)
    assert red.context_cameras.shape == red.target_cameras.shape == (3, 12)
    assert red.target_cameras[0].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert red.context_cameras[0, 11].item() == pytest.approx(-9.0)  # 900 cm behind along the forward axis

    # check.json exactly as written: per subject (ACTOR/CHARACTER) and per clip, frames from 0 in each clip
    assert [(c.clip, c.subject, c.frame, c.in_frame) for c in red.visibility] == [
        ("cond", "BP_Dog_C_0/Dog", 6, True),
        ("cond", "BP_Knight_C_1/Knight", 3, False),
        ("tgt", "BP_Knight_C_1/Knight", 2, True),
        ("tgt", "BP_Knight_C_1/Knight", 7, False),
    ]
    assert red.exit_frames == (3, 9 + 7) and red.entry_frames == (6, 9 + 2)  # clip-global: target after 9 frames
    subjects, in_view = red.in_view(PUB_FRAMES, PUB_FRAMES)
    assert subjects == ["BP_Dog_C_0/Dog", "BP_Knight_C_1/Knight"]
    assert in_view[:, 0].tolist() == [False] * 6 + [True] * 12  # enters at 6, stays (no change in the target)
    knight = [True] * 3 + [False] * 6 + [False, False] + [True] * 5 + [False, False]
    assert in_view[:, 1].tolist() == knight  # leaves at 3, back at target frame 2, leaves at target frame 7

    # masks: red subjects (eval_dsc.py) and white ones (channel 0 > 127), decided per video
    y0, y1, x0, x1 = SUBJECT_BOX
    expected = torch.zeros(PUB_SIZE, PUB_SIZE, dtype=torch.bool)
    expected[y0:y1, x0:x1] = True
    for sample, style in ((red, "red"), (white, "white")):
        assert sample.mask_styles == {"cond_mask.mp4": style, "tgt_mask.mp4": style}
        assert all(torch.equal(sample.condition_masks[t], expected) for t in range(3))
        assert not sample.condition_masks[3:].any()
        assert sample.target_masks.any(dim=(1, 2)).tolist() == [False] * 2 + [True] * 5 + [False] * 2
        assert torch.equal(sample.target_boxes[2], torch.tensor([x0, y0, x1, y1]) / PUB_SIZE)
    # read the white video as red (forced): nothing is red in it
    assert not HMWorldDataset(published, mask_style="red")["white_two"].condition_masks.any()

    # field of view: Unreal's 90 degrees by default, a parameter; the intrinsics follow the clips as read
    assert red.fov_deg == 90.0 and red.intrinsics[0, 0] == pytest.approx(PUB_SIZE / 2)
    assert red.intrinsics[0, 2] == pytest.approx(PUB_SIZE / 2) and red.intrinsics[1, 2] == pytest.approx(PUB_SIZE / 2)
    narrow = HMWorldDataset(published, fov_deg=60.0, num_frames=1, height=16, width=8, load_masks=False)[0]
    # 32x32 -> scaled to 16x16, centre crop to 16x8: focal 16/2/tan(30deg), principal point shifted by the crop
    assert narrow.intrinsics[0, 0] == pytest.approx(8 / math.tan(math.radians(30)))
    assert narrow.intrinsics[0, 2] == pytest.approx(4.0) and narrow.intrinsics[1, 2] == pytest.approx(8.0)
    with pytest.raises(InputError, match="field of view"):
        HMWorldDataset(published, fov_deg=180.0)


def test_white_and_red_mask_rule():
    red = _subject_video((250, 10, 5), slice(0, 9))
    white = _subject_video((240, 250, 245), slice(0, 9))
    mixed = white.copy()
    mixed[:, 0:2, 0:2] = (255, 0, 0)  # a few red pixels in a white-subject video: still white
    assert [subject_mask(v)[1] for v in (red, white, mixed)] == ["red", "white", "white"]
    assert subject_mask(np.zeros_like(red))[0].sum() == 0  # no bright pixel: empty either way
    assert np.array_equal(subject_mask(mixed)[0], mixed[..., 0] > 127)  # the white reading: channel 0 > 127


@pytest.mark.parametrize(
    "check, message",
    [
        ({"cond_check": []}, 'key "cond_check": expected'),
        ({"cond_check": {"A": {"B": [{"frame": -1, "inFrame": True}]}}}, '"cond_check"/"A"/"B"[0]: expected "frame"'),
        ({"tgt_check": {"A": {"B": [{"frame": 2, "inFrame": "yes"}]}}}, '"tgt_check"/"A"/"B"[0]: expected "inFrame"'),
        ({"tgt_check": {"A": [1]}}, '"tgt_check"/"A": expected'),
    ],
)
def test_malformed_published_check_names_the_key(check, message):
    with pytest.raises(InputError, match=re.escape(message)):
        read_visibility_changes(check, "x/check.json")


def test_eval_reads_reentry_frames_from_the_published_check(published):
    from hydra_wm.evaluation.samples import load_ground_truth

    gt = load_ground_truth(published, "white_two")
    assert gt.in_view.shape == (2 * PUB_FRAMES, 2)  # per subject, from check.json (not the union of the masks)
    # The knight re-enters at target frame 2 and leaves at 7; the dog's entry lies in the context.
    assert gt.reentry.any(axis=1).tolist() == [False] * 2 + [True] * 5 + [False] * 2
    assert [(e["exit"], e["entry"]) for e in gt.events()] == [(3 - PUB_FRAMES, 2)]
