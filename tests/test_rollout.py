"""Long-horizon rollouts: the chunk plan, noise seeds, the memory bank, history selection, and the engine on the
shipped Flatland model (one chunk equals `generate` bit for bit, a resumed rollout equals an uninterrupted one, the
DiT input of `memory` mode stays the same length while the bank grows)."""

import math

import numpy as np
import pytest
import torch

from hydra_wm.data.cameras import camera_poses, relative_vectors
from hydra_wm.errors import InputError
from hydra_wm.evaluation.plots import plot_rollout_timeline
from hydra_wm.flatland import flatland_config, render_clip
from hydra_wm.flatland.model import generate_clip, load_flatland_model
from hydra_wm.flatland.rollout import context_columns, return_gaps, rollout_clip, score_rollout, start_rollout
from hydra_wm.flatland.world import ue_yaw_matrices
from hydra_wm.rollout import MemoryBank, RolloutConfig, chunk_seed, plan_chunks, select_history

pytestmark = pytest.mark.usefixtures("one_thread")


def yaw_poses(yaw_deg) -> torch.Tensor:
    """(N, 4, 4) absolute poses of a camera turning on the spot."""
    return camera_poses(ue_yaw_matrices(np.asarray(yaw_deg, dtype=np.float64), np.array([0.0, 0.0, 170.0])))


# ------------------------------------------------------------------------------------------------ plan, seeds


def test_plan_keeps_a_shorter_last_chunk_and_refuses_a_remainder_the_stride_cannot_split():
    assert plan_chunks(154, 77, 4) == [77, 77]
    assert plan_chunks(118, 77, 4) == [77, 41]  # a shorter last chunk is generated, not dropped
    assert plan_chunks(45, 20, 1) == [20, 20, 5]
    with pytest.raises(InputError, match=r"last chunk would hold 3 frames, not 4k\+1; give 78 or 77"):
        plan_chunks(80, 77, 4)
    with pytest.raises(InputError, match="4k"):
        plan_chunks(80, 20, 4)


def test_chunk_seeds_start_at_the_seed_and_differ_by_chunk_and_seed():
    assert chunk_seed(42, 0) == 42
    seeds = {chunk_seed(s, i) for s in (42, 43) for i in range(1, 50)}
    assert len(seeds) == 98 and all(0 <= s < 2**63 for s in seeds)
    assert chunk_seed(42, 7) == chunk_seed(42, 7)


# ------------------------------------------------------------------------------------------------ the bank


def test_bank_spilled_to_disk_reads_back_the_frames_it_holds(tmp_path):
    g = torch.Generator().manual_seed(0)
    ram, disk = MemoryBank(), MemoryBank(tmp_path / "bank", in_memory=False)
    for frames in (5, 3, 4):
        latents, poses = torch.randn(1, 2, frames, 3, 3, generator=g), yaw_poses(np.arange(frames) * 10.0)
        assert ram.append(latents, poses) == disk.append(latents, poses, {"note": frames})
    pick = [11, 0, 6, 5, 9]
    assert torch.equal(ram.latents(pick), disk.latents(pick))
    reopened = MemoryBank.open(tmp_path / "bank")
    assert len(reopened) == 12 and reopened.num_chunks == 2 and reopened.parts[2].record == {"note": 4}
    assert torch.equal(reopened.latents(range(12)), ram.latents(range(12)))
    assert torch.equal(reopened.poses, ram.poses)
    assert ram.nbytes() == 12 * 2 * 3 * 3 * 4
    with pytest.raises(InputError, match="outside"):
        ram.latents([12])


# ----------------------------------------------------------------------------------------- history selection


def test_history_modes_choose_what_each_chunk_conditions_on():
    # 40 bank frames: headings 0, 90, 180 degrees for 10 frames each, then 10 at 270; the chunk looks at 90 again.
    bank = yaw_poses(np.repeat([0.0, 90.0, 180.0, 270.0], 10))
    chunk = yaw_poses([90.0] * 4)
    config = RolloutConfig(recent_frames=6, memory_frames=4)
    full = select_history(bank, chunk, RolloutConfig(history="full"), 2)
    assert full.context == list(range(40))
    window = select_history(bank, chunk, RolloutConfig(history="window", recent_frames=6, memory_frames=4), 2)
    assert window.context == list(range(30, 40)) and window.selected == []
    memory = select_history(bank, chunk, config, 2)
    assert memory.recent == list(range(34, 40))
    # whole pairs (the tokenizer's 2 frames), the newest unit that shows heading 90 first
    assert len(memory.selected) == 4 and memory.context == memory.selected + memory.recent
    assert all(s % 2 == 0 and s + 1 in memory.selected for s in memory.selected[::2])
    assert 18 in memory.selected and all(10 <= s < 20 for s in memory.selected)
    # a short history is used whole, as `generate` would
    assert select_history(bank[:8], chunk, config, 2).context == list(range(8))
    with pytest.raises(InputError, match="multiple of the memory tokenizer"):
        select_history(bank, chunk, RolloutConfig(memory_frames=3), 2)


