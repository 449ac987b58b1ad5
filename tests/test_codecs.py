"""PixelCodec (lossless space-to-depth latents for Flatland) and the `flatland-tiny` DiT preset trained on it."""

import pytest
import torch
from conftest import load_script

from hydra_wm.config import dit_config, rope_split
from hydra_wm.data.preprocess import EncodedDataset, encode_sample, latent_subject_mask, pixel_encoders
from hydra_wm.data.samples import SUBJECT_MASK, read_sample, write_sample
from hydra_wm.errors import InputError
from hydra_wm.flatland import FlatlandDataset, flatland_config
from hydra_wm.flatland.training import flatland_training_dataset
from hydra_wm.models.codecs import PixelCodec
from hydra_wm.models.dit import HydraDiT
from hydra_wm.training import collate

pytestmark = pytest.mark.usefixtures("one_thread")


def load_probe():
    return load_script("benchmarks/flatland_train_probe.py")


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_pixel_codec_round_trip_is_exact_and_shapes_are_known(factor):
    codec = PixelCodec(factor)
    assert codec.z_dim == codec.config.z_dim == 3 * factor * factor
    assert codec.latent_stride == codec.config.temporal_factor == 1 and codec.config.spatial_factor == factor
    # 8-bit frames in [-1, 1], as every decoded video is
    video = torch.randint(0, 256, (2, 3, 5, 8, 12), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
    latents = codec.encode(video, tiled=True)  # WanVAE keywords are accepted
    assert latents.shape == (2, *codec.latent_shape(5, 8, 12)) == (2, 3 * factor**2, 5, 8 // factor, 12 // factor)
    assert latents.dtype == torch.float32
    decoded = codec.decode(latents)
    assert decoded.shape == video.shape
    assert torch.equal((decoded * 127.5 + 127.5).round(), (video * 127.5 + 127.5).round())
    assert (decoded - video).abs().max() < 1e-6


def test_pixel_codec_layout_scale_and_clamp():
    codec = PixelCodec(2, mean=0.0, std=1.0)
    video = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 1, 4, 4)
    latents = codec.encode(video)
    # channel c * 4 + i * 2 + j holds colour c of pixel (i, j) of each 2x2 cell
    assert latents[0, 1 * 4 + 1 * 2 + 0, 0, 1, 0] == video[0, 1, 0, 3, 0]
    assert codec.decode(latents).max() == 1.0  # clamped to [-1, 1]
    # default scale: Flatland latents are roughly standardised
    clips = FlatlandDataset(flatland_config("small"), 16, seed=1, latent_stride=1)
    z = torch.cat([PixelCodec().encode(clips[i]["context"][None]) for i in range(16)])
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.25, (z.mean(), z.std())
    with pytest.raises(InputError, match="divisible"):
        codec.encode(torch.zeros(1, 3, 2, 5, 4))
    with pytest.raises(InputError, match="latents"):
        codec.decode(torch.zeros(1, 3, 2, 4, 4))


def test_flatland_tiny_preset():
    cfg = dit_config("flatland-tiny")
    assert cfg.in_dim == cfg.out_dim == PixelCodec(2).z_dim
    assert rope_split(cfg.head_dim) == (16, 16, 16)
    assert (cfg.window, cfg.top_k, cfg.tokenizer_kernel, cfg.patch_size) == (5, 10, (2, 2, 2), (1, 2, 2))
    # 32x32 `small` Flatland frames -> 16x16 latents -> 8x8 tokens per frame
    frames = flatland_config("small")
    assert (frames.height // 2 // cfg.patch_size[1], frames.width // 2 // cfg.patch_size[2]) == (8, 8)


def test_flatland_clip_through_codec_and_flatland_tiny_forward():
    clips = FlatlandDataset(flatland_config("debug"), 1, seed=0, latent_stride=1)
    cfg = dit_config("flatland-tiny")
    item = encode_sample(clips[0], pixel_encoders(PixelCodec(2), text_dim=cfg.text_dim))
    context, target = item["context_latents"], item["target_latents"]
    assert context.shape == (12, 9, 8, 12) and target.shape == (12, 9, 8, 12)  # 16x24 frames, one latent each
    assert item["context_cameras"].shape == (9, 12) and item["text"].shape == (1, cfg.text_dim)
    torch.manual_seed(0)
    model = HydraDiT(cfg).eval()
    model.init_weights()
    latents = torch.cat([context, target], dim=1)[None]
    with torch.no_grad():
        out = model(
            latents,
            torch.tensor([500.0]),
            item["text"][None],
            item["context_cameras"][None],
            item["target_cameras"][None],
            num_context_frames=9,
        )
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_latent_subject_mask_groups_frames_like_the_causal_vae_and_pools_cells():
    pixels = torch.zeros(9, 8, 8, dtype=torch.bool)
    pixels[0, 0, 0] = True  # latent frame 0, cell (0, 0)
    pixels[4, 7, 7] = True  # frames 1..4 -> latent frame 1, cell (3, 3) of 2x2-pixel cells
    pixels[5, 2, 5] = True  # frames 5..8 -> latent frame 2, cell (1, 2)
    mask = latent_subject_mask(pixels, (3, 4, 4), latent_stride=4)
    assert mask.dtype == torch.uint8 and mask.shape == (3, 4, 4)
    assert mask.nonzero().tolist() == [[0, 0, 0], [1, 3, 3], [2, 1, 2]]
    same = latent_subject_mask(pixels, (9, 8, 8), latent_stride=1)  # stride 1, cell 1 px: the mask itself
    assert torch.equal(same.bool(), pixels)
    with pytest.raises(InputError, match="latent stride 4"):
        latent_subject_mask(pixels[:8], (3, 4, 4), latent_stride=4)


def test_flatland_samples_carry_their_subject_mask_through_preprocessed_files(tmp_path):
    clips = FlatlandDataset(flatland_config("debug"), 1, seed=0, latent_stride=1)
    item = encode_sample(clips[0], pixel_encoders(PixelCodec(2), text_dim=8))
    labels = clips[0]["target_labels"]  # (T, 16, 24), subject s + 1
    expected = torch.nn.functional.max_pool2d((labels > 0).float()[:, None], 2)[:, 0].to(torch.uint8)
    assert expected.any() and torch.equal(item[SUBJECT_MASK], expected)
    path = tmp_path / "s.safetensors"
    write_sample(path, item, "s", "a caption")
    assert torch.equal(read_sample(path)[SUBJECT_MASK], expected)
    # a clip whose mask does not match it is refused with the file named
    broken = dict(clips[0], target_labels=labels[:-1])
    with pytest.raises(InputError, match="tgt_mask.mp4"):
        encode_sample(broken, pixel_encoders(PixelCodec(2), text_dim=8))


def test_flatland_tiny_trains_on_pixel_codec_flatland_through_the_probe_path(tmp_path):
    probe = load_probe()
    dataset = flatland_training_dataset("debug", samples=2)
    assert isinstance(dataset, EncodedDataset)
    batch = collate([dataset[0], dataset[1]])
    assert batch["context_latents"].shape == (2, 12, 9, 8, 12)
    config = probe.probe_config(str(tmp_path / "run"), steps=3, batch_size=2, log_every=1, save_every=3)
    # the same starting weights, to see what training changed
    torch.manual_seed(config.seed)
    initial = HydraDiT(dit_config("flatland-tiny"))
    initial.init_weights()
    result = probe.train(config, dataset)
    assert result.step == 3 and len(result.losses) == 3
    assert all(torch.isfinite(torch.tensor(loss)) for loss in result.losses)
    trained = result.model.state_dict()
    changed = [name for name, value in initial.state_dict().items() if not torch.equal(value, trained[name])]
    assert "blocks.0.self_attn.q.weight" in changed and "head.head.weight" in changed
    assert len(changed) > 0.9 * len(trained)
