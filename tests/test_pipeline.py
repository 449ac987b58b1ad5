"""The denoising loop, guidance batching, noise seeding, offload hooks and retrieval recording."""

import pytest
import torch
from torch import nn

from hydra_wm.config import dit_config
from hydra_wm.errors import CheckpointError, InputError
from hydra_wm.evaluation.plots import plot_retrieval
from hydra_wm.flow import FlowMatchSchedule, round_timestep_bf16
from hydra_wm.models.dit import HydraDiT
from hydra_wm.models.memory import aligned_view_latents
from hydra_wm.offload import ModelSlots, enable_block_offload, remove_block_offload
from hydra_wm.pipeline import (
    CAMERA_DIM,
    LATENT_STRIDE,
    MIN_SIZE,
    SIZE_MULTIPLE,
    Conditioning,
    GenerationConfig,
    ModelFiles,
    RetrievalRecorder,
    ViewSnap,
    denoise,
    initial_noise,
    save_retrieval,
)

FC, FT, SIZE = 3, 3, 4  # latent context frames, target frames, latent height = width


def tiny_dit(**overrides) -> HydraDiT:
    torch.manual_seed(0)
    return HydraDiT(dit_config("debug", **overrides)).eval()  # PyTorch default init: every output non-zero


def conditioning(cfg, batch: int = 1, negative: bool = True, seed: int = 1) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    text = lambda: torch.randn(batch, 7, cfg.text_dim, generator=g)
    return Conditioning(
        context_latents=torch.randn(batch, cfg.in_dim, FC, SIZE, SIZE, generator=g),
        text=text(),
        negative_text=text() if negative else None,
        cam_context=0.1 * torch.randn(batch, FC, 12, generator=g),
        cam_target=0.1 * torch.randn(batch, FT, 12, generator=g),
    )


def run_denoise(dit, cond, noise, **kwargs):
    schedule = FlowMatchSchedule(num_inference_steps=3, shift=5.0)
    return denoise(dit, schedule, noise, cond, progress=False, **kwargs)


# ----------------------------------------------------------------------------------------- loop properties


class ExactVelocityDiT(nn.Module):
    """Predicts the exact straight-path velocity `noise - x0` for the prompt pass and 0 for the negative pass
    (so that guidance `g` needs the prompt pass to return (noise - x0) / g); checks what the loop feeds it."""

    def __init__(self, context, x0, noise, guidance):
        super().__init__()
        self.context, self.x0, self.noise, self.guidance = context, x0, noise, guidance
        self.timesteps = []

    def forward(
        self,
        latents,
        timestep,
        text,
        cam_context,
        cam_target,
        *,
        num_context_frames,
        return_retrieval,
        attention_hook=None,
    ):
        fc = num_context_frames
        assert fc == self.context.shape[2] and latents.shape[2] == fc + self.x0.shape[2]
        torch.testing.assert_close(latents[:, :, :fc], self.context.expand(latents.shape[0], -1, -1, -1, -1))
        self.timesteps.append(timestep.clone())
        out = torch.zeros_like(latents)
        prompt = text[:, 0, 0] > 0  # prompt embeddings are +1, negative -1
        out[prompt, :, fc:] = (self.noise - self.x0) / self.guidance
        out[:, :, :fc] = 1e6  # whatever the DiT says about the context must not leak into the result
        return out, [None]


def yaw_cameras(yaws) -> torch.Tensor:
    """(1, F, 12) cameras turning about the vertical axis (viewing direction = third column of R)."""
    c, s = torch.cos(torch.tensor(yaws)), torch.sin(torch.tensor(yaws))
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rotation = torch.stack(
        [torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1)], -2
    )
    return torch.cat([rotation, torch.zeros(len(yaws), 3, 1)], -1).reshape(1, len(yaws), 12)


def test_aligned_view_latents_gather_the_closest_heading_per_target_frame():
    context = torch.arange(3.0).reshape(1, 1, 3, 1, 1).expand(1, 2, 3, 2, 2)  # latent frame i holds the value i
    cam_context, cam_target = yaw_cameras([0.0, 0.7, 1.4]), yaw_cameras([1.3, 0.1, 0.8, 0.65])
    views = aligned_view_latents(context, cam_context, cam_target)
    assert views.shape == (1, 2, 4, 2, 2) and views[0, 0, :, 0, 0].tolist() == [2, 0, 1, 1]
    # two latent frames per token frame (patch_t 2): token frame j holds latent frames 2j, 2j + 1
    pairs = torch.arange(6.0).reshape(1, 1, 6, 1, 1)
    views = aligned_view_latents(pairs, cam_context, cam_target[:, :2], patch_frames=2)
    assert views[0, 0, :, 0, 0].tolist() == [4, 5, 0, 1]


def test_view_snap_replaces_the_estimate_where_it_is_within_tolerance():
    views = torch.tensor([0.0, 1.0, 2.0, 3.0])
    x0 = torch.tensor([0.05, 1.5, 1.9, -3.0])
    assert ViewSnap(views, 0.2)(x0).tolist() == pytest.approx([0.0, 1.5, 2.0, -3.0])
    assert torch.equal(ViewSnap(views, 0.0)(x0), x0)


