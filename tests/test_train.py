"""Training on the debug preset: the loss falls, resuming is bit for bit, the export loads, the recipe holds."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import save_file

from hydra_wm.cli import main
from hydra_wm.config import dit_config
from hydra_wm.data.samples import SUBJECT_MASK, read_sample, write_manifest, write_sample
from hydra_wm.errors import ConfigError, InputError
from hydra_wm.flow import FlowMatchSchedule
from hydra_wm.models.dit import HydraDiT
from hydra_wm.models.loading import load_dit
from hydra_wm.models.state_dicts import METADATA_KEY
from hydra_wm.training import DataOrder, PreprocessedDataset, TrainConfig, collate, flow_matching_loss, train
from hydra_wm.training.checkpoint import read_checkpoint
from hydra_wm.training.loop import build_model, resolve_trainable, set_trainable

CHANNELS, FRAMES, SIZE, TEXT_ROWS, TEXT_DIM = 4, 4, 8, 16, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def make_item(generator: torch.Generator, text_length: int = 10) -> dict[str, torch.Tensor]:
    """Random sample with something to learn: one colour per sample, shared by its context and target clips."""
    text = torch.randn(TEXT_ROWS, TEXT_DIM, generator=generator)
    text[text_length:] = 0
    colour = torch.randn(CHANNELS, 1, 1, 1, generator=generator)
    clip = lambda: colour + 0.1 * torch.randn(CHANNELS, FRAMES, SIZE, SIZE, generator=generator)  # noqa: E731
    return {
        "context_latents": clip(),
        "target_latents": clip(),
        "context_cameras": torch.randn(FRAMES, 12, generator=generator),
        "target_cameras": torch.randn(FRAMES, 12, generator=generator),
        "text": text,
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A preprocessed folder of 8 random samples (4 channels, 4 + 4 latent frames of 8x8, 16 text rows)."""
    root = tmp_path_factory.mktemp("prepared")
    write_manifest(root, {"made_by": "test_train"})
    generator = torch.Generator().manual_seed(0)
    for i in range(8):
        write_sample(root / "samples" / f"s{i}.safetensors", make_item(generator, 6 + i), f"s{i}", f"caption {i}")
    return root


def config(tmp_path, data, **changes) -> TrainConfig:
    values = dict(
        out=str(tmp_path / "run"),
        data=str(data),
        preset="debug",
        steps=6,
        batch_size=2,
        lr=1e-3,
        device="cpu",
        progress=False,
        log_every=100,
        activation_checkpointing=False,
    )
    return TrainConfig(**{**values, **changes})


def test_sample_files_round_trip_with_text_padding_restored(data):
    item = make_item(torch.Generator().manual_seed(0), 6)  # the first sample the fixture wrote
    read = read_sample(data / "samples" / "s0.safetensors")
    assert set(read) == set(item)
    for key in item:
        assert torch.equal(read[key], item[key]), key
    assert len(PreprocessedDataset(data)) == 8


def test_loss_goes_down_on_a_fixed_batch(tmp_path, data):
    dataset = PreprocessedDataset(data)
    batch = collate([dataset[i] for i in range(len(dataset))])  # batch_size = dataset size: every step this batch
    schedule = FlowMatchSchedule()

    def fixed_loss(model):  # the same noise and timesteps every time
        with torch.no_grad():
            gen = torch.Generator().manual_seed(123)
            return sum(flow_matching_loss(model, batch, schedule, gen).item() for _ in range(8)) / 8

    torch.manual_seed(0)
    fresh = HydraDiT(dit_config("debug"))
    fresh.init_weights()
    result = train(config(tmp_path, data, steps=30, batch_size=8, lr=3e-3, export=None))
    before, after = fixed_loss(fresh), fixed_loss(result.model)
    assert after < 0.5 * before, (before, after)
    assert len(result.losses) == 30 and result.step == 30


