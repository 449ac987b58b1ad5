"""Flatland renderer: determinism, exit-entry events, masks, cameras, the written layout, the Dataset."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from hydra_wm.data.cameras import load_relative_cameras
from hydra_wm.data.video import read_frames
from hydra_wm.errors import InputError
from hydra_wm.flatland import (
    FlatlandDataset,
    find_events,
    flatland_config,
    read_captions,
    read_truth,
    reentry_mask,
    render_clip,
    write_dataset,
)
from hydra_wm.flatland.dataset import MASK_THRESHOLD
from hydra_wm.flatland.scenery import MIN_BACKGROUND_DISTANCE, SCENE_STYLES, background_colours
from hydra_wm.flatland.subjects import CATALOGUE, SUBJECT_COLOURS, render_sprite

DEBUG = flatland_config("debug")
SAMPLE_FILES = {
    "cond.mp4",
    "tgt.mp4",
    "cond_mask.mp4",
    "tgt_mask.mp4",
    "camera.json",
    "character.json",
    "check.json",
    "truth.json",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("flatland") / "set"
    write_dataset(out, DEBUG, 3, seed=11, progress=False)
    return out


def test_same_seed_same_clip_other_seed_other_clip():
    a, b = render_clip(DEBUG, 5, 2), render_clip(DEBUG, 5, 2)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.camera_to_world, b.camera_to_world) and a.events == b.events
    assert not np.array_equal(a.frames, render_clip(DEBUG, 6, 2).frames)
    assert not np.array_equal(a.frames, render_clip(DEBUG, 5, 3).frames)


@pytest.mark.parametrize("preset", ["debug", "small", "default"])
def test_every_clip_has_a_target_reentry_after_the_subject_was_seen(preset):
    config = flatland_config(preset)
    low, high = config.out_of_view_frames
    Tc = config.context_frames
    for index in range(12):
        clip = render_clip(config, 0, index)
        assert clip.frames.shape == (config.total_frames, config.height, config.width, 3)
        assert (clip.in_view[:Tc].sum(axis=0) >= 2).all(), "every subject is seen in the context"
        events = find_events(clip.in_view, Tc)
        assert events == clip.events
        good = [e for e in events if Tc <= e["entry"] <= config.total_frames - 2 and low <= e["out_of_view"] <= high]
        assert good, f"clip {index} has no target re-entry"
        for e in good:  # the event is real: in view before, out for the whole gap, in view at entry
            s = e["subject"]
            assert clip.in_view[e["exit"] - 1, s] and clip.in_view[e["entry"], s]
            assert not clip.in_view[e["exit"] : e["entry"], s].any()
        assert reentry_mask(clip.in_view, Tc).any()


def test_find_events_on_hand_made_flags():
    seen = np.array([1, 1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)[:, None]
    assert find_events(seen, 4) == [
        {"subject": 0, "exit": 2, "entry": 4, "out_of_view": 2},
        {"subject": 0, "exit": 6, "entry": 7, "out_of_view": 1},
    ]
    mask = reentry_mask(seen, 4)  # target frames 4..8: re-entries at 4 (runs 4-5) and 7 (runs 7)
    assert mask[:, 0].tolist() == [True, True, False, True, False]


def test_masks_and_labels_match_the_drawn_sprites():
    for index in range(6):
        clip = render_clip(DEBUG, 1, index)
        masks = clip.masks
        assert set(np.unique(masks[..., 0])) <= {0, 255} and not masks[..., 1:].any()
        assert np.array_equal(masks[..., 0] == 255, clip.labels > 0)
        for s, kind in enumerate(clip.subjects):
            pixels = clip.frames[clip.labels == s + 1]
            assert (pixels[:, None, :] == kind.rgb[None]).all(-1).any(-1).all(), "subject pixels use its colours"
            assert np.array_equal(clip.visible_px[:, s], (clip.labels == s + 1).sum(axis=(1, 2)))
        # No background pixel has a subject colour, so colour alone identifies subjects.
        subject_rgb = np.array(list(SUBJECT_COLOURS.values()), dtype=np.uint8)
        background = clip.frames[clip.labels == 0]
        assert not (background[:, None, :] == subject_rgb[None]).all(-1).any()


def test_colours_are_separable():
    subject = np.array(list(SUBJECT_COLOURS.values()), dtype=float)
    pairwise = np.linalg.norm(subject[:, None] - subject[None], axis=-1) + np.eye(len(subject)) * 1e9
    assert pairwise.min() >= 95.0
    for style in SCENE_STYLES.values():
        distance = np.linalg.norm(background_colours(style)[:, None] - subject[None], axis=-1)
        assert distance.min() >= MIN_BACKGROUND_DISTANCE, style.name


@pytest.mark.parametrize("kind", CATALOGUE, ids=lambda k: k.name)
def test_sprite_columns_have_no_gaps(kind):
    # "Some sprite column is in the frame" must equal "some pixel is visible" (finds exits and entries).
    for height in (6, 9, 17, 25):
        sprite = render_sprite(kind, height)
        occupied = (sprite > 0).any(axis=2)  # (2, 4, w)
        for row in occupied.reshape(-1, occupied.shape[-1]):
            hits = np.flatnonzero(row)
            assert row[hits[0] : hits[-1] + 1].all()
        assert (sprite[:, 1] != sprite[:, 0]).any(), "the walk animation changes the sprite"


def test_background_follows_the_camera_yaw():
    config = flatland_config("default")
    W = config.width
    for index in range(3):
        clip = render_clip(config, 2, index)
        shift = np.round((clip.yaw_deg - clip.yaw_deg[0]) * config.panorama_width / 360.0).astype(int)
        t = int(np.flatnonzero((shift != 0) & (np.abs(shift) < W // 2))[0])
        d = shift[t]
        # Turning right by d panorama columns slides the scenery left by d view columns: column x of frame t
        # shows what column x + d showed in frame 0.
        cols0, cols_t = (slice(d, W), slice(0, W - d)) if d > 0 else (slice(0, W + d), slice(-d, W))
        same = (clip.labels[0][:, cols0] == 0) & (clip.labels[t][:, cols_t] == 0)
        assert same.sum() > 0.5 * same.size
        assert np.array_equal(clip.frames[0][:, cols0][same], clip.frames[t][:, cols_t][same])


def _relative_yaw(vectors: torch.Tensor) -> np.ndarray:
    """Yaw in degrees of relative camera vectors [m, 12] (camera axes right, down, forward)."""
    rotation = vectors.double().numpy()[:, :12].reshape(-1, 3, 4)[:, :, :3]
    return np.degrees(np.arctan2(rotation[:, 0, 2], rotation[:, 2, 2]))


def test_cameras_round_trip_through_the_camera_loader(written):
    folder = written / "sample_00001"
    clip = render_clip(DEBUG, 11, 1)
    ue = np.array([json.loads((folder / "camera.json").read_text())["cond_cam"]["0"]])
    assert np.allclose(ue[0][:3, 0], [np.cos(np.radians(clip.yaw_deg[0])), np.sin(np.radians(clip.yaw_deg[0])), 0])
    context, target = load_relative_cameras(folder / "camera.json", latent_stride=4)
    assert context.shape == target.shape == (3, 12)  # 9 frames → latent frames 0, 4, 8
    frames = np.array([0, 4, 8])
    expected = clip.yaw_deg - clip.yaw_deg[DEBUG.context_frames]  # relative to the first target frame
    wrap = lambda x: (x + 180.0) % 360.0 - 180.0
    assert np.allclose(wrap(_relative_yaw(context) - expected[frames]), 0.0, atol=1e-3)
    assert np.allclose(wrap(_relative_yaw(target) - expected[DEBUG.context_frames + frames]), 0.0, atol=1e-3)
    assert torch.allclose(context[:, [3, 7, 11]], torch.zeros(3, 3), atol=1e-5), "the camera only turns"
    item = FlatlandDataset(DEBUG, 3, seed=11)[1]
    assert torch.equal(item["context_cameras"], context) and torch.equal(item["target_cameras"], target)


def test_written_layout(written):
    names = sorted(p.name for p in written.iterdir() if p.is_dir())
    assert names == ["sample_00000", "sample_00001", "sample_00002"]
    assert not [p for p in written.iterdir() if p.name.startswith(".")], "no temporary leftovers"
    captions = read_captions(written / "caption.txt")
    assert list(captions) == names and all("camera pans" in c for c in captions.values())
    for index, name in enumerate(names):
        folder = written / name
        assert {p.name for p in folder.iterdir()} == SAMPLE_FILES
        clip = render_clip(DEBUG, 11, index)
        for stream, frames in (("cond", slice(0, 9)), ("tgt", slice(9, None))):
            video = read_frames(folder / f"{stream}.mp4")
            assert video.shape == (9, 16, 24, 3)
            assert np.abs(video.astype(int) - clip.frames[frames]).max() <= 2, "near-lossless 4:4:4"
            mask = read_frames(folder / f"{stream}_mask.mp4")[..., 0] >= MASK_THRESHOLD
            assert np.array_equal(mask, clip.labels[frames] > 0)
        check = json.loads((folder / "check.json").read_text())
        assert any(e["entry_stream"] == "tgt" for e in check["events"])
        character = json.loads((folder / "character.json").read_text())
        assert [s["colours"] for s in character["subjects"]] == [k.rgb.tolist() for k in clip.subjects]
        truth = json.loads((folder / "truth.json").read_text())
        assert np.array_equal(np.array(truth["tgt"]["in_view"]), clip.in_view[9:])
        loaded = read_truth(folder)
        assert np.array_equal(loaded["labels"], clip.labels[9:]), "exact labels back from the files"
        assert np.array_equal(loaded["reentry"], reentry_mask(clip.in_view, 9))
        manifest = json.loads((written / "flatland.json").read_text())
        assert manifest["seed"] == 11 and manifest["config"]["height"] == 16


def test_write_refuses_a_non_empty_folder_unless_overwriting(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        write_dataset(tmp_path, DEBUG, 1, seed=0, progress=False)
    with pytest.raises(InputError, match="not a Flatland dataset"):
        write_dataset(tmp_path, DEBUG, 1, seed=0, overwrite=True, progress=False)
    out = tmp_path / "set"
    write_dataset(out, DEBUG, 2, seed=0, progress=False)
    write_dataset(out, DEBUG, 1, seed=1, overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["sample_00000"]


def test_dataset_items_collate_and_match_the_renderer():
    dataset = FlatlandDataset(DEBUG, 4, seed=3)
    item = dataset[2]
    clip = render_clip(DEBUG, 3, 2)
    assert item["context"].shape == (3, 9, 16, 24) and item["target"].shape == (3, 9, 16, 24)
    assert item["context"].min() >= -1.0 and item["context"].max() <= 1.0
    restored = ((item["target"] + 1.0) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
    assert np.array_equal(restored, clip.frames[9:])
    assert item["in_view"].shape == (18, 3) and item["reentry"].shape == (9, 3)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["context"].shape == (2, 3, 9, 16, 24) and batch["context_cameras"].shape == (2, 3, 12)
    with pytest.raises(InputError, match="latent stride"):
        FlatlandDataset(flatland_config("small"), 2, latent_stride=4)  # 20 frames are not 4k+1


def test_camera_step_px_keeps_every_view_token_aligned():
    aligned, free = flatland_config("small-aligned"), flatland_config("small")
    P = aligned.panorama_width
    assert aligned.camera_step_px == 4 and P % 4 == 0
    moved_off_grid = False
    for index in range(6):
        yaw_px = np.round(render_clip(aligned, 0, index).yaw_deg * P / 360.0).astype(np.int64)
        assert ((yaw_px - yaw_px[0]) % 4 == 0).all(), f"clip {index}: a view is not a whole token away from another"
        assert len(np.unique(yaw_px)) > 3, "the camera still moves"
        free_px = np.round(render_clip(free, 0, index).yaw_deg * P / 360.0).astype(np.int64)
        moved_off_grid |= bool(((free_px - free_px[0]) % 4 != 0).any())
    assert moved_off_grid, "with step 1 the camera moves by single pixels"


def test_glance_camera_holds_headings_the_context_saw_and_revisits_them_pixel_for_pixel():
    config = flatland_config("small-glance")
    P, Tc, step = config.panorama_width, config.context_frames, config.camera_step_px
    spacing = round(config.glance_spacing_deg * P / 360.0)
    revisits = 0
    for index in range(8):
        clip = render_clip(config, 3, index)
        yaw_px = np.round(clip.yaw_deg * P / 360.0).astype(np.int64)
        offset = (yaw_px - yaw_px[0] + P // 2) % P - P // 2  # unwrapped, relative to frame 0
        held = offset[1:][offset[1:] == offset[:-1]]  # frames where the camera did not move
        headings = np.unique(held)
        assert ((offset % step) == 0).all(), f"clip {index}: a view is off the token grid"
        assert len(headings) >= 2 and (np.diff(headings) % spacing == 0).all(), f"clip {index}: {headings}"
        assert np.isin(headings, offset[:Tc]).all(), f"clip {index}: the target holds a heading the context never held"
        # Runs of equal yaw are holds (or one turn frame); a run inside the clip lasts at most glance_dwell_frames.
        changes = np.flatnonzero(np.diff(offset)) + 1
        runs = np.diff(np.concatenate([[0], changes, [len(offset)]]))
        assert runs.max() <= config.glance_dwell_frames[1]
        # The target never shows the last context view again: that is what a local window would copy.
        assert not (offset[Tc:] == offset[Tc - 1]).any(), f"clip {index}: the target returns to the last context view"
        # A target frame at a heading the context held shows the same background, pixel for pixel.
        background = clip.labels == 0
        for t in range(Tc, clip.frames.shape[0]):
            for c in np.flatnonzero(offset[:Tc] == offset[t]):
                both = background[t] & background[c]
                assert np.array_equal(clip.frames[t][both], clip.frames[c][both])
                revisits += 1
    assert revisits > 50


def test_captions_say_how_the_camera_moves():
    glance, pan = render_clip(flatland_config("small-glance"), 3, 0), render_clip(flatland_config("small"), 3, 0)
    assert glance.caption().startswith("A camera turns between a few headings") and "pans" not in glance.caption()
    assert pan.caption().startswith("A camera pans back and forth")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"camera_motion": "orbit"}, "camera_motion"),
        ({"glance_spacing_deg": 120.0}, "glance_spacing_deg"),
        ({"glance_dwell_frames": (0, 2)}, "glance_dwell_frames"),
        ({"camera_motion": "glance", "pan_range_deg": (60.0, 90.0)}, "glance camera needs >= 3 headings"),
        ({"num_subjects": (1, 5)}, "num_subjects"),
        ({"scene_styles": ("moon",)}, "scene_styles"),
        ({"sweep_frames": (2, 30)}, "sweep_frames"),
        ({"height": 8}, "height"),
        ({"out_of_view_frames": (40, 50)}, "out_of_view_frames"),
        ({"camera_step_px": 0}, "camera_step_px"),
        ({"camera_step_px": 7}, "camera_step_px: 7 does not divide"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(InputError, match=message):
        flatland_config("debug", **overrides)


def test_cli_make(tmp_path, capsys):
    from hydra_wm.commands import flatland as command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "flatland",
            "make",
            str(tmp_path / "out"),
            "--samples",
            "2",
            "--seed",
            "4",
            "--preset",
            "debug",
            "--subjects",
            "2",
            "--styles",
            "city",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    character = json.loads((tmp_path / "out" / "sample_00001" / "character.json").read_text())
    assert character["style"] == "city" and len(character["subjects"]) == 2
    assert "wrote 2 Flatland samples" in capsys.readouterr().out
    bad = parser.parse_args(["flatland", "make", str(tmp_path / "bad"), "--pan-range", "a,b"])
    with pytest.raises(InputError, match="--pan-range"):
        bad.func(bad)


def test_check_json_in_the_published_schema_gives_the_exact_visibility():
    """Flatland's check.json carries HM-World's published schema; the real-data reader recovers in_view exactly."""
    from hydra_wm.data.hmworld import read_visibility_changes, visibility_in_view
    from hydra_wm.flatland.dataset import check_record

    changed = 0
    for index in range(6):
        clip = render_clip(DEBUG, 11, index)
        record = json.loads(json.dumps(check_record(clip)))  # as written to disk
        changes = read_visibility_changes(record)
        subjects, in_view = visibility_in_view(changes, clip.context_frames, len(clip.frames) - clip.context_frames)
        for s, kind in enumerate(clip.subjects):
            name = f"subject_{s}/{kind.name}"
            if name in subjects:
                changed += 1
                assert np.array_equal(in_view[:, subjects.index(name)], clip.in_view[:, s]), (index, s)
            else:  # no change of visibility anywhere in the clip: no entry
                assert clip.in_view[:, s].all() or not clip.in_view[:, s].any()
        entries = sum(len(e) for key in ("cond_check", "tgt_check") for c in record[key].values() for e in c.values())
        assert entries == sum(
            int((clip.in_view[1:, s] != clip.in_view[:-1, s]).sum()) for s in range(len(clip.subjects))
        )
    assert changed  # every Flatland clip has a re-entry, so some subject changes visibility


def test_what_if_subject_motion_changes_only_the_subjects_after_the_context():
    config = flatland_config("small-glance")
    Tc, linear, turned = config.context_frames, 0, 0
    for index in range(12):
        true = render_clip(config, 1000, index)
        frozen = render_clip(config, 1000, index, subject_motion="frozen")
        walk_on = render_clip(config, 1000, index, subject_motion="walk-on")
        for clip in (frozen, walk_on):
            assert np.array_equal(clip.frames[:Tc], true.frames[:Tc]) and np.array_equal(clip.yaw_deg, true.yaw_deg)
            sky = (clip.labels == 0) & (true.labels == 0)  # background both show: the same scenery and camera
            assert np.array_equal(clip.frames[sky], true.frames[sky])
        # frozen: each subject keeps its last context azimuth and pose (its view position moves with the camera only)
        assert np.allclose(frozen.azimuth_deg[Tc:], frozen.azimuth_deg[Tc - 1])
        # walk-on: each subject keeps its last context step; where the world's subjects do so too, the clips agree
        steps = np.diff(walk_on.azimuth_deg[Tc - 2 :], axis=0)
        assert np.allclose(steps, steps[0])
        if np.allclose(np.diff(true.azimuth_deg[Tc - 2 :], axis=0), steps[0]):
            linear += 1
            assert np.array_equal(walk_on.frames, true.frames) and np.array_equal(walk_on.labels, true.labels)
        else:
            turned += 1
            assert not np.array_equal(walk_on.frames[Tc:], true.frames[Tc:])
    assert linear and turned  # both cases were checked
    with pytest.raises(InputError, match="subject_motion"):
        render_clip(config, 0, 0, subject_motion="teleport")