def test_sampling_with_view_snap_lands_on_the_view_where_the_model_agrees():
    """With a model that predicts x0 exactly, snapping at a tolerance above |x0 - view| gives the view itself, and
    below it leaves x0; in between, value by value."""
    g = torch.Generator().manual_seed(0)
    context, noise = torch.randn(1, 16, FC, 4, 6, generator=g), torch.randn(1, 16, FT, 4, 6, generator=g)
    cams = yaw_cameras([0.0, 0.5, 1.0]), yaw_cameras([0.9, 0.1, 0.6])
    views = context[:, :, [2, 0, 1]]
    x0 = views + torch.where(torch.rand(views.shape, generator=g) < 0.5, 0.05, 3.0)  # near the view, or far from it
    dit = ExactVelocityDiT(context, x0, noise, 1.0)
    cond = Conditioning(context, torch.ones(1, 5, 8), None, *cams)
    schedule = FlowMatchSchedule(num_inference_steps=5, shift=3.0)
    plain = denoise(dit, schedule, noise, cond, guidance_scale=1.0, progress=False)
    torch.testing.assert_close(plain, x0, atol=1e-5, rtol=1e-5)
    snap = ViewSnap(aligned_view_latents(context, *cams), 0.5)
    snapped = denoise(dit, schedule, noise, cond, guidance_scale=1.0, progress=False, view_snap=snap)
    expected = torch.where((x0 - views).abs() < 0.5, views, x0)
    torch.testing.assert_close(snapped, expected, atol=1e-5, rtol=1e-5)
    assert 0 < int((snapped == views).sum()) < views.numel()


@pytest.mark.parametrize("cfg_batch", [True, False])
def test_sampler_with_exact_velocity_recovers_x0(cfg_batch):
    g = torch.Generator().manual_seed(0)
    context, x0, noise = (torch.randn(1, 16, f, 4, 6, generator=g) for f in (FC, FT, FT))
    guidance = 5.0
    dit = ExactVelocityDiT(context, x0, noise, guidance)
    cams = torch.zeros(1, FC, 12), torch.zeros(1, FT, 12)
    cond = Conditioning(context, torch.ones(1, 5, 8), -torch.ones(1, 5, 8), *cams)
    schedule = FlowMatchSchedule(num_inference_steps=7, shift=5.0)
    out = denoise(dit, schedule, noise, cond, guidance_scale=guidance, cfg_batch=cfg_batch, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=1e-5)
    # One DiT call per step (batched) or two (sequential), each with the bf16-rounded timestep.
    calls = 1 if cfg_batch else 2
    assert len(dit.timesteps) == calls * 7
    for i, t in enumerate(dit.timesteps[::calls]):
        assert t.item() == round_timestep_bf16(schedule.timesteps[i : i + 1]).item()


def test_cfg_batched_equals_sequential_passes():
    dit = tiny_dit()
    cond = conditioning(dit.cfg)
    noise = initial_noise(3, (1, dit.cfg.in_dim, FT, SIZE, SIZE))
    records = {}
    outs = {}
    for batched in (True, False):
        records[batched] = RetrievalRecorder(passes=2)
        outs[batched] = run_denoise(dit, cond, noise, guidance_scale=5.0, cfg_batch=batched, on_step=records[batched])
    torch.testing.assert_close(outs[True], outs[False], atol=1e-5, rtol=1e-5)
    a, b = (records[k].record(FC, 2) for k in (True, False))
    assert a.indices.shape == (3, dit.cfg.num_layers, 2, FC + FT, min(dit.cfg.top_k, (FC + FT) // 2))
    assert torch.equal(a.indices, b.indices)
    # Guidance matters: with scale 1 (no negative pass) the result differs.
    assert not torch.allclose(outs[True], run_denoise(dit, cond, noise, guidance_scale=1.0), atol=1e-4)


def test_noise_is_seeded_float32_cpu_and_generation_reproducible():
    shape = (1, 16, 2, 4, 6)
    a, b, c = initial_noise(42, shape), initial_noise(42, shape), initial_noise(43, shape)
    assert a.dtype == torch.float32 and a.device.type == "cpu" and a.shape == shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The reference: torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)).
    assert torch.equal(a, torch.randn(shape, generator=torch.Generator().manual_seed(42)))
    dit = tiny_dit()
    cond = conditioning(dit.cfg)
    noise = lambda seed: initial_noise(seed, (1, dit.cfg.in_dim, FT, SIZE, SIZE))
    first, again, other = (run_denoise(dit, cond, noise(s), guidance_scale=5.0) for s in (7, 7, 8))
    assert torch.equal(first, again) and not torch.allclose(first, other)