def test_coverage_picks_views_the_recent_frames_do_not_show():
    # The chunk looks at 0 and 180 degrees; the recent frames already show 0, so the picks go to 180 first.
    bank = yaw_poses(np.repeat([180.0, 90.0, 0.0], [4, 12, 6]))
    chunk = yaw_poses([0.0, 180.0])
    choice = select_history(bank, chunk, RolloutConfig(recent_frames=4, memory_frames=2), 2)
    assert choice.selected == [2, 3]


def test_camera_oldest_takes_the_first_frames_that_showed_a_view():
    # Heading 180 was shown by the condition frames 0-3 and again by (generated) frames 8-11: `camera` picks the
    # newest copy, `camera-oldest` the observed one; both still pick by coverage first (heading 90 is not needed).
    bank = yaw_poses(np.repeat([180.0, 90.0, 180.0, 0.0], [4, 4, 4, 6]))
    chunk = yaw_poses([0.0, 180.0])
    newest = select_history(bank, chunk, RolloutConfig(recent_frames=6, memory_frames=2), 2)
    oldest = select_history(bank, chunk, RolloutConfig(recent_frames=6, memory_frames=2, selection="camera-oldest"), 2)
    assert newest.selected == [10, 11] and oldest.selected == [0, 1]
    with pytest.raises(InputError, match="selection: expected one of camera, camera-oldest"):
        RolloutConfig(selection="nearest")


def test_relative_vectors_refer_each_chunk_to_its_first_frame():
    poses = yaw_poses([10.0, 40.0, 70.0])
    vectors = relative_vectors(poses, poses[1])
    torch.testing.assert_close(vectors[1], torch.eye(4)[:3].flatten(), atol=1e-6, rtol=0)
    # the first frame seen from the second is turned 30 degrees to its left
    assert math.isclose(math.degrees(math.atan2(float(vectors[0, 2]), float(vectors[0, 10]))), -30.0, abs_tol=1e-3)


# --------------------------------------------------------------------------------- the engine on Flatland


@pytest.fixture(scope="module")
def model():
    return load_flatland_model("memory")


def long_clip(target_frames: int, index: int = 0):
    config = flatland_config("long-glance", target_frames=target_frames)
    return config, render_clip(config, 1000, index)


def test_one_chunk_rollout_equals_generate_bit_for_bit(model):
    clip = render_clip(model.flatland, 1000, 0)
    # the plain sampler (this card's sampler snaps views: compared below)
    expected, record = generate_clip(model, clip, noise_seed=5, num_steps=2, view_snap=0.0)
    for history in ("memory", "window", "full"):
        config = RolloutConfig(history=history, chunk_frames=20)
        result = rollout_clip(model, clip, config, noise_seed=5, num_steps=2, view_snap=0.0)
        assert torch.equal(result.generated, expected)
    assert result.records[0].context == list(range(20)) and result.records[0].dit_frames == 40
    # with view snapping too: the first chunk's aligned views come from the same 20 context frames
    snapped, _ = generate_clip(model, clip, noise_seed=5, num_steps=2, view_snap=1.0)
    result = rollout_clip(model, clip, RolloutConfig(chunk_frames=20), noise_seed=5, num_steps=2, view_snap=1.0)
    assert torch.equal(result.generated, snapped) and not torch.equal(snapped, expected)


