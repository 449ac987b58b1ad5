"""Preprocessing with tiny random VAE / umT5 checkpoints in the original formats, on a tiny Flatland set."""

import json

import pytest
import torch
from einops import rearrange
from test_text_encoder import recipe_state as t5_recipe
from test_text_encoder import tokenizer_dir  # noqa: F401 - a fixture (tiny sentencepiece tokenizer folder)
from test_vae import recipe_state as vae_recipe

from hydra_wm.cli import main
from hydra_wm.data import HMWorldDataset
from hydra_wm.data.preprocess import EncodedDataset, Encoders, load_encoders, null_text, preprocess
from hydra_wm.data.samples import SUBJECT_MASK, read_sample
from hydra_wm.errors import EXIT_SOME_FAILED, CheckpointError, InputError
from hydra_wm.flatland import FlatlandDataset, flatland_config, write_dataset
from hydra_wm.models.loading import EncoderFiles, load_dit
from hydra_wm.models.text_encoder import encode_prompts, original_t5_shapes, text_encoder_config
from hydra_wm.models.vae import original_vae_shapes, vae_config
from hydra_wm.training import PreprocessedDataset, TrainConfig, train

TEXT_LENGTH = 512


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, tokenizer_dir):  # noqa: F811
    """A Wan2.1-style checkpoint folder with tiny random VAE and umT5 files and the tokenizer."""
    root = tmp_path_factory.mktemp("wan")
    torch.save(vae_recipe(original_vae_shapes(vae_config("debug")), seed=7), root / "Wan2.1_VAE.pth")
    t5 = text_encoder_config("debug")
    torch.save(t5_recipe(original_t5_shapes(t5), seed=8), root / "models_t5_umt5-xxl-enc-bf16.pth")
    return root


@pytest.fixture(scope="module")
def encoders(ckpt_dir, tokenizer_dir):  # noqa: F811
    return load_encoders(
        ckpt_dir, tokenizer=tokenizer_dir, vae_preset="debug", text_encoder_preset="debug", text_length=TEXT_LENGTH
    )


@pytest.fixture(scope="module")
def flatland(tmp_path_factory):
    """Three Flatland clips (32x32, 9 + 9 frames) in the HM-World layout; sample_00001's target clip is corrupt."""
    root = tmp_path_factory.mktemp("flatland")
    write_dataset(root, flatland_config("debug", height=32, width=32), 3, seed=0, progress=False)
    (root / "sample_00001" / "tgt.mp4").write_bytes(b"not a video")
    return root


def cli_args(data, out, ckpt_dir, tokenizer_dir):  # noqa: F811
    return [
        "preprocess",
        str(data),
        str(out),
        "--ckpt-dir",
        str(ckpt_dir),
        "--tokenizer",
        str(tokenizer_dir),
        "--vae-preset",
        "debug",
        "--text-encoder-preset",
        "debug",
        "--text-length",
        str(TEXT_LENGTH),
        "--quiet",
        "--device",
        "cpu",
    ]


def test_cli_skips_finished_samples_and_survives_a_corrupt_one(tmp_path, flatland, ckpt_dir, tokenizer_dir, capsys):  # noqa: F811
    out = tmp_path / "prepared"
    assert main(cli_args(flatland, out, ckpt_dir, tokenizer_dir)) == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    printed = captured.out
    assert "wrote 2, skipped 0 (done earlier), failed 1" in printed and "sample_00001/tgt.mp4: cannot read" in printed
    assert captured.err.count("\n") == 1 and "1 of 3 samples failed" in captured.err and "failed.json" in captured.err
    assert list(json.loads((out / "failed.json").read_text())) == ["sample_00001"]
    files = sorted((out / "samples").iterdir())
    assert [f.name for f in files] == ["sample_00000.safetensors", "sample_00002.safetensors"]
    stamps = [f.stat().st_mtime_ns for f in files]

    assert main(cli_args(flatland, out, ckpt_dir, tokenizer_dir)) == EXIT_SOME_FAILED
    assert "wrote 0, skipped 2 (done earlier), failed 1" in capsys.readouterr().out
    assert [f.stat().st_mtime_ns for f in files] == stamps  # not rewritten
    assert not list((out / "samples").glob(".*"))  # no temporary files left behind
    # tgt_mask.mp4 -> the target's subject mask on the latent grid (what --subject-loss-weight weights)
    item = read_sample(files[0])
    assert item[SUBJECT_MASK].shape == item["target_latents"].shape[1:] and item[SUBJECT_MASK].any()