class SignalAt(torch.utils.data.Dataset):
    """A dataset that sends this process SIGTERM (as a scheduler's time limit does) at its n-th item read."""

    def __init__(self, dataset, n: int):
        self.dataset, self.n, self.reads = dataset, n, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.n:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.dataset[index]


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tmp_path, data):
    changes = dict(ema_decay=0.9, grad_accum=2, warmup_steps=2, lr_schedule="cosine", timesteps="sample",
                   grad_clip=1.0, activation_checkpointing=True, save_every=10)  # fmt: skip
    whole = train(config(tmp_path / "a", data, **changes))
    # 1. stopped by --stop-after at step 2
    first = train(config(tmp_path / "b", data, stop_after=2, **changes))
    assert first.step == 2 and first.export is None and first.checkpoint.name == "step_00000002.safetensors"
    with pytest.raises(ConfigError, match="--resume"):
        train(config(tmp_path / "b", data, **changes))
    with pytest.raises(ConfigError, match="lr"):
        train(config(tmp_path / "b", data, resume=True, **{**changes, "lr": 2e-3}))
    # 2. resumed, then stopped by SIGTERM during step 4 (2 items per micro-batch, 2 micro-batches per step;
    #    read 1 is the setup's look at the data): the step finishes, a checkpoint is saved, the run ends
    second = train(config(tmp_path / "b", data, resume=True, **changes), dataset=SignalAt(PreprocessedDataset(data), 6))
    assert second.step == 4 and second.checkpoint.name == "step_00000004.safetensors"
    # 3. resumed to the end
    resumed = train(config(tmp_path / "b", data, resume=True, **changes))
    assert resumed.step == 6 and first.losses + second.losses + resumed.losses == whole.losses
    expected, actual = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    # EMA, optimiser and RNG states were restored too: the final checkpoints agree bit for bit.
    a, _ = read_checkpoint(whole.checkpoint)
    b, _ = read_checkpoint(resumed.checkpoint)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A 'base Wan2.1' debug DiT file (no HyDRA keys) with a non-zero head, as a pretrained model has."""
    torch.manual_seed(1)
    model = HydraDiT(dit_config("debug"))
    model.init_weights()
    torch.nn.init.normal_(model.head.head.weight, std=0.05)
    hydra = ("self_attn.tokenizer.", "cam_encoder_", "projector.")
    state = {k: v for k, v in model.state_dict().items() if not any(m in k for m in hydra)}
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_file(state, str(path), metadata={"num_heads": "2"})
    return path, state


@pytest.mark.slow
def test_compiled_training_follows_the_eager_run_and_resumes_eager(tmp_path, data):
    """--compile changes how the steps run, not what they compute; the checkpoints hold the plain model."""
    eager = train(config(tmp_path / "a", data, steps=3, export=None))
    compiled = train(config(tmp_path / "b", data, steps=3, export=None, compile=True, stop_after=2))
    assert compiled.losses == pytest.approx(eager.losses[:2], rel=1e-4)
    resumed = train(config(tmp_path / "b", data, steps=3, export=None, resume=True))  # compile may change on resume
    assert resumed.losses == pytest.approx(eager.losses[2:], rel=1e-4)
    expected, actual = eager.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == actual.keys()  # no `_orig_mod.` prefixes from the compiled wrapper
    assert all(torch.allclose(expected[k], actual[k], atol=1e-5) for k in expected)


def test_reference_recipe_from_base_trains_only_hydra_and_exports_a_loadable_model(tmp_path, data, base_checkpoint):
    path, base = base_checkpoint
    result = train(config(tmp_path, data, preset=None, init=str(path), steps=3))
    trained = result.model.state_dict()
    for name, value in base.items():
        trainable = "self_attn." in name
        assert torch.equal(trained[name], value) != trainable, name  # frozen unchanged, trainable moved
    assert trained["blocks.0.cam_encoder_tgt.weight"].abs().sum() > 0  # zero-initialised, now trained
    # The export has every weight under the released flat names, and its config in the metadata.
    loaded = load_dit(result.export)
    assert loaded.cfg == result.model.cfg
    assert all(torch.equal(value, trained[name]) for name, value in loaded.state_dict().items())
    batch = collate([PreprocessedDataset(data)[0]])
    schedule = FlowMatchSchedule()
    with torch.no_grad():
        expected = flow_matching_loss(result.model.eval(), batch, schedule, torch.Generator().manual_seed(5))
        actual = flow_matching_loss(loaded, batch, schedule, torch.Generator().manual_seed(5))
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7)


def test_auto_trainable_continues_with_the_set_a_checkpoint_was_trained_with(tmp_path, data, capsys):
    """A from-scratch export records `all`; continuing from it with `auto` trains every weight again, where a file
    without the record (Wan2.1, HyDRA's release) trains the reference's HyDRA set."""
    scratch = train(config(tmp_path / "a", data, steps=2))
    assert "(trainable=all)" in capsys.readouterr().out
    assert resolve_trainable(config(tmp_path / "b", data, preset=None, init=str(scratch.export))) == "all"
    unrecorded = tmp_path / "plain.safetensors"
    config_only = {k: str(v) for k, v in scratch.model.cfg.to_dict().items()}  # the architecture, no train record
    save_file({k: v.contiguous() for k, v in scratch.model.state_dict().items()}, unrecorded, metadata=config_only)
    continued = config(tmp_path / "c", data, preset=None, init=str(unrecorded), steps=1)
    assert resolve_trainable(continued) == "hydra"
    result = train(continued)
    assert "(trainable=hydra)" in capsys.readouterr().out
    assert torch.equal(result.model.head.head.weight, scratch.model.head.head.weight)  # frozen
    assert (
        load_dit(result.export) is not None
        and resolve_trainable(config(tmp_path / "d", data, preset=None, init=str(result.export))) == "hydra"
    )  # the continuation records what it trained
    explicit = config(tmp_path / "e", data, preset=None, init=str(unrecorded), trainable="all")
    assert resolve_trainable(explicit) == "all"


def test_aligned_view_input_from_a_checkpoint_starts_as_the_patch_embedding_and_trains(tmp_path, data):
    scratch = train(config(tmp_path / "a", data, steps=1))
    assert not scratch.model.cfg.aligned_view_input
    continued = config(tmp_path / "b", data, preset=None, init=str(scratch.export), aligned_view_input=True, steps=2)
    model = build_model(continued, CHANNELS, TEXT_DIM)
    assert model.cfg.aligned_view_input
    assert torch.equal(model.view_embedding.weight, scratch.model.patch_embedding.weight)
    assert "view_embedding.weight" in set_trainable(model, "hydra")  # joins even the reference's set
    result = train(continued)
    assert not torch.equal(result.model.view_embedding.weight, scratch.model.patch_embedding.weight)  # trained
    loaded = load_dit(result.export)
    assert loaded.cfg.aligned_view_input
    assert torch.equal(loaded.view_embedding.weight, result.model.view_embedding.weight)
    kept = build_model(config(tmp_path / "c", data, preset=None, init=str(result.export)), None, None)
    assert kept.cfg.aligned_view_input  # a checkpoint with it keeps it without the flag


def test_aligned_view_gate_from_a_checkpoint_starts_nearly_shut_and_trains(tmp_path, data):
    scratch = train(config(tmp_path / "a", data, steps=1, prediction="sample"))
    continued = config(tmp_path / "b", data, preset=None, init=str(scratch.export), aligned_view_gate=True, steps=2)
    model = build_model(continued, CHANNELS, TEXT_DIM)
    assert torch.count_nonzero(model.view_gate.weight) == 0 and "view_gate.bias" in set_trainable(model, "hydra")
    result = train(continued)
    assert result.model.view_gate.weight.abs().sum() > 0
    assert load_dit(result.export).cfg.aligned_view_gate
    with pytest.raises(ConfigError, match="aligned_view_gate"):  # a velocity model cannot blend its x0
        build_model(config(tmp_path / "c", data, aligned_view_gate=True), CHANNELS, TEXT_DIM)


def test_trainable_sets():
    model = HydraDiT(dit_config("debug"))
    names = set(set_trainable(model, "hydra"))
    assert "blocks.1.self_attn.tokenizer.conv.weight" in names and "blocks.0.projector.bias" in names
    assert "blocks.0.cam_encoder_con.weight" in names and "blocks.0.self_attn.norm_q.weight" in names
    assert not any(part in n for n in names for part in ("cross_attn", "ffn", "head.", "modulation", "embedding"))
    assert all(p.requires_grad == (n in names) for n, p in model.named_parameters())
    window = HydraDiT(dit_config("debug", attention="window"))
    assert not any("tokenizer" in n for n in set_trainable(window, "all"))  # unused by window attention
    assert len(set_trainable(model, "all")) == len(list(model.parameters()))


def test_loss_keeps_context_clean_and_scores_target_frames_only():
    generator = torch.Generator().manual_seed(0)
    batch = collate([make_item(generator), make_item(generator)])
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, latents, timestep, text, cam_context, cam_target, *, num_context_frames):
            seen.update(latents=latents, timestep=timestep, num_context=num_context_frames)
            out = torch.zeros_like(latents)
            out[:, :, :num_context_frames] = 1e6  # context predictions must not count
            return out

    schedule = FlowMatchSchedule()
    loss = flow_matching_loss(Probe(), batch, schedule, torch.Generator().manual_seed(1), weighting="none")
    assert seen["num_context"] == FRAMES
    assert torch.equal(seen["latents"][:, :, :FRAMES], batch["context_latents"])
    assert not torch.equal(seen["latents"][:, :, FRAMES:], batch["target_latents"])
    assert seen["timestep"].shape == (1,)  # one timestep per batch (reference)
    # Zero prediction: loss = mean (noise - x0)^2 over target frames; recompute from the same generator.
    gen = torch.Generator().manual_seed(1)
    index = torch.randint(1000, (1,), generator=gen)
    noise = torch.randn(2, CHANNELS, 2 * FRAMES, SIZE, SIZE, generator=gen)
    expected = (noise[:, :, FRAMES:] - batch["target_latents"]).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    assert torch.equal(seen["timestep"], schedule.train_timesteps[index].to(torch.bfloat16).float())


def test_fresh_preset_overrides_reach_the_model(tmp_path):
    """Memory settings of a fresh preset (`top_k`, `tokenizer_kernel`, `prediction`) shape the model trained."""
    config = TrainConfig(
        data=str(tmp_path),
        preset="debug",
        out=str(tmp_path / "run"),
        top_k=3,
        tokenizer_kernel=(1, 1, 1),
        prediction="sample",
    )
    model = build_model(config, CHANNELS, 16)
    assert (model.cfg.top_k, model.cfg.tokenizer_kernel, model.cfg.prediction) == (3, (1, 1, 1), "sample")
    assert model.blocks[0].self_attn.tokenizer.conv.kernel_size == (1, 1, 1)
    assert build_model(TrainConfig(data=str(tmp_path), preset="debug", out="x", top_k=0), CHANNELS, 16).cfg.top_k == 0
    sized = TrainConfig(data=str(tmp_path), preset="debug", out="x", dim=96, num_heads=2, num_layers=3, ffn_dim=64)
    model = build_model(sized, CHANNELS, 16)
    assert (model.cfg.dim, model.cfg.num_heads, model.cfg.num_layers, model.cfg.ffn_dim) == (96, 2, 3, 64)
    assert len(model.blocks) == 3 and model.blocks[0].ffn[0].weight.shape == (64, 96)


def test_copy_init_makes_attention_a_similarity_search(tmp_path):
    """`copy_init`: keys = queries, one camera embedding for context and target, a mean-pool memory tokenizer."""
    config = TrainConfig(data=str(tmp_path), preset="debug", out="x", copy_init=True, camera_init_std=0.5)
    model = build_model(config, CHANNELS, 16)
    for block in model.blocks:
        attention = block.self_attn
        assert torch.equal(attention.k.weight, attention.q.weight) and torch.equal(attention.k.bias, attention.q.bias)
        assert torch.equal(block.cam_encoder_tgt.weight, block.cam_encoder_con.weight)
        assert block.cam_encoder_con.weight.abs().sum() > 0
    # the tokenizer averages: a memory token of a (2, 2, 2) block of equal tokens is that token
    conv = model.blocks[0].self_attn.tokenizer.conv
    x = torch.randn(1, conv.in_channels, 1, 1, 1).expand(1, conv.in_channels, 2, 2, 2)
    torch.testing.assert_close(conv(x).flatten(), x[0, :, 0, 0, 0])
    plain = build_model(TrainConfig(data=str(tmp_path), preset="debug", out="x"), CHANNELS, 16)
    assert not torch.equal(plain.blocks[0].self_attn.k.weight, plain.blocks[0].self_attn.q.weight)
    with pytest.raises(ConfigError, match="copy_init"):
        TrainConfig(data=str(tmp_path), init="model.safetensors", out="x", copy_init=True)


def test_x0_weighting_is_the_clean_sample_error():
    """`loss_weighting="x0"`: per sample 3 sigma² x the velocity MSE, i.e. 3 x the MSE of x0 = x_t - sigma v."""
    generator = torch.Generator().manual_seed(0)
    batch = collate([make_item(generator), make_item(generator)])
    prediction = {}

    class Constant(torch.nn.Module):
        def forward(self, latents, timestep, text, cam_context, cam_target, *, num_context_frames):
            prediction["v"] = torch.full_like(latents, 0.3)
            prediction["x_t"] = latents
            return prediction["v"]

    schedule = FlowMatchSchedule(shift=1.0)
    loss = flow_matching_loss(
        Constant(), batch, schedule, torch.Generator().manual_seed(1), per_sample=True, weighting="x0"
    )
    gen = torch.Generator().manual_seed(1)
    index = torch.randint(1000, (2,), generator=gen)
    sigma = schedule.train_sigmas[index].clamp(min=0.05).reshape(-1, 1, 1, 1, 1)
    x_t = prediction["x_t"][:, :, FRAMES:]
    x0_hat = x_t - sigma * prediction["v"][:, :, FRAMES:]
    expected = 3.0 * (x0_hat - batch["target_latents"]).pow(2).mean(dim=(1, 2, 3, 4))
    # exact where sigma >= 0.05 (the clamp only bounds the weight at the lowest levels)
    torch.testing.assert_close(loss, expected.mean())


def test_subject_loss_weight_is_a_weighted_mean_over_subject_cells():
    generator = torch.Generator().manual_seed(0)
    items = [make_item(generator), make_item(generator)]
    mask = torch.zeros(2, FRAMES, SIZE, SIZE, dtype=torch.uint8)
    mask[0, :, 2:5, 3:6] = 1  # sample 0: a subject in every target frame; sample 1: none
    for item, m in zip(items, mask, strict=True):
        item[SUBJECT_MASK] = m
    batch = collate(items)
    assert torch.equal(batch[SUBJECT_MASK], mask)

    class Zero(torch.nn.Module):
        def forward(self, latents, timestep, text, cam_context, cam_target, *, num_context_frames):
            return torch.zeros_like(latents)

    def loss(weight):
        gen = torch.Generator().manual_seed(1)
        return flow_matching_loss(Zero(), batch, FlowMatchSchedule(), gen, weighting="none", subject_weight=weight)

    gen = torch.Generator().manual_seed(1)
    torch.randint(1000, (1,), generator=gen)
    noise = torch.randn(2, CHANNELS, 2 * FRAMES, SIZE, SIZE, generator=gen)
    error = (noise[:, :, FRAMES:] - batch["target_latents"]).pow(2)  # zero prediction: (noise - x0)^2
    cells = 1.0 + 3.0 * mask[:, None].float()
    per_sample = (error * cells).sum(dim=(1, 2, 3, 4)) / (cells.sum(dim=(1, 2, 3, 4)) * CHANNELS)
    torch.testing.assert_close(loss(4.0), per_sample.mean())
    assert torch.equal(loss(1.0), error.mean(dim=(1, 2, 3, 4)).mean())  # 1: the reference's plain mean
    assert torch.isclose(per_sample[1], error[1].mean())  # no subject: the plain mean of that sample
    # a batch without masks cannot be weighted
    del batch[SUBJECT_MASK]
    with pytest.raises(InputError, match=SUBJECT_MASK):
        loss(4.0)


def test_subject_loss_weight_needs_data_with_masks(tmp_path, data):
    with pytest.raises(ConfigError, match="subject_loss_weight: expected > 0"):
        config(tmp_path, data, subject_loss_weight=0.0)
    with pytest.raises(ConfigError, match="no subject masks"):
        train(config(tmp_path, data, subject_loss_weight=4.0))


def test_data_order_splits_global_batches_and_resumes():
    orders = [DataOrder(10, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    assert orders[0].batches_per_epoch == 2
    epoch = [i for _ in range(2) for order in orders for i in order.next_indices()]
    assert len(set(epoch)) == 8  # disjoint, within one epoch's permutation
    later = DataOrder(10, 2, seed=3, rank=1, world_size=2)
    later.load_state_dict(orders[1].state_dict())
    assert later.next_indices() == orders[1].next_indices()


def test_cli_train_and_its_errors(tmp_path, data, capsys):
    out = tmp_path / "cli"
    args = [
        "train",
        str(data),
        "--out",
        str(out),
        "--preset",
        "debug",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "--log-every",
        "1",
        "--no-activation-checkpointing",
        "--export",
        "hydra.ckpt",
    ]
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["samples_per_second"] > 0 for r in log)
    assert "exported" in capsys.readouterr().out
    # A flat torch file of tensors, as the authors' code loads hydra.ckpt, plus the config as one JSON string entry:
    # load_dit reads it back without being told the number of heads.
    exported = torch.load(out / "hydra.ckpt", weights_only=True)
    config = json.loads(exported.pop(METADATA_KEY))
    loaded = load_dit(out / "hydra.ckpt")
    assert sorted(exported) == sorted(loaded.state_dict()) and len(exported) == 85
    assert all(isinstance(v, torch.Tensor) for v in exported.values())
    assert loaded.cfg.num_heads == int(config["num_heads"]) and loaded.cfg.dim == int(config["dim"])
    assert main(args) == 2  # refuses to overwrite a run without --resume
    assert main([*args, "--init", "x.ckpt"]) == 2  # init and preset are exclusive
    assert "exactly one of init" in capsys.readouterr().err