def test_resumed_rollout_equals_an_uninterrupted_one(model, tmp_path):
    config, clip = long_clip(30)
    history = RolloutConfig(chunk_frames=10, recent_frames=4, memory_frames=6)
    whole = rollout_clip(model, clip, history, noise_seed=1, num_steps=2)
    poses = camera_poses(clip.camera_to_world)
    first = start_rollout(model, clip, history, noise_seed=1, num_steps=2, bank=MemoryBank(tmp_path / "bank"))
    first.step(poses[20:30])  # ... and the process stops here
    bank = MemoryBank.open(tmp_path / "bank", in_memory=False)
    resumed = start_rollout(model, clip, history, noise_seed=1, num_steps=2, bank=bank)
    chunks = [resumed.step(poses[start : start + 10]) for start in (30, 40)]
    assert torch.equal(torch.cat([c.video for c in chunks], dim=1), whole.generated[:, 10:])
    assert [c.record for c in chunks] == whole.records[1:]


def test_memory_mode_dit_input_stays_the_same_length_while_the_bank_grows(model):
    _, clip = long_clip(60)
    lengths = []
    hook = model.dit.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[2]))
    try:
        for history in ("memory", "full"):
            lengths.clear()
            config = RolloutConfig(history=history, chunk_frames=10, recent_frames=4, memory_frames=6)
            result = rollout_clip(model, clip, config, num_steps=1)
            per_chunk = [r.dit_frames for r in result.records]
            assert lengths == per_chunk  # one DiT call per chunk (1 step, no guidance)
            if history == "memory":
                assert per_chunk == [20] * 6
                assert all(len(r.selected) == 6 for r in result.records[1:])
                assert all(r.context == sorted(r.context) for r in result.records)
            else:
                assert per_chunk == [30 + 10 * i for i in range(6)]
    finally:
        hook.remove()


def test_rollout_scores_and_timeline(model, tmp_path):
    config, clip = long_clip(40, index=2)
    result = rollout_clip(model, clip, RolloutConfig(chunk_frames=20), num_steps=1)
    scores = score_rollout(result.generated, clip, config, result.chunk_frames)
    assert len(scores["psnr_per_chunk"]) == 2 and all(10 < v < 60 for v in scores["psnr_per_chunk"])
    assert sum(scores["revisit_pixels"].values()) > 0 and scores["new_view_pixels"] >= 0
    assert any(result.records[1].retrieved.values())
    plot_rollout_timeline(result.records, tmp_path / "timeline.png", condition_frames=20)
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    # the truth scores itself perfectly
    truth = torch.from_numpy(clip.frames[20:]).float().permute(3, 0, 1, 2) / 127.5 - 1.0
    assert score_rollout(truth, clip, config, [20, 20])["psnr_per_chunk"] == [100.0, 100.0]


def test_return_gaps_count_the_frames_a_view_was_away():
    # 32-px frames, 90 degree view: headings 0, 0, 180, 180, 180, 0 (frames 0-1 context)
    yaw = [0.0, 0.0, 180.0, 180.0, 180.0, 0.0]
    gaps = return_gaps(yaw, 2, 32, 90.0)
    assert (gaps[0] == -1).all() and (gaps[1] == -1).all() and (gaps[2] == -1).all()  # a new view, kept
    assert (gaps[3] == 4).all()  # heading 0 back after frames 2, 3, 4 away (last seen at frame 1)
    assert context_columns(yaw, 2, 32, 90.0).tolist() == [[False] * 32] * 3 + [[True] * 32]
    # heading 45 half overlaps heading 0: its left half was in view since the context, its right half is new
    gaps = return_gaps([0.0, 0.0, 45.0], 2, 32, 90.0)
    assert (gaps[0, :16] == 0).all() and (gaps[0, 16:] == -1).all()


def test_long_glance_preset_revisits_views_after_long_gaps_and_hides_subjects_long():
    config = flatland_config("long-glance")
    assert config.total_frames == 240 and config.camera_motion == "tour"
    gaps, hidden = [], []
    for index in range(4):
        clip = render_clip(config, 1000, index)
        gaps.append(return_gaps(clip.yaw_deg, 20, config.width, config.fov_deg))
        hidden += [e["out_of_view"] for e in clip.events if e["entry"] >= 20]
        step = config.heading_spacing_px * 360.0 / config.panorama_width
        headings = np.round((clip.yaw_deg - clip.yaw_deg[0]) / step, 6)
        held = headings[:20][headings[:20] == np.round(headings[:20])]  # not the in-between frames of a turn
        assert len(np.unique(held % 8)) == 2  # the context holds both home headings
    gaps = np.concatenate(gaps)
    assert ((gaps >= 20) & (gaps < 200)).mean() > 0.1 and (gaps >= 100).any()
    assert max(hidden) >= 50
