"""The shipped Flatland world model: size, card, and a regression check of the whole demo path on one clip.

The model card (`hydra_wm/flatland/weights/flatland-ATTENTION.json`) records, under ``regression``, what the shipped
weights score on one held-out clip (world seed, clip index, sampling steps, noise seed). Rendering, cameras,
codec, DiT, retrieval, sampler and metrics all run here; a change anywhere that degrades the result by more than
the stated margin fails the test.
"""

import json

import pytest

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
def test_demo_path_on_one_clip_stays_at_the_model_cards_numbers(attention):
    model = world_model.load_flatland_model(attention)
    reference = model.card.extra["regression"]
    clip = render_clip(model.flatland, reference["seed"], reference["index"])
    result = world_model.run_clip(model, clip, noise_seed=reference["noise_seed"])
    scores = result.scores
    for key in ("psnr", "background_psnr", "background_psnr_revisit"):
        assert scores[key] >= reference[key] - PSNR_MARGIN_DB, (key, scores[key], reference[key])
    if attention == "memory":
        assert scores["retrieval_hit"] >= reference["retrieval_hit"] - RATE_MARGIN
