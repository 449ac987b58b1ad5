"""End-to-end `hydra-wm generate` on CPU with tiny random checkpoints written in the published file formats."""

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hydra_wm import cli
from hydra_wm.cli import main
from hydra_wm.commands.options import config_from_args
from hydra_wm.config import dit_config
from hydra_wm.data.video import count_frames, read_video, write_video
from hydra_wm.models.dit import HydraDiT
from hydra_wm.models.text_encoder import original_t5_shapes, text_encoder_config
from hydra_wm.models.vae import original_vae_shapes, vae_config
from hydra_wm.pipeline import GenerationConfig

FRAMES, SIZE = 9, 32  # 9 = 4k+1 frames -> 3 latent frames; 32 px -> 4x4 latents -> 2x2 tokens


@pytest.fixture(autouse=True)
def only_generate_command(monkeypatch):
    """Parse with this command alone, so that these tests do not depend on the other commands' modules."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["hydra_wm.commands.generate"])


def random_state(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    """Scaled random weights (norm gains near 1, small biases) so that activations stay finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(shapes.items()):
        x = torch.randn(shape, generator=g)
        if key.endswith(("gamma", "norm.weight", "norm1.weight", "norm2.weight")):
            x = 1 + 0.1 * x
        elif key.endswith("bias"):
            x = 0.02 * x
        elif len(shape) >= 2 and "embedding" not in key:
            x = x / math.sqrt(math.prod(shape[1:]))
        state[key] = x
    return state


def write_tokenizer(folder, scratch):
    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a red car drives along the coast road", "the camera pans over a village"] * 8),
        model_writer=model, vocab_size=40, hard_vocab_limit=False, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )  # fmt: skip
    source = scratch / "spm"
    source.mkdir()
    (source / "spiece.model").write_bytes(model.getvalue())
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    T5Tokenizer.from_pretrained(str(source), extra_ids=0).save_pretrained(str(folder))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Wan2.1 folder (VAE .pth, umT5 .pth, tokenizer folder, DiT .safetensors) and a wrapped hydra.ckpt."""
    root = tmp_path_factory.mktemp("ckpt")
    t5 = text_encoder_config("debug")
    torch.save(random_state(original_t5_shapes(t5), 1), root / "models_t5_umt5-xxl-enc-bf16.pth")
    write_tokenizer(root / "google" / "umt5-xxl", tmp_path_factory.mktemp("scratch"))
    torch.save(random_state(original_vae_shapes(vae_config("debug")), 2), root / "Wan2.1_VAE.pth")
    # Head dim 128, as Wan2.1 (the loader infers the heads from it); text width = the tiny umT5's.
    cfg = dit_config("debug", dim=128, num_heads=1, in_dim=16, out_dim=16, text_dim=t5.dim)
    torch.manual_seed(3)
    dit = HydraDiT(cfg)
    state = {k: v.contiguous() for k, v in dit.state_dict().items()}
    hydra_modules = ("tokenizer", "cam_encoder", "projector")
    save_file({k: v for k, v in state.items() if not any(m in k for m in hydra_modules)},
              str(root / "diffusion_pytorch_model.safetensors"))  # fmt: skip
    torch.save({"state_dict": state}, root / "hydra.ckpt")  # a training checkpoint, wrapped
    return root


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Example layout: 1.mp4 (condition), cam1.json (relative vectors, one more than needed), caption.txt."""
    root = tmp_path_factory.mktemp("examples")
    ramp = np.linspace(30, 220, SIZE)
    image = np.stack([ramp[None, :].repeat(SIZE, 0), ramp[:, None].repeat(SIZE, 1), np.full((SIZE, SIZE), 90.0)], -1)
    frames = np.repeat(image[None].astype(np.uint8), FRAMES, axis=0)  # smooth: survives H.264 almost exactly
    write_video(root / "1.mp4", frames, fps=15, crf=0, pix_fmt="yuv444p")
    vector = lambda x: [1, 0, 0, x, 0, 1, 0, 0, 0, 0, 1, 0.1 * x]
    cams = {"context_camera": [vector(-i) for i in range(4)], "video_camera": [vector(i) for i in range(4)]}
    for n in (1, 2):
        (root / f"cam{n}.json").write_text(json.dumps(cams))
    (root / "2.mp4").write_bytes((root / "1.mp4").read_bytes())
    (root / "caption.txt").write_text("a red car drives along the coast road\nthe camera pans over a village\n")
    return root


def small_args(ckpt, out, *extra):
    return ["generate", "--ckpt-dir", str(ckpt), "--out", str(out), "--height", str(SIZE), "--width", str(SIZE),
            "--context-frames", str(FRAMES), "--target-frames", str(FRAMES), "--steps", "2", "--device", "cpu",
            "--no-progress", *extra]  # fmt: skip