def test_sample_content_is_each_clip_encoded_on_its_own(tmp_path, flatland, encoders):
    dataset = HMWorldDataset(flatland, load_masks=False)
    report = preprocess(dataset, tmp_path, encoders, progress=False)
    assert report.written == ["sample_00000", "sample_00002"] and list(report.failed) == ["sample_00001"]
    item, sample = read_sample(tmp_path / "samples" / "sample_00002.safetensors"), dataset[2]
    assert item["context_latents"].shape == (16, 3, 4, 4) and item["target_latents"].shape == (16, 3, 4, 4)
    torch.testing.assert_close(item["context_latents"], encoders.encode_video(sample.condition[None])[0])
    torch.testing.assert_close(item["target_latents"], encoders.encode_video(sample.target[None])[0])
    assert torch.equal(item["context_cameras"], sample.context_cameras)
    assert torch.equal(item["target_cameras"], sample.target_cameras)
    assert item["text"].shape == (TEXT_LENGTH, 16)
    torch.testing.assert_close(item["text"], encoders.encode_text([sample.caption])[0])
    used = int(item["text"].abs().amax(dim=1).gt(0).sum())
    assert 0 < used < TEXT_LENGTH and item["text"][used:].abs().sum() == 0  # padding rows zero
    from safetensors import safe_open

    with safe_open(str(tmp_path / "samples" / "sample_00002.safetensors"), "pt") as f:
        assert f.get_slice("text").get_shape() == [used, 16]  # stored without its padding rows


def test_ranks_split_the_samples_without_coordination(tmp_path, flatland, encoders):
    dataset = HMWorldDataset(flatland, load_masks=False)
    reports = [preprocess(dataset, tmp_path, encoders, rank=r, world_size=2, progress=False) for r in range(2)]
    assert reports[0].written == ["sample_00000", "sample_00002"] and reports[1].written == []
    assert list(reports[1].failed) == ["sample_00001"]
    assert (tmp_path / "failed.rank1.json").is_file() and not (tmp_path / "failed.rank0.json").exists()


def test_other_settings_into_the_same_folder_are_refused(tmp_path, flatland, encoders):
    dataset = HMWorldDataset(flatland, load_masks=False)
    preprocess(dataset, tmp_path, encoders, settings={"height": 32}, progress=False)
    with pytest.raises(InputError, match="other settings"):
        preprocess(dataset, tmp_path, encoders, settings={"height": 64}, progress=False)


def test_preprocessed_folder_trains_and_exports(tmp_path, flatland, encoders):
    preprocess(HMWorldDataset(flatland, load_masks=False), tmp_path / "prepared", encoders, progress=False)
    assert len(PreprocessedDataset(tmp_path / "prepared")) == 2
    config = TrainConfig(
        out=str(tmp_path / "run"),
        data=str(tmp_path / "prepared"),
        preset="debug",
        steps=2,
        batch_size=2,
        device="cpu",
        progress=False,
        activation_checkpointing=False,
    )
    result = train(config)
    model = load_dit(result.export)
    assert (model.cfg.in_dim, model.cfg.text_dim) == (16, 16)  # a fresh preset takes its widths from the data


def test_in_memory_dataset_with_a_pixel_codec_and_no_text_trains(tmp_path):
    # What the built-in Flatland model needs: clips rendered in memory, a space-to-depth "codec" without
    # temporal compression, no text encoder; no file is written but the run's own.
    codec = Encoders(
        encode_video=lambda video: rearrange(video, "b c t (h p) (w q) -> b (c p q) t h w", p=4, q=4),
        encode_text=null_text(dim=8),
        latent_stride=1,
    )
    clips = FlatlandDataset(flatland_config("debug"), length=2, seed=0, latent_stride=1)
    dataset = EncodedDataset(clips, codec)
    assert dataset[0]["context_latents"].shape == (48, 9, 4, 6) and dataset[0]["text"].shape == (1, 8)
    config = TrainConfig(
        out=str(tmp_path),
        preset="debug",
        steps=2,
        batch_size=2,
        device="cpu",
        progress=False,
        activation_checkpointing=False,
        export=None,
    )
    result = train(config, dataset=dataset)
    assert result.step == 2 and all(loss > 0 for loss in result.losses) and result.model.cfg.in_dim == 48
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "config.json", "train_log.jsonl"]


def test_preprocess_finds_and_loads_the_encoders_as_generate_does(encoders, ckpt_dir, tokenizer_dir):  # noqa: F811
    """Without presets the architectures come from the files (as `HydraPipeline` loads them), with the same result
    and the same manifest settings as naming the matching presets."""
    inferred = load_encoders(ckpt_dir, tokenizer=tokenizer_dir, text_length=TEXT_LENGTH)
    assert inferred.settings == encoders.settings
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    assert torch.equal(inferred.encode_video(video), encoders.encode_video(video))
    assert torch.equal(inferred.encode_text(["a red car"]), encoders.encode_text(["a red car"]))
    files = EncoderFiles.locate(ckpt_dir, tokenizer=tokenizer_dir)
    assert (files.vae.name, files.tokenizer) == ("Wan2.1_VAE.pth", tokenizer_dir)
    with pytest.raises(CheckpointError) as err:
        load_encoders(ckpt_dir / "nowhere")
    assert all(name in str(err.value) for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google"))


def test_encode_prompts_is_what_the_encoders_use(encoders, ckpt_dir, tokenizer_dir):  # noqa: F811
    from hydra_wm.models.text_encoder import load_text_encoder, load_tokenizer

    encoder = load_text_encoder(
        ckpt_dir / "models_t5_umt5-xxl-enc-bf16.pth", text_encoder_config("debug"), dtype=torch.float32
    )
    expected = encode_prompts(encoder, load_tokenizer(tokenizer_dir), ["a red car"], TEXT_LENGTH)
    assert torch.equal(encoders.encode_text(["a red car"]), expected)