def test_retrieval_record_saved_and_plotted(tmp_path):
    from safetensors import safe_open

    dit = tiny_dit()
    recorder = RetrievalRecorder(passes=2)
    run_denoise(dit, conditioning(dit.cfg), initial_noise(0, (1, 4, FT, SIZE, SIZE)), on_step=recorder)
    record = recorder.record(FC, 2)
    counts = record.counts(0)  # (S, Nb, F, Fm)
    assert counts.shape == (3, 2, FC + FT, (FC + FT) // 2)
    assert (counts.sum(-1) == record.valid[:, :, 0].sum(-1)).all()
    save_retrieval(tmp_path / "r.safetensors", record)
    with safe_open(str(tmp_path / "r.safetensors"), "pt") as f:
        assert f.get_tensor("indices").shape == record.indices.shape
        assert f.metadata()["num_context_frames"] == str(FC)
    plot_retrieval(record, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("context_frames", 76, r"4k\+1"), ("target_frames", 0, r"4k\+1"), ("height", 488, "multiple of 16"),
     ("width", 16, "at least 32"), ("num_steps", 0, "at least 1")],
)  # fmt: skip
def test_generation_config_rejects_bad_values(field, value, message):
    with pytest.raises(InputError, match=message):
        GenerationConfig(**{field: value})


def test_generation_config_latent_frames():
    config = GenerationConfig()
    assert (config.context_latent_frames, config.target_latent_frames) == (20, 20)
    assert GenerationConfig(context_frames=5, target_frames=81).target_latent_frames == 21
    # the numbers behind them come from the VAE and DiT configs: 4x time compression, 12 numbers per camera,
    # frames in multiples of 8 (VAE) x 2 (patch), at least one more 2x (memory tokenizer)
    assert (LATENT_STRIDE, CAMERA_DIM, SIZE_MULTIPLE, MIN_SIZE) == (4, 12, 16, 32)


def test_missing_files_listed_in_one_message(tmp_path):
    with pytest.raises(CheckpointError) as info:
        ModelFiles.find(tmp_path, tmp_path / "hydra.ckpt")
    message = str(info.value)
    for part in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl", "Wan-AI/Wan2.1-T2V-1.3B",
                 "hydra.ckpt", "H-EmbodVis/HyDRA"):  # fmt: skip
        assert part in message
    assert "\n" not in message
    # With a HyDRA checkpoint, the base DiT is not needed; without one it is.
    assert "diffusion_pytorch_model" not in message
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model"):
        ModelFiles.find(tmp_path)


# ------------------------------------------------------------------------------------------------ offload


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
        self.register_buffer("scale", torch.ones(8))

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return x * self.scale


def test_block_offload_moves_one_block_at_a_time_to_the_device():
    model = Stack()
    seen = []

    def probe(module, args):
        seen.append([b.weight.device.type for b in model.blocks])

    offload = enable_block_offload(model, "meta")
    for block in model.blocks:
        block.register_forward_pre_hook(probe)  # runs after the offload hook, registered first
    assert model.embed.weight.device.type == "meta" and model.scale.device.type == "meta"
    assert all(b.weight.device.type == "cpu" for b in model.blocks)
    out = model(torch.zeros(2, 3, device="meta"))
    assert out.device.type == "meta"
    # While block i runs, its weights are on the device, the others' on the CPU (block i+1 is being prefetched
    # into a separate copy, installed by its own hook).
    assert seen == [["meta", "cpu", "cpu"], ["cpu", "meta", "cpu"], ["cpu", "cpu", "meta"]]
    assert all(b.weight.device.type == "cpu" for b in model.blocks)
    assert offload.fetch_log == [0, 1, 2] and offload.resident_bytes == 0
    assert offload.peak_resident_bytes == 2 * offload.blocks[0].nbytes
    remove_block_offload(model)
    assert all(len(b._forward_pre_hooks) == 1 and not b._forward_hooks for b in model.blocks)  # probes only


def test_block_offloaded_dit_gives_identical_output():
    dit = tiny_dit()
    cond = conditioning(dit.cfg)
    noise = initial_noise(0, (1, 4, FT, SIZE, SIZE))
    expected = run_denoise(dit, cond, noise)
    offload = enable_block_offload(dit, "cpu", prefetch=False)
    torch.testing.assert_close(run_denoise(dit, cond, noise), expected, atol=0, rtol=0)
    assert offload.peak_resident_bytes == max(b.nbytes for b in offload.blocks)
    assert offload.fetch_log == [0, 1] * 3  # 3 steps x 2 blocks, batched CFG: one DiT call per step


def test_model_slots_load_on_demand_and_release():
    loads = []

    def loader():
        loads.append(1)
        return nn.Linear(4, 4)

    slots = ModelSlots({"m": loader}, offload="model", device="cpu")
    with slots.use("m") as model:
        assert model.weight.device.type == "cpu"
    assert model.weight.device.type == "meta"  # storage freed even though we still hold the module
    with slots.use("m"):
        pass
    assert slots.load_count["m"] == 2
    keep = ModelSlots({"m": loader}, offload="none", device="cpu")
    with keep.use("m") as first:
        pass
    with keep.use("m") as second:
        assert second is first and second.weight.device.type == "cpu"
    assert keep.load_count["m"] == 1
    keep.release_all()
    assert first.weight.device.type == "meta"
