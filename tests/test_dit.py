"""HyDRA DiT: reference parity, the three attention modes, retrieval, shape genericity and loading."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FIXTURES
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import Tensor

import hydra_wm
from hydra_wm.config import dit_config, rope_split, window_starts
from hydra_wm.errors import CheckpointError, ConfigError, InputError
from hydra_wm.models.dit import VIEW_GATE_BIAS, HydraDiT, preconditioning
from hydra_wm.models.loading import HYDRA_MODULES
from hydra_wm.models.memory import (
    aligned_views,
    memory_eligibility,
    select_memory,
    windowed_memory_attention,
)
from hydra_wm.models.parity import MAX_ABS_TOL, REL_L2_TOL, run_parity


# ----------------------------------------------------------------------------------------- helpers
def random_model(seed: int = 0, **overrides) -> HydraDiT:
    """Debug DiT with every parameter random and non-zero (so that every module affects the output)."""
    torch.manual_seed(seed)
    model = HydraDiT(dit_config("debug", **overrides))
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1.0 if "norm" in name else 1.0 / math.sqrt(max(p[0].numel(), 1))
            p.copy_(torch.randn_like(p) * scale + (1.0 if "norm" in name else 0.0))
    return model.eval()


def inputs(frames=8, height=8, width=12, batch=1, context_frames=None, seed=1, text_len=5, text_dim=16, channels=4):
    g = torch.Generator().manual_seed(seed)
    n_ctx = frames // 2 if context_frames is None else context_frames
    return dict(
        latents=torch.randn(batch, channels, frames, height, width, generator=g),
        timestep=torch.tensor([500.0]),
        context=torch.randn(batch, text_len, text_dim, generator=g),
        cam_context=torch.randn(batch, n_ctx, 12, generator=g),
        cam_target=torch.randn(batch, frames - n_ctx, 12, generator=g),
    )


def run(model, x, **kwargs):
    with torch.no_grad():
        return model(x["latents"], x["timestep"], x["context"], x["cam_context"], x["cam_target"], **kwargs)


def with_config(model: HydraDiT, **changes) -> HydraDiT:
    """The same weights under another attention configuration."""
    other = HydraDiT(model.cfg.replace(**changes))
    other.load_state_dict(model.state_dict())
    return other.eval()


# ----------------------------------------------------------------------------------------- parity
@pytest.fixture(scope="module")
def parity():
    """`run_parity`, each fixture's forward pass run once per module (the CLI test reuses it)."""
    results = {}

    def run_once(prefix, dtype=torch.float32, **overrides):
        key = (str(prefix), dtype, tuple(sorted(overrides.items())))
        if key not in results:
            results[key] = run_parity(prefix, dtype, **overrides)
        return results[key]

    return run_once


@pytest.mark.slow
@pytest.mark.parametrize("name", ["official_dit_parity", "official_dit_hd128"])
def test_reference_fixture_reproduced(name, parity):
    result = parity(FIXTURES / name)
    assert result.max_abs <= MAX_ABS_TOL, result
    assert result.rel_l2 <= REL_L2_TOL, result


def test_fixture_loads_strictly_with_config_from_metadata():
    model = hydra_wm.load_dit(FIXTURES / "official_dit_parity_state.safetensors")
    cfg = model.cfg
    assert (cfg.dim, cfg.num_heads, cfg.num_layers, cfg.in_dim, cfg.freq_dim, cfg.text_dim) == (72, 3, 2, 4, 32, 16)
    assert len(model.state_dict()) == len(load_file(FIXTURES / "official_dit_parity_state.safetensors"))


# ----------------------------------------------------------------------------------------- config
def test_presets_and_rope_split():
    real = dit_config("wan2.1-t2v-1.3b")
    assert (real.dim, real.num_heads, real.num_layers, real.ffn_dim, real.freq_dim, real.text_dim) == (
        1536,
        12,
        30,
        8960,
        256,
        4096,
    )
    assert (real.top_k, real.window, real.tokenizer_kernel, real.patch_size) == (10, 5, (2, 2, 2), (1, 2, 2))
    assert rope_split(128) == (44, 42, 42)
    assert rope_split(24) == (8, 8, 8)
    with pytest.raises(ConfigError, match="even"):
        rope_split(10)
    with pytest.raises(ConfigError, match="attention"):
        dit_config("debug", attention="sparse")
    with pytest.raises(ConfigError, match="unknown DiT preset"):
        dit_config("nope")


def test_real_size_model_has_reference_key_count():
    with torch.device("meta"):
        model = HydraDiT(dit_config("wan2.1-t2v-1.3b"))
    keys = model.state_dict().keys()
    assert len(keys) == 1065
    assert sum(not any(m in k for m in HYDRA_MODULES) for k in keys) == 825


# ----------------------------------------------------------------------------------------- modes
def test_modes_change_the_computation():
    model = random_model()
    x = inputs(frames=12)
    out = {mode: run(with_config(model, attention=mode), x) for mode in ("memory", "full", "window")}
    for mode, y in out.items():
        assert y.shape == x["latents"].shape and torch.isfinite(y).all(), mode
    assert not torch.allclose(out["memory"], out["window"], atol=1e-4)
    assert not torch.allclose(out["memory"], out["full"], atol=1e-4)
    assert not torch.allclose(out["full"], out["window"], atol=1e-4)


def head_and_velocity(prediction: str, timestep: float) -> tuple[dict, Tensor, Tensor]:
    """(inputs, the head's output of a velocity model, the velocity of the same weights under `prediction`)."""
    model = random_model()
    x = inputs(frames=6) | {"timestep": torch.tensor([timestep])}
    return x, run(model, x), run(with_config(model, prediction=prediction), x)


@pytest.mark.parametrize("timestep, sigma", [(500.0, 0.5), (1000.0, 1.0), (10.0, 0.05)])
def test_sample_prediction_turns_the_heads_x0_into_the_velocity(timestep, sigma):
    x, x0, v = head_and_velocity("sample", timestep)  # the head's output read as x0
    torch.testing.assert_close(v, (x["latents"] - x0) / sigma)  # sigma clamped at SAMPLE_SIGMA_MIN = 0.05
    # one Euler step to sigma 0 from the velocity lands on the predicted x0 (at sigma >= the clamp)
    if sigma > 0.05:
        torch.testing.assert_close(x["latents"] - sigma * v, x0, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="prediction"):
        dit_config("debug", prediction="noise")


