"""HM-World reader: example layout, a tiny published-layout folder, masks, boxes, captions, events."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import EXAMPLES

from hydra_wm.data import HMWorldDataset, read_check_events, red_mask, subject_boxes
from hydra_wm.data.cameras import load_relative_cameras
from hydra_wm.data.hmworld import map_captions
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
    with pytest.raises(InputError, match="camera.json: file not found"):
        HMWorldDataset(tmp_path)[0]
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
