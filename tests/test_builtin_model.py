"""The shipped Flatland world model: size, card, and a regression check of the whole demo path on one clip.

The model card (`hydra_wm/flatland/weights/flatland-ATTENTION.json`) records, under ``regression``, what the shipped
weights score on one held-out clip (world seed, clip index, sampling steps, noise seed). Rendering, cameras,
codec, DiT, retrieval, sampler and metrics all run here; a change anywhere that degrades the result by more than
the stated margin fails the test. The rollout model (`flatland-memory-rollout.json`) records a rollout of a few
chunks of one held-out long clip instead.
"""

import json

import pytest
from conftest import load_script

from hydra_wm.flatland import model as world_model
from hydra_wm.flatland import render_clip

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_BYTES = 20 * 1024 * 1024
PSNR_MARGIN_DB = 0.5
"""Allowed drop in PSNR-type metrics (dB): covers float32 differences between CPUs and torch builds."""
RATE_MARGIN = 0.05
"""Allowed drop in retrieval hit rate."""

SHIPPED = world_model.available_attentions()


def test_the_memory_model_ships():
    assert "memory" in SHIPPED


@pytest.mark.parametrize("attention", SHIPPED)
def test_shipped_weights_are_small_and_carry_their_card(attention):
    path = world_model.weights_path(attention)
    assert path.stat().st_size <= MAX_BYTES
    card = json.loads(path.with_suffix(".json").read_text())
    for key in ("flatland_preset", "num_steps", "shift", "train_command", "steps", "wall_seconds", "regression"):
        assert key in card, key
    model = world_model.load_flatland_model(attention)
    assert model.attention == attention and model.dit.cfg.in_dim == model.codec.z_dim


@pytest.mark.parametrize("attention", SHIPPED)
@pytest.mark.parametrize("record", ["regression", "regression_snap"])
def test_demo_path_on_one_clip_stays_at_the_model_cards_numbers(attention, record):
    """`regression`: the model with the plain sampler; `regression_snap`: the card's sampler (view snapping at
    the card's tolerance, what `hydra-wm demo` runs)."""
    model = world_model.load_flatland_model(attention)
    if record not in model.card.extra:
        assert record == "regression_snap" and model.card.view_snap == 0  # a card without snapping has no record
        return
    reference = model.card.extra[record]
    assert reference.get("view_snap", 0.0) == (model.card.view_snap if record == "regression_snap" else 0.0)
    clip = render_clip(model.flatland, reference["seed"], reference["index"])
    snap = None if record == "regression_snap" else 0.0  # None: the card's
    result = world_model.run_clip(model, clip, noise_seed=reference["noise_seed"], view_snap=snap)
    scores = result.scores
    for key in ("psnr", "background_psnr", "background_psnr_revisit"):
        assert scores[key] >= reference[key] - PSNR_MARGIN_DB, (key, scores[key], reference[key])
    if attention == "memory":
        assert scores["retrieval_hit"] >= reference["retrieval_hit"] - RATE_MARGIN


def test_the_rollout_model_ships_and_rolls_out_at_its_cards_numbers():
    """`flatland-memory-rollout` (fine-tuned on rollout chunks): card, and the card's regression rollout (a few
    chunks of held-out long clip 0, memory history) through `flatland.rollout.rollout_clip`."""
    from hydra_wm.flatland import flatland_config
    from hydra_wm.flatland.rollout import rollout_clip, score_rollout
    from hydra_wm.rollout import RolloutConfig

    path = world_model.weights_path("memory", rollout=True)
    assert path.stat().st_size <= MAX_BYTES
    model = world_model.load_flatland_model("memory", rollout=True)
    card = model.card
    assert model.attention == "memory" and card.chunk_frames == 20 and card.flatland_preset == "long-glance"
    assert card.extra["total_steps"] == sum(phase["steps"] for phase in card.extra["lineage"])
    reference = card.extra["regression"]
    trained = model.flatland  # one chunk of the long clips
    config = flatland_config(card.flatland_preset, target_frames=reference["chunks"] * trained.target_frames)
    history = RolloutConfig(chunk_frames=trained.target_frames, recent_frames=8, memory_frames=12)
    clip = render_clip(config, reference["seed"], reference["index"])
    result = rollout_clip(model, clip, history, noise_seed=reference["noise_seed"])
    assert result.chunk_frames == [trained.target_frames] * reference["chunks"]
    scores = score_rollout(result.generated, clip, config, result.chunk_frames)
    for key in ("psnr", "background_psnr"):
        assert scores[key] >= reference[key] - PSNR_MARGIN_DB, (key, scores[key], reference[key])


def test_diagnosis_splits_the_clean_frame_error_into_background_subjects_and_the_input_alone():
    """scripts/flatland_diagnose.py's per-noise-level numbers (the model card's "What limits generation 2")."""
    diagnose = load_script("scripts/flatland_diagnose.py")
    model = world_model.load_flatland_model("memory")
    clip = render_clip(model.flatland, 2000, 0)
    low, high = diagnose.noise_levels(model, [clip], sigmas=(0.02, 0.98))
    # The input alone is nearly the truth at low noise and carries nothing at full noise.
    assert low["input_psnr"] > 40 > 20 > high["input_psnr"]
    # At full noise the model draws the returning background from memory far better than the subjects, and far
    # better than its input.
    assert high["x0_psnr_background"] > high["input_psnr"] + 5
    assert high["x0_psnr_background"] > high["x0_psnr_subjects"] + 10
    assert low["x0_psnr"] > high["x0_psnr"]