@pytest.mark.parametrize("timestep, sigma", [(500.0, 0.5), (900.0, 0.9), (100.0, 0.1)])
def test_preconditioned_prediction_adds_the_skip_to_the_heads_output(timestep, sigma):
    x, head, v = head_and_velocity("preconditioned", timestep)  # the head's output read as F
    variance = (1 - sigma) ** 2 + sigma**2
    x0 = (1 - sigma) / variance * x["latents"] + sigma / variance**0.5 * head
    torch.testing.assert_close(x["latents"] - sigma * v, x0, atol=1e-5, rtol=1e-5)


def test_preconditioning_is_the_best_linear_skip_and_its_residual_scale():
    # For x_t = (1 - s) x0 + s n with unit-variance x0 and n: c_skip minimises E|x0 - c x_t|^2 and c_out is the
    # standard deviation left, so F = (x0 - c_skip x_t) / c_out has unit variance at every noise level.
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 400_000, generator=generator, dtype=torch.float64)
    for sigma in (0.05, 0.3, 0.5, 0.8, 0.98):
        x_t = (1 - sigma) * x0 + sigma * noise
        c_skip, c_out = preconditioning(torch.tensor(sigma, dtype=torch.float64))
        least_squares = (x0 * x_t).mean() / (x_t * x_t).mean()
        assert abs(float(c_skip - least_squares)) < 0.01, sigma
        assert abs(float(((x0 - c_skip * x_t) / c_out).std()) - 1.0) < 0.01, sigma
    assert preconditioning(torch.tensor(1.0)) == (0.0, 1.0)  # pure noise: F is the clean sample, as with `sample`


def test_memory_with_top_k_zero_equals_window():
    model = random_model()
    x = inputs(frames=12)
    torch.testing.assert_close(run(with_config(model, top_k=0), x), run(with_config(model, attention="window"), x))


def test_window_covering_every_frame_equals_full():
    model = random_model()
    x = inputs(frames=6)
    torch.testing.assert_close(
        run(with_config(model, attention="window", window=6), x),
        run(with_config(model, attention="full"), x),
        rtol=1e-4,
        atol=1e-4,
    )


def test_attention_chunking_does_not_change_the_result():
    model = random_model()
    x = inputs(frames=10)
    ref = run(with_config(model, attention_chunk_frames=0), x)
    for chunk in (1, 3, 4):
        torch.testing.assert_close(run(with_config(model, attention_chunk_frames=chunk), x), ref)


# ----------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "frames,context,height,width",
    [(12, 6, 16, 24), (7, 3, 8, 12), (9, None, 10, 6), (3, 1, 4, 4)],
)
def test_any_frame_count_split_and_grid(frames, context, height, width):
    model = random_model()
    x = inputs(frames=frames, context_frames=context, height=height, width=width)
    out, retrievals = run(model, x, num_context_frames=context, return_retrieval=True)
    assert out.shape == x["latents"].shape
    assert torch.isfinite(out).all()
    mem_frames = frames // 2
    for r in retrievals:
        assert r.all_scores.shape == (1, frames, mem_frames)
        assert r.indices.shape == (1, frames, min(10, mem_frames))


def test_context_length_comes_from_the_context_cameras():
    """Fc is the number of context cameras (no F // 2 default); a given `num_context_frames` must agree."""
    model = random_model()
    x = inputs(frames=8, context_frames=3)
    torch.testing.assert_close(run(model, x), run(model, x, num_context_frames=3), rtol=0, atol=0)
    with pytest.raises(InputError, match="num_context_frames: 4 latent frames, but cam_context has 3 rows"):
        run(model, x, num_context_frames=4)