@pytest.mark.slow
def test_generate_folder_writes_condition_then_generated_frames(checkpoints, examples, tmp_path, capsys):
    out = tmp_path / "out"
    hydra = str(checkpoints / "hydra.ckpt")
    args = small_args(checkpoints, out, str(examples), "--samples", "1", "--hydra-ckpt", hydra,
                      "--save-latents", "--save-retrieval")  # fmt: skip
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "using the first 3 of 4 context camera vectors" in stdout
    video_path = out / "1.mp4"
    assert count_frames(video_path) == 2 * FRAMES
    video = read_video(video_path, None)
    assert video.shape == (3, 2 * FRAMES, SIZE, SIZE)
    # The condition frames are the input frames (not decoded latents): equal up to H.264 rounding.
    condition = read_video(examples / "1.mp4", FRAMES)
    assert (video[:, :FRAMES] - condition).abs().mean() < 0.05
    with safe_open(str(out / "1_latents.safetensors"), "pt") as f:
        assert f.get_tensor("context").shape == f.get_tensor("target").shape == (1, 16, 3, 4, 4)
        assert f.metadata()["prompt"] == "a red car drives along the coast road"
    with safe_open(str(out / "1_retrieval.safetensors"), "pt") as f:
        # 2 steps, 2 blocks, 2 guidance passes, 6 query frames, k clamped to the 3 memory frames
        assert f.get_tensor("indices").shape == (2, 2, 2, 6, 3)
    assert (out / "1_retrieval.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_generate_single_clip_with_base_dit(checkpoints, examples, tmp_path):
    out = tmp_path / "out"
    args = small_args(checkpoints, out, "--video", str(examples / "1.mp4"), "--cameras", str(examples / "cam1.json"),
                      "--prompt", "the camera pans", "--name", "clip", "--context-frames", "5", "--target-frames", "1",
                      "--cfg", "1", "--attention", "window", "--fps", "8", "--offload", "none")  # fmt: skip
    assert main(args) == 0
    assert count_frames(out / "clip.mp4") == 5 + 1


def test_generate_folder_in_chunks(checkpoints, examples, tmp_path, capsys):
    out = tmp_path / "out"
    args = small_args(checkpoints, out, str(examples), "--chunk", "1", "--steps", "1", "--cfg", "1",
                      "--context-frames", "5", "--target-frames", "1", "--retrieval", "camera")  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["1.mp4", "2.mp4"]
    assert capsys.readouterr().out.count("loading DiT") == 2  # one pass through the models per chunk


def test_missing_checkpoints_listed_in_one_error(tmp_path, examples, capsys):
    args = small_args(tmp_path / "empty", tmp_path / "out", str(examples), "--hydra-ckpt", str(tmp_path / "h.ckpt"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    names = ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl", "h.ckpt",
             "https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B", "https://huggingface.co/H-EmbodVis/HyDRA")  # fmt: skip
    for name in names:
        assert name in err
    assert not (tmp_path / "out").exists()


def test_generation_options_are_generation_config_fields(capsys):
    """The options are generated from `GenerationConfig` (as train's from `TrainConfig`): nothing given, its
    defaults; every field an option; --steps and --cfg are second names of --num-steps and --guidance-scale."""
    parser = cli.build_parser()
    assert config_from_args(GenerationConfig, parser.parse_args(["generate", "--ckpt-dir", "x"])) == GenerationConfig()
    given = ["--steps", "7", "--guidance-scale", "2", "--no-cfg-batch", "--text-length", "64", "--negative-prompt", "n"]
    args = parser.parse_args(["generate", "--ckpt-dir", "x", *given])
    expected = GenerationConfig(num_steps=7, guidance_scale=2.0, cfg_batch=False, text_length=64, negative_prompt="n")
    assert config_from_args(GenerationConfig, args) == expected
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    usage = capsys.readouterr().out
    assert all("--" + field.name.replace("_", "-") in usage for field in dataclasses.fields(GenerationConfig))
    assert "--cfg" in usage and "--steps" in usage


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--target-frames", "8"], "4k+1"), (["--height", "40"], "multiple of 16"),
     (["--video", "x.mp4"], "not both"), (["--context-frames", "21"], "needs 6")],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:.*repeating the last frame")  # 21 frames asked of a 9-frame clip
def test_bad_arguments_give_one_line_errors(checkpoints, examples, tmp_path, capsys, extra, message):
    assert main(small_args(checkpoints, tmp_path / "out", str(examples), *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