def test_batch_items_are_independent():
    """Head modulation and CFG batching must work for B > 1 (a reference defect): item b of a batch equals
    the same input run alone."""
    model = random_model()
    x = inputs(frames=8, batch=2)
    x["timestep"] = torch.tensor([300.0, 700.0])
    out = run(model, x)
    for b in range(2):
        single = {k: v[b : b + 1] for k, v in x.items()}
        torch.testing.assert_close(run(model, single), out[b : b + 1], rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_one_line_errors():
    model = random_model()
    x = inputs(frames=8)
    with pytest.raises(InputError, match="cam_target"):
        run(model, {**x, "cam_target": x["cam_target"][:, :3]})
    with pytest.raises(InputError, match="latents"):
        run(model, {**x, "latents": x["latents"][:, :, :, :7]})
    with pytest.raises(InputError, match="num_context_frames"):
        run(model, x, num_context_frames=8)


# ----------------------------------------------------------------------------------------- retrieval
def naive_memory_attention(q, k, v, k_mem, v_mem, scores, frames, window, top_k):
    """Straightforward per-frame implementation of docs/reference.md §1.1 steps 5-7 (one softmax per frame)."""
    B, L, N, d = q.shape
    T, Tm = L // frames, k_mem.shape[1] // scores.shape[-1]
    out = torch.empty_like(q)
    for b in range(B):
        for i in range(frames):
            start = min(max(i - (window - 1) // 2, 0), frames - window)
            keys = [k[b, start * T : (start + window) * T]]
            values = [v[b, start * T : (start + window) * T]]
            eligible = [j for j in range(scores.shape[-1]) if torch.isfinite(scores[b, i, j])]
            chosen = sorted(eligible, key=lambda j: -scores[b, i, j].item())[:top_k]
            keys += [k_mem[b, j * Tm : (j + 1) * Tm] for j in chosen]
            values += [v_mem[b, j * Tm : (j + 1) * Tm] for j in chosen]
            kk, vv = torch.cat(keys).transpose(0, 1), torch.cat(values).transpose(0, 1)  # (N, Lk, d)
            qq = q[b, i * T : (i + 1) * T].transpose(0, 1)  # (N, T, d)
            attn = torch.softmax(qq @ kk.transpose(1, 2) / math.sqrt(d), dim=-1)
            out[b, i * T : (i + 1) * T] = (attn @ vv).transpose(0, 1)
    return out


@pytest.mark.parametrize("frames,top_k", [(12, 3), (8, 10), (5, 2)])
def test_batched_retrieval_attention_equals_per_frame_loop(frames, top_k):
    torch.manual_seed(0)
    B, T, Tm, N, d, window = 2, 6, 2, 2, 8, 5
    mem_frames = frames // 2
    q, k, v = (torch.randn(B, frames * T, N, d) for _ in range(3))
    k_mem, v_mem = (torch.randn(B, mem_frames * Tm, N, d) for _ in range(2))
    eligible = memory_eligibility(frames, mem_frames, window, 2)
    scores = torch.randn(B, frames, mem_frames).masked_fill(~eligible, float("-inf"))
    retrieval = select_memory(scores, top_k)
    got = windowed_memory_attention(q, k, v, frames, window, k_mem, v_mem, retrieval, chunk_frames=3)
    want = naive_memory_attention(q, k, v, k_mem, v_mem, scores, frames, min(window, frames), top_k)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_window_and_eligibility_follow_the_reference():
    assert window_starts(40, 5).tolist()[:5] == [0, 0, 0, 1, 2]
    assert window_starts(40, 5).tolist()[-3:] == [35, 35, 35]
    eligible = memory_eligibility(40, 20, 5, 2)
    # frame 0: window 0..4 holds memory frames 0 (0,1) and 1 (2,3); memory frame 2 (4,5) sticks out
    assert eligible[0, :3].tolist() == [False, False, True]
    # frame 10: window 8..12 holds memory frames 4 (8,9) and 5 (10,11)
    assert (~eligible[10]).nonzero().flatten().tolist() == [4, 5]
    assert eligible.sum(1).min() == 18


def test_short_clip_clamps_top_k_and_masks_ineligible():
    eligible = memory_eligibility(6, 3, 5, 2)
    scores = torch.zeros(1, 6, 3).masked_fill(~eligible, float("-inf"))
    r = select_memory(scores, 10)
    assert r.indices.shape == (1, 6, 3)  # clamped to the number of memory frames
    assert not r.valid.all()
    chosen_ok = eligible[torch.arange(6)[:, None], r.indices[0]]
    assert torch.equal(chosen_ok, r.valid[0])  # exactly the eligible picks are marked valid


def test_returned_retrieval_is_consistent():
    model = random_model()
    x = inputs(frames=12)
    _, retrievals = run(model, x, return_retrieval=True)
    assert len(retrievals) == model.cfg.num_layers
    eligible = memory_eligibility(12, 6, 5, 2)
    for r in retrievals:
        assert r.scores.dtype == torch.float32
        assert (r.scores[..., :-1] >= r.scores[..., 1:]).all()  # best first
        assert eligible[torch.arange(12)[:, None], r.indices[0]][r.valid[0]].all()  # never an in-window frame
    full_model = with_config(model, attention="full")
    assert run(full_model, x, return_retrieval=True)[1] == [None, None]


def test_bf16_model_scores_retrieval_in_float32():
    model = random_model().to(torch.bfloat16)
    x = inputs(frames=8)
    out, retrievals = run(model, x, return_retrieval=True)
    assert out.dtype == torch.bfloat16
    assert all(r.scores.dtype == torch.float32 and r.all_scores.dtype == torch.float32 for r in retrievals)


def yaw_cameras(yaws: torch.Tensor) -> torch.Tensor:
    """(F, 12) relative cameras turning about the vertical axis (columns right, down, forward; no translation)."""
    c, s, zero, one = yaws.cos(), yaws.sin(), torch.zeros_like(yaws), torch.ones_like(yaws)
    rotation = torch.stack(
        [torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1)], -2
    )
    return torch.cat([rotation, torch.zeros(len(yaws), 3, 1)], -1).reshape(len(yaws), 12)


def test_camera_retrieval_ranks_memory_frames_by_viewing_direction():
    model = random_model(top_k=3)
    frames = 12
    yaws = torch.tensor([0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.2, 0.9, 0.6, 0.3, 0.0, -0.3])  # pans out and back
    cams = yaw_cameras(yaws)[None]
    x = {**inputs(frames=frames), "cam_context": cams[:, :6], "cam_target": cams[:, 6:]}
    camera = with_config(model, retrieval="camera")
    out, retrievals = run(camera, x, return_retrieval=True)
    # the expected choice, brute force: memory frame j = frames 2j, 2j+1; rank eligible ones by the angle between
    # frame i's direction and their mean direction (same yaw axis: the mean direction's yaw is the mean yaw)
    eligible = memory_eligibility(frames, frames // 2, 5, 2)
    memory_yaw = yaws.reshape(-1, 2).mean(1)
    for i in range(frames):
        distance = [(abs(float(yaws[i] - memory_yaw[j])), j) for j in range(frames // 2) if eligible[i, j]]
        expected = [j for _, j in sorted(distance)[:3]]
        for r in retrievals:  # every block makes the same, camera-given choice
            assert r.indices[0, i].tolist() == expected, (i, r.indices[0, i].tolist(), expected)
    # it is a real change of the computation, and only of the retrieval: with top-k 0 both equal window mode
    assert not torch.allclose(out, run(model, x))
    assert torch.equal(
        run(with_config(model, retrieval="camera", top_k=0), x), run(with_config(model, attention="window"), x)
    )
    with pytest.raises(ConfigError, match="retrieval: expected one of"):
        dit_config("debug", retrieval="fov")


def test_aligned_views_pick_the_closest_heading_and_the_latest_of_equals():
    yaws = torch.tensor([0.0, 0.8, 0.0, -0.8, 0.8, 0.4])  # context: headings 0 and 0.8 held twice each
    context = yaw_cameras(yaws)[None]
    target = yaw_cameras(torch.tensor([0.75, 0.05, -0.5, 0.3, 0.8]))[None]
    # 0.75 -> the later of frames 1 and 4; 0.05 -> the later of 0 and 2; -0.5 -> 3; 0.3 -> 5 (0.4); 0.8 -> 4
    assert aligned_views(context, target).tolist() == [[4, 2, 3, 5, 4]]
    batch = aligned_views(torch.cat([context, context.flip(1)]), torch.cat([target, target]))
    assert batch[1].tolist() == [4, 5, 2, 0, 4]  # per item: reversed context, ties again to the latest index


def test_aligned_view_input_adds_the_chosen_context_frame_to_each_target_frame():
    model = random_model(aligned_view_input=True)
    frames, n_ctx = 8, 4
    yaws = torch.tensor([0.0, 0.5, 1.0, 1.5, 1.4, 0.1, 0.9, 0.6])
    cams = yaw_cameras(yaws)[None]
    x = {**inputs(frames=frames, context_frames=n_ctx), "cam_context": cams[:, :n_ctx], "cam_target": cams[:, n_ctx:]}
    latents, tokens = x["latents"], 2 * 3  # debug: patch (1, 2, 2) over 8 x 12 latents
    with torch.no_grad():
        embedded = rearrange(model.patch_embedding(latents), "b d f h w -> b (f h w) d")
        added = model._add_aligned_view(embedded, latents, x["cam_context"], x["cam_target"])
        views = rearrange(model.view_embedding(latents), "b d f h w -> b f (h w) d")
    added = rearrange(added, "b (f t) d -> b f t d", f=frames)
    embedded = rearrange(embedded, "b (f t) d -> b f t d", f=frames)
    assert added.shape[2] == tokens * 4
    torch.testing.assert_close(added[:, :n_ctx], embedded[:, :n_ctx])  # context frames untouched
    for target, source in enumerate([3, 0, 2, 1]):  # yaw 1.4 -> 1.5, 0.1 -> 0.0, 0.9 -> 1.0, 0.6 -> 0.5
        torch.testing.assert_close(added[:, n_ctx + target], embedded[:, n_ctx + target] + views[:, source])
    # initialised as the patch embedding (no bias), the model is the one without the option fed each target frame's
    # latents plus its aligned view's (the embedding is linear)
    plain = HydraDiT(model.cfg.replace(aligned_view_input=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("view_embedding.")})
    assert not torch.allclose(run(model, x), run(plain, x), atol=1e-3)
    model.init_view_embedding()
    summed = latents.clone()
    summed[:, :, n_ctx:] += latents[:, :, [3, 0, 2, 1]]
    torch.testing.assert_close(run(model, x), run(plain, {**x, "latents": summed}), rtol=1e-4, atol=1e-4)
    fresh = HydraDiT(dit_config("debug", aligned_view_input=True))
    fresh.init_weights()
    assert torch.equal(fresh.view_embedding.weight, fresh.patch_embedding.weight)
    assert torch.count_nonzero(fresh.view_embedding.bias) == 0


def test_aligned_view_gate_blends_the_clean_sample_towards_the_aligned_view():
    frames, n_ctx = 8, 4
    cams = yaw_cameras(torch.tensor([0.0, 0.5, 1.0, 1.5, 1.4, 0.1, 0.9, 0.6]))[None]
    x = {**inputs(frames=frames, context_frames=n_ctx), "cam_context": cams[:, :n_ctx], "cam_target": cams[:, n_ctx:]}
    model = random_model(prediction="sample", aligned_view_gate=True)
    plain = HydraDiT(model.cfg.replace(aligned_view_gate=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("view_gate.")})
    sigma = float(x["timestep"]) / 1000
    x0 = lambda m: x["latents"] - sigma * run(m, x)  # noqa: E731  (the model returns (x_t - x0) / sigma)
    view = x["latents"][:, :, [3, 0, 2, 1]]  # yaw 1.4 -> 1.5, 0.1 -> 0.0, 0.9 -> 1.0, 0.6 -> 0.5
    own = x0(plain)
    for logit in (-4.0, 0.0, 2.0):  # a constant gate: x0 + sigmoid(logit) * (view - x0) on target frames only
        with torch.no_grad():
            model.view_gate.weight.zero_()
            model.view_gate.bias.fill_(logit)
        blended = x0(model)
        torch.testing.assert_close(blended[:, :, :n_ctx], own[:, :, :n_ctx], rtol=1e-4, atol=1e-4)
        expected = torch.lerp(own[:, :, n_ctx:], view, torch.sigmoid(torch.tensor(logit)))
        torch.testing.assert_close(blended[:, :, n_ctx:], expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # a gate that reads the features: per value, not constant
        model.view_gate.weight.normal_()
    gated = x0(model)[:, :, n_ctx:]
    share = (gated - own[:, :, n_ctx:]) / (view - own[:, :, n_ctx:])
    assert share.min() > -1e-3 and share.max() < 1 + 1e-3 and share.std() > 0.1
    fresh = HydraDiT(dit_config("debug", prediction="sample", aligned_view_gate=True))
    fresh.init_weights()
    assert torch.count_nonzero(fresh.view_gate.weight) == 0 and torch.all(fresh.view_gate.bias == VIEW_GATE_BIAS)
    with pytest.raises(ConfigError, match="aligned_view_gate: needs prediction"):
        dit_config("debug", aligned_view_gate=True)


def test_checkpoint_without_aligned_view_loads_with_it_initialised(tmp_path):
    model = random_model()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = hydra_wm.load_dit(path, num_heads=2, aligned_view_input=True)
    assert loaded.cfg.aligned_view_input
    assert torch.equal(loaded.view_embedding.weight, model.patch_embedding.weight)
    assert torch.count_nonzero(loaded.view_embedding.bias) == 0
    x = inputs(frames=6)
    assert not torch.allclose(run(loaded, x), run(model, x), atol=1e-3)
    # a file with the embedding loads it (and its config from the metadata)
    with torch.no_grad():
        loaded.view_embedding.weight.normal_()
    metadata = {k: str(v) for k, v in loaded.cfg.to_dict().items()}
    again = hydra_wm.load_dit(save_checkpoint(loaded, tmp_path / "v.safetensors", metadata=metadata))
    assert again.cfg.aligned_view_input
    assert torch.equal(again.view_embedding.weight, loaded.view_embedding.weight)
    torch.testing.assert_close(run(again, x), run(loaded, x))
    gated = hydra_wm.load_dit(path, num_heads=2, aligned_view_gate=True, prediction="sample")
    assert torch.count_nonzero(gated.view_gate.weight) == 0 and torch.all(gated.view_gate.bias == VIEW_GATE_BIAS)
    # the embedding without the option is an unexpected key, named
    with pytest.raises(CheckpointError, match="view_embedding.weight"):
        hydra_wm.load_dit(tmp_path / "v.safetensors", aligned_view_input=False)


# ----------------------------------------------------------------------------------------- loading
def save_checkpoint(model: HydraDiT, path, drop_hydra=False, wrap=False, metadata=None):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if drop_hydra:
        state = {k: v for k, v in state.items() if not any(m in k for m in HYDRA_MODULES)}
    if path.suffix == ".safetensors":
        save_file(state, path, metadata=metadata)
    else:
        torch.save({"state_dict": state} if wrap else state, path)
    return path


@pytest.mark.parametrize("name,wrap", [("m.safetensors", False), ("m.pth", False), ("m.ckpt", True)])
def test_load_formats(tmp_path, name, wrap):
    model = random_model()
    path = save_checkpoint(model, tmp_path / name, wrap=wrap)
    loaded = hydra_wm.load_dit(path, num_heads=2)
    assert loaded.cfg.dim == 48 and loaded.cfg.num_heads == 2 and loaded.cfg.ffn_dim == 64
    x = inputs(frames=6)
    torch.testing.assert_close(run(loaded, x), run(model, x))
    assert all(p.device.type == "cpu" for p in loaded.parameters())


def test_heads_from_head_dim_when_not_given(tmp_path):
    path = save_checkpoint(random_model(), tmp_path / "m.safetensors")
    assert hydra_wm.load_dit(path, head_dim=24).cfg.num_heads == 2
    with pytest.raises(CheckpointError, match="head_dim 128"):
        hydra_wm.load_dit(path)  # 48 is not a multiple of Wan's 128-channel heads


def test_base_wan_checkpoint_gets_reference_hydra_init(tmp_path):
    model = random_model()
    path = save_checkpoint(model, tmp_path / "base.safetensors", drop_hydra=True)
    loaded = hydra_wm.load_dit(path, num_heads=2)
    for block in loaded.blocks:
        assert torch.count_nonzero(block.cam_encoder_con.weight) == 0
        assert torch.count_nonzero(block.cam_encoder_tgt.bias) == 0
        assert torch.equal(block.projector.weight, torch.eye(48))
        assert torch.count_nonzero(block.projector.bias) == 0
        assert block.self_attn.tokenizer.conv.weight.abs().max() > 0
    x = inputs(frames=6)
    moved = {**x, "cam_context": x["cam_context"] * 5, "cam_target": -x["cam_target"]}
    torch.testing.assert_close(run(loaded, moved), run(loaded, x))  # zero camera encoders: cameras ignored
    again = hydra_wm.load_dit(path, num_heads=2)
    torch.testing.assert_close(run(again, x), run(loaded, x))  # reproducible tokenizer init


def test_checkpoint_errors_name_the_keys(tmp_path):
    model = random_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["blocks.1.ffn.2.bias"]
    state["blocks.0.extra.weight"] = torch.zeros(3)
    state["head.head.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        hydra_wm.load_dit(tmp_path / "bad.pth", num_heads=2)
    message = str(err.value)
    assert "\n" not in message
    assert "blocks.1.ffn.2.bias" in message and "blocks.0.extra.weight" in message and "head.head.bias" in message

    partial = {k: v for k, v in model.state_dict().items() if "cam_encoder_tgt" not in k}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="partial HyDRA"):
        hydra_wm.load_dit(tmp_path / "partial.pth", num_heads=2)
    with pytest.raises(CheckpointError, match="not found"):
        hydra_wm.load_dit(tmp_path / "missing.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        hydra_wm.load_dit(tmp_path / "junk.pth")


def test_loading_assigns_instead_of_copying(tmp_path, monkeypatch):
    """The model's parameters are the checkpoint's own tensors (meta construction + assign), never copies,
    so a 2B-parameter file is not held twice."""
    import hydra_wm.models.loading as loading

    path = save_checkpoint(random_model(), tmp_path / "m.pth")
    read = {}

    def spy(p, **kwargs):
        state, metadata = original(p, **kwargs)
        read.update(state)
        return state, metadata

    original = loading.read_state_dict
    monkeypatch.setattr(loading, "read_state_dict", spy)
    loaded = hydra_wm.load_dit(path, num_heads=2)
    params = dict(loaded.named_parameters())
    assert len(read) == len(params)
    assert all(params[k].data_ptr() == t.data_ptr() for k, t in read.items())


def test_overrides_and_dtype(tmp_path):
    path = save_checkpoint(random_model(), tmp_path / "m.safetensors")
    loaded = hydra_wm.load_dit(path, num_heads=2, attention="window", top_k=3, dtype=torch.bfloat16)
    assert loaded.cfg.attention == "window" and loaded.cfg.top_k == 3
    assert hydra_wm.load_dit(path, num_heads=2, retrieval="camera").cfg.retrieval == "camera"
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())


@pytest.mark.slow
def test_parity_cli(capsys, monkeypatch, parity):
    """The command's verdict and errors; its forward pass of the fixture is the one the parity test ran."""
    import hydra_wm.models.parity
    from hydra_wm.cli import main

    monkeypatch.setattr(hydra_wm.models.parity, "run_parity", parity)

    assert main(["parity", str(FIXTURES / "official_dit_parity")]) == 0
    assert "[ok]" in capsys.readouterr().out
    assert main(["parity", str(FIXTURES / "nope")]) == 2
    assert "nope_io.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("attention", ["memory", "full"])
def test_attention_probe_measures_how_sharply_each_query_attends(attention):
    from hydra_wm.models.attention import AttentionProbe

    model, x = random_model(attention=attention, window=3, top_k=1), inputs()  # 8 frames of 4x6 tokens
    expected = run(model, x)
    window_keys = 3 * 24
    keys = window_keys + 6 if attention == "memory" else 8 * 24  # + one retrieved memory frame of 2x3 tokens
    with torch.no_grad():
        for block in model.blocks:  # zero queries: every logit 0, uniform attention over the keys
            block.self_attn.norm_q.weight.zero_()
    probe = AttentionProbe(window_keys)
    run(model, x, attention_hook=probe)
    calls = probe.calls
    chunks = -(-8 // model.cfg.attention_chunk_frames) if attention == "memory" else 1
    assert len(calls) == model.cfg.num_layers * chunks and {c.num_keys for c in calls} == {keys}
    for c in calls:
        assert torch.allclose(c.effective_keys, torch.tensor(float(keys)), rtol=1e-4)
        assert torch.allclose(c.tail_mass, torch.tensor(1 - window_keys / keys), atol=1e-5)
    with torch.no_grad():
        for block in model.blocks:  # large gains: sharp attention, a handful of keys per query
            block.self_attn.norm_q.weight.fill_(30.0)
            block.self_attn.norm_k.weight.fill_(30.0)
    probe = AttentionProbe(window_keys)
    sharp = run(model, x, attention_hook=probe)
    assert max(float(c.effective_keys.mean()) for c in probe.calls) < keys / 10
    assert torch.equal(run(model, x), sharp)  # the hook changes nothing the model computes
    assert not torch.allclose(sharp, expected)


@pytest.mark.parametrize("attention", ["memory", "full", "window"])
def test_attention_logit_scale_multiplies_every_self_attention_logit(attention):
    """attention_logit_scale = s is the model with every q QK-norm gain multiplied by s: the same retrieval, each
    logit q.k/sqrt(d) times s; s < 1 spreads attention over more keys."""
    from hydra_wm.models.attention import AttentionProbe

    x = inputs()
    plain = random_model(attention=attention, window=3, top_k=2)
    scaled = random_model(attention=attention, window=3, top_k=2, attention_logit_scale=0.6)
    with torch.no_grad():
        for block in plain.blocks:
            block.self_attn.norm_q.weight.mul_(0.6)
    probes = AttentionProbe(3 * 24), AttentionProbe(3 * 24)
    expected, out = run(plain, x, attention_hook=probes[0]), run(scaled, x, attention_hook=probes[1])
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, run(random_model(attention=attention, window=3, top_k=2), x), atol=1e-3)
    sharp = AttentionProbe(3 * 24)
    run(random_model(attention=attention, window=3, top_k=2), x, attention_hook=sharp)
    assert float(torch.cat([c.effective_keys.flatten() for c in probes[1].calls]).mean()) > float(
        torch.cat([c.effective_keys.flatten() for c in sharp.calls]).mean()
    )
    with pytest.raises(ConfigError, match="attention_logit_scale"):
        dit_config("debug", attention_logit_scale=0.0)


# ----------------------------------------------------------------------------------------- attention paths
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("attention", ["memory", "window"])
@pytest.mark.parametrize("frames,context", [(12, 6), (3, 1)])  # (3, 1): top-k clamped, unused slots masked
def test_flex_backend_equals_gather_path(attention, frames, context):
    model = random_model(attention=attention)
    x = inputs(frames=frames, context_frames=context, batch=2)  # two items: different retrievals per item
    gather, retrieval = run(model, x, return_retrieval=True)
    flex, flex_retrieval = run(with_config(model, attention_backend="flex"), x, return_retrieval=True)
    torch.testing.assert_close(flex, gather, rtol=1e-5, atol=1e-5)
    for r, s in zip(retrieval, flex_retrieval, strict=True):
        assert (r is None and s is None) or torch.equal(r.indices, s.indices)
    with pytest.raises(ConfigError, match="attention_backend"):
        dit_config("debug", attention_backend="dense")


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_memory_attention_equals_per_frame_loop_with_joint_keys():
    torch.manual_seed(1)
    B, T, Tm, N, d, window, frames, top_k = 2, 6, 2, 2, 8, 5, 10, 3
    mem_frames = frames // 2
    q, k, v = (torch.randn(B, frames * T, N, d) for _ in range(3))
    k_mem, v_mem = (torch.randn(B, mem_frames * Tm, N, d) for _ in range(2))
    eligible = memory_eligibility(frames, mem_frames, window, 2)
    scores = torch.randn(B, frames, mem_frames).masked_fill(~eligible, float("-inf"))
    retrieval = select_memory(scores, top_k)
    want = naive_memory_attention(q, k, v, k_mem, v_mem, scores, frames, window, top_k)
    joint_k, joint_v = torch.cat([k, k_mem], dim=1), torch.cat([v, v_mem], dim=1)  # keys as the DiT builds them
    for backend in ("gather", "flex"):
        got = windowed_memory_attention(q, joint_k, joint_v, frames, window, retrieval=retrieval, backend=backend)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("grad", [False, True])
def test_large_gathers_go_in_chunks_of_bounded_size(monkeypatch, grad):
    from hydra_wm.models import memory

    torch.manual_seed(2)
    B, T, Tm, N, d, window, frames = 1, 6, 2, 2, 8, 5, 12
    q, k, v = (torch.randn(B, frames * T, N, d, requires_grad=grad) for _ in range(3))
    k_mem, v_mem = (torch.randn(B, frames // 2 * Tm, N, d) for _ in range(2))
    scores = torch.randn(B, frames, frames // 2).masked_fill(~memory_eligibility(frames, frames // 2, window, 2), -1e9)
    retrieval = select_memory(scores, 2)
    keys_per_frame = window * T + 2 * Tm
    frame_bytes = keys_per_frame * N * d * 4
    want = windowed_memory_attention(q, k, v, frames, window, k_mem, v_mem, retrieval, chunk_frames=0)
    monkeypatch.setattr(memory, "GATHER_BYTES", 0)  # no all-at-once gather
    monkeypatch.setattr(memory, "CHUNK_BYTES", 3 * frame_bytes)  # at most 3 frames' keys per gather
    calls = []
    got = windowed_memory_attention(
        q, k, v, frames, window, k_mem, v_mem, retrieval, chunk_frames=5, hook=lambda q_, k_, v_, m: calls.append(k_)
    )
    assert [c.shape[0] for c in calls] == [3, 3, 3, 3] and {c.shape[2] for c in calls} == {keys_per_frame}
    torch.testing.assert_close(got, want)
    if grad:  # backward through the chunked gathers reaches every input
        got.sum().backward()
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, k, v))


def test_rope_grid_equals_per_token_angles():
    from hydra_wm.models.dit import Rope3D

    cases = [(128, (6, 5, 7), (1, 1, 1), (0, 0, 0)), (24, (4, 3, 2), (2, 2, 2), (0.5, 0, 0))]
    for head_dim, shape, strides, offsets in cases:
        rope = Rope3D(head_dim, 10000.0)
        f, r, c = torch.meshgrid(
            *(torch.arange(n, dtype=torch.float64) * s + o for n, s, o in zip(shape, strides, offsets, strict=True)),
            indexing="ij",
        )
        angles = rope.angles(f.flatten(), r.flatten(), c.flatten())[:, None, :]
        want = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
        assert torch.equal(rope.grid(*shape, strides=strides, offsets=offsets), want)  # bit for bit


@pytest.mark.parametrize("batch", [1, 2])  # batch 1: the keys' parts are rotated in place, one by one
def test_inference_reuses_temporaries_without_changing_results_or_inputs(batch):
    model = random_model()
    x = inputs(frames=8, batch=batch)
    args = (x["latents"], x["timestep"], x["context"], x["cam_context"], x["cam_target"])
    copies = [a.clone() for a in args]
    inference = run(model, x)  # no autograd: results written over temporaries
    with torch.enable_grad():
        training = model(*args)  # autograd on: every op allocates its result
    assert training.requires_grad and torch.equal(inference, training.detach())  # bit for bit
    assert all(torch.equal(a, c) for a, c in zip(args, copies, strict=True))  # inputs untouched
    block, h = model.blocks[0], torch.randn(batch, 8 * 24, model.cfg.dim)
    kept = h.clone()
    t_mod, cams = torch.randn(batch, 6, model.cfg.dim), (x["cam_context"], x["cam_target"])
    rope = model.rope_tables((8, 4, 6), None)
    with torch.no_grad():
        block(h, torch.randn(batch, 5, model.cfg.dim), t_mod, cams, (8, 4, 6), rope)
    assert torch.equal(h, kept)  # a block never overwrites the residual stream it was given


# ----------------------------------------------------------------------------------------- camera-aware RoPE
def _turn_cameras(yaws: Tensor) -> Tensor:
    """(1, F, 12) relative cameras turning about the vertical (down) axis by `yaws` radians, random positions."""
    c, s = torch.cos(yaws), torch.sin(yaws)
    zero, one = torch.zeros_like(yaws), torch.ones_like(yaws)
    rotation = torch.stack([torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1),
                            torch.stack([-s, zero, c], -1)], -2)  # fmt: skip
    position = torch.randn(len(yaws), 3, 1, generator=torch.Generator().manual_seed(0))
    return torch.cat([rotation, position], dim=-1).reshape(1, len(yaws), 12)


def test_camera_yaw_is_the_turn_about_the_vertical_axis_unwrapped():
    from hydra_wm.flatland import flatland_config, render_clip
    from hydra_wm.flatland.dataset import clip_to_item
    from hydra_wm.models.dit import camera_yaw

    yaws = torch.tensor([0.0, 0.5, 2.0, 3.0, 3.6, 5.0, 6.5, 4.0, 1.5, -1.0], dtype=torch.float64)  # past +-pi, back
    torch.testing.assert_close(camera_yaw(_turn_cameras(yaws))[0], yaws, rtol=0, atol=1e-6)
    # Flatland's tour camera turns most of the way round (clip 1: -67.5 to +270 degrees): in panorama pixels the
    # yaw is the world's own (whose angles wrap at 360), continuous from frame to frame
    config = flatland_config("long-glance")
    clip = render_clip(config, 0, 1)
    item = clip_to_item(clip, config, 1)
    cameras = torch.cat([item["context_cameras"], item["target_cameras"]])[None]
    P = config.panorama_width
    pixels = camera_yaw(cameras)[0] * P / (2 * math.pi)
    pixels = pixels - pixels[0]  # relative cameras share one reference frame: only differences matter
    truth = torch.from_numpy((clip.yaw_deg - clip.yaw_deg[0]) * P / 360.0)
    wrapped = torch.remainder(pixels - truth + P / 2, P) - P / 2
    torch.testing.assert_close(wrapped, torch.zeros_like(truth), atol=1e-3, rtol=0)
    assert float(pixels.max() - pixels.min()) > P * 0.9 and float(pixels.diff().abs().max()) < P / 2


def test_rope_yaw_columns_shift_each_frames_columns_and_nothing_else():
    from hydra_wm.models.dit import Rope3D

    rope = Rope3D(24, 10000.0)
    shift = torch.tensor([[0.0, 1.0, -2.5], [3.0, 0.0, 0.25]])
    table = rope.grid(3, 2, 4, column_shift=shift)
    assert table.shape == (2, 24, 1, 12)
    for b in range(2):
        f, r, c = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (3, 2, 4)), indexing="ij")
        angles = rope.angles(f.flatten(), r.flatten(), (c + shift[b].double()[f.long()]).flatten())[:, None, :]
        torch.testing.assert_close(table[b], torch.polar(torch.ones_like(angles), angles).to(torch.complex64))
    # no shift: the screen positions, as the reference
    torch.testing.assert_close(rope.grid(3, 2, 4, column_shift=torch.zeros(1, 3))[0], rope.grid(3, 2, 4))


def test_rope_yaw_heads_choose_which_heads_see_world_columns():
    model = random_model(attention="memory")
    turn = lambda a, b: _turn_cameras(torch.linspace(a, b, 4))  # noqa: E731
    x = dict(inputs(frames=8, batch=1), cam_context=turn(0, 1), cam_target=turn(1, 3))
    yawed = with_config(model, rope_yaw_columns=1.5)
    # every head weighted 1 is `rope_yaw_columns` alone; every head 0 is the screen's columns (the reference)
    torch.testing.assert_close(run(with_config(yawed, rope_yaw_heads=(1.0, 1.0)), x), run(yawed, x))
    torch.testing.assert_close(run(with_config(yawed, rope_yaw_heads=(0.0, 0.0)), x), run(model, x))
    one = run(with_config(yawed, rope_yaw_heads=(0.0, 1.0)), x)
    assert min((one - run(yawed, x)).abs().max(), (one - run(model, x)).abs().max()) > 1e-3
    # the tables: head 0 the screen's, head 1 shifted by each frame's yaw
    cams = torch.cat([x["cam_context"], x["cam_target"]], dim=1)
    tables = with_config(yawed, rope_yaw_heads=(0.0, 1.0)).rope_tables_per_block((8, 2, 4), "cpu", cams)[0]
    torch.testing.assert_close(tables["tokens"][0, :, 0], model.rope_tables((8, 2, 4), "cpu")["tokens"][:, 0])
    torch.testing.assert_close(tables["tokens"][0, :, 1], yawed.rope_tables((8, 2, 4), "cpu", cams)["tokens"][0, :, 0])


def test_rope_head_velocity_shears_each_heads_columns_by_its_frame_and_memory_tokens_alike():
    model = random_model(attention="memory")
    sheared = with_config(model, rope_head_velocity=(0.0, 0.75))  # debug: 2 heads, the same in both blocks
    ropes = sheared.rope_tables_per_block((3, 2, 4), "cpu")
    plain = model.rope_tables((3, 2, 4), "cpu")
    assert ropes[0] is ropes[1] and ropes[0]["tokens"].shape == (1, 24, 2, 12)
    for part in ("tokens", "memory"):
        # head 0 (v = 0) keeps the reference's table; head 1's columns sit at column - 0.75 * frame
        torch.testing.assert_close(ropes[0][part][0, :, 0], plain[part][:, 0])
    f, r, c = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (3, 2, 4)), indexing="ij")
    angles = model.rope.angles(f.flatten(), r.flatten(), (c - 0.75 * f).flatten())
    expected = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
    torch.testing.assert_close(ropes[0]["tokens"][0, :, 1], expected)
    # a key that walked v columns a frame scores against the query as one that stood still does without the shear
    # (v = 1, a whole column a frame: from (frame 0, column 1) to (frame 2, column 3)); RoPE scores are relative
    q, k = torch.randn(12, dtype=torch.complex64), torch.randn(12, dtype=torch.complex64)
    score = lambda t, a, b: (q * t[a] * (k * t[b]).conj()).real.sum()  # noqa: E731
    walk = with_config(model, rope_head_velocity=(1.0, 1.0)).rope_tables_per_block((3, 2, 4), "cpu")[0]["tokens"]
    walk, still = walk[0, :, 0].reshape(3, 2, 4, 12), plain["tokens"][:, 0].reshape(3, 2, 4, 12)
    torch.testing.assert_close(score(walk, (2, 1, 3), (0, 1, 1)), score(still, (2, 1, 3), (0, 1, 3)))
    assert not torch.allclose(score(still, (2, 1, 3), (0, 1, 1)), score(still, (2, 1, 3), (0, 1, 3)))
    # per block: one value per block and head gives each block its own table
    per_block = with_config(model, rope_head_velocity=(0.0, 0.5, 0.0, -0.5)).rope_tables_per_block((3, 2, 4), "cpu")
    assert not torch.allclose(per_block[0]["tokens"], per_block[1]["tokens"])
    # through the model: zero velocities and screen columns on every head are the reference; a shear changes it
    x = inputs(frames=8, batch=1)
    torch.testing.assert_close(run(with_config(model, rope_head_velocity=(0.0, 0.0)), x), run(model, x))
    assert (run(sheared, x) - run(model, x)).abs().max() > 1e-3
    with pytest.raises(ConfigError, match="rope_head_velocity"):
        dit_config("debug", rope_head_velocity=(0.1, 0.2, 0.3))
    with pytest.raises(ConfigError, match="rope_yaw_heads"):
        dit_config("debug", rope_yaw_heads=(math.nan, 1.0))


@pytest.mark.parametrize("attention", ["memory", "full"])
def test_rope_yaw_columns_off_is_the_reference_and_on_keeps_items_independent(attention):
    model = random_model(attention=attention)
    x = inputs(frames=8, batch=2)
    yawed = with_config(model, rope_yaw_columns=1.5)
    # cameras that do not turn: the shifted tables are the plain ones
    still = dict(x, cam_context=_turn_cameras(torch.zeros(4)).expand(2, -1, -1).clone(),
                 cam_target=_turn_cameras(torch.zeros(4)).expand(2, -1, -1).clone())  # fmt: skip
    torch.testing.assert_close(run(yawed, still), run(model, still), rtol=1e-5, atol=1e-5)
    # turning cameras change the result, item by item (each item its own table)
    turn = lambda a, b: _turn_cameras(torch.linspace(a, b, 4))  # noqa: E731
    turning = dict(x, cam_context=torch.cat([turn(0, 1), turn(0, -2)]), cam_target=torch.cat([turn(1, 3), turn(-2, 0)]))
    out = run(yawed, turning)
    assert (out - run(model, turning)).abs().max() > 1e-3
    for b in range(2):
        single = {k: v if k == "timestep" else v[b : b + 1] for k, v in turning.items()}
        torch.testing.assert_close(run(yawed, single), out[b : b + 1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="rope_yaw_columns"):
        dit_config("debug", rope_yaw_columns=math.inf)
