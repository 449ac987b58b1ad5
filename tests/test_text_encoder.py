import io
import json
import math

import pytest
import torch
from conftest import FIXTURES
from safetensors import safe_open
from safetensors.torch import load_file

from hydra_wm.errors import CheckpointError, ConfigError, InputError
from hydra_wm.models.text_encoder import (
    WAN_NEGATIVE_PROMPT,
    TextEncoderConfig,
    clean_prompt,
    encode_prompts,
    load_text_encoder,
    load_tokenizer,
    original_t5_shapes,
    text_encoder_config,
)

T5_FIXTURE = FIXTURES / "official_t5_parity.safetensors"
NORM_SUFFIXES = ("gamma", "norm.weight", "norm1.weight", "norm2.weight")


def recipe_state(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic T5 weights (tests/fixtures/README.md): one generator per sorted key, then scaled by name."""
    state = {}
    for i, key in enumerate(sorted(shapes)):
        shape = list(shapes[key])
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed * 100003 + i))
        if key.endswith(NORM_SUFFIXES):
            x = 1 + 0.1 * x
        elif key.endswith("bias"):
            x = 0.02 * x
        elif x.dim() >= 2 and "embedding" not in key:
            x = x / math.sqrt(math.prod(shape[1:]))
        state[key] = x
    return state


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(T5_FIXTURE), "pt") as f:
        meta = f.metadata()
    return meta, load_file(str(T5_FIXTURE))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny sentencepiece tokenizer (trained in milliseconds) saved as a folder AutoTokenizer loads."""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    sentences = [
        "a red car drives along the coast road at sunset",
        "the camera pans left over a quiet village",
        "two people walk through a forest in the rain",
        "a dog runs on the beach while waves roll in",
    ] * 5
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=48, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )  # fmt: skip
    source = tmp_path_factory.mktemp("spm")
    (source / "spiece.model").write_bytes(model.getvalue())
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    folder = tmp_path_factory.mktemp("ckpt") / "google" / "umt5-xxl"
    T5Tokenizer.from_pretrained(str(source), extra_ids=0).save_pretrained(str(folder))
    return folder


def test_encoder_matches_reference(reference, tmp_path):
    meta, tensors = reference
    path = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(recipe_state(json.loads(meta["shapes"]), int(meta["seed"])), path)
    encoder = load_text_encoder(path, config=json.loads(meta["config"]), dtype=torch.float32)
    output = encoder(tensors["ids"], tensors["mask"])
    expected = tensors["output"]
    assert output.shape == expected.shape == (2, 12, 32)
    assert ((output - expected).norm() / expected.norm()).item() <= 1e-5
    # Padded rows are computed, not zeroed, by the encoder itself.
    assert output[1, 7:].abs().sum() > 0


def test_layout_matches_published_checkpoint(reference):
    meta, _ = reference
    expected = {key: tuple(shape) for key, shape in json.loads(meta["shapes"]).items()}
    assert original_t5_shapes(TextEncoderConfig.from_dict(json.loads(meta["config"]))) == expected


def test_embedding_is_one_tied_parameter(tmp_path):
    config = text_encoder_config("debug")
    path = tmp_path / "t5.pth"
    torch.save(recipe_state(original_t5_shapes(config), seed=1), path)
    encoder = load_text_encoder(path, config)
    assert encoder.model.encoder.embed_tokens.weight is encoder.model.shared.weight
    assert encoder.model.shared.weight.dtype == torch.bfloat16
    assert not any(p.requires_grad for p in encoder.parameters())


def test_architecture_is_read_from_the_file_when_no_config_is_given(tmp_path):
    """As `load_dit`: without a config the widths, heads, buckets and layers come from the tensor shapes."""
    config = text_encoder_config("debug", num_layers=3, num_heads=4, num_buckets=16)
    path = tmp_path / "t5.pth"
    torch.save(recipe_state(original_t5_shapes(config), seed=4), path)
    assert load_text_encoder(path).config == config


def test_encode_prompts_pads_to_max_length_and_zeroes_padding(tmp_path, tokenizer_dir):
    config = text_encoder_config("debug")
    path = tmp_path / "t5.pth"
    torch.save(recipe_state(original_t5_shapes(config), seed=2), path)
    encoder = load_text_encoder(path, config, dtype=torch.float32)
    tokenizer = load_tokenizer(tokenizer_dir)
    prompts = ["a red car", "  the camera pans left\n over a quiet   village &amp;amp; the beach "]
    embeds = encode_prompts(encoder, tokenizer, prompts, max_length=64)
    assert embeds.shape == (2, 64, config.dim)

    lengths = [len(tokenizer(clean_prompt(p))["input_ids"]) for p in prompts]
    assert lengths[0] < lengths[1] < 64
    for row, length in enumerate(lengths):
        assert embeds[row, length:].abs().sum() == 0
        assert (embeds[row, :length].abs().sum(dim=-1) > 0).all()
    # Batching and padding must not change a prompt's valid rows (padding is masked out as keys).
    alone = encode_prompts(encoder, tokenizer, prompts[0], max_length=64)
    torch.testing.assert_close(alone[0], embeds[0])
    # Truncation: every row valid, still max_length long.
    assert encode_prompts(encoder, tokenizer, prompts[1], max_length=4).abs().sum(dim=-1).gt(0).all()


def test_clean_prompt_follows_wan():
    assert clean_prompt("  a\tred \n\n car &amp;amp; a &lt;dog&gt; ") == "a red car & a <dog>"
    assert clean_prompt("cafÃ©") == "café"  # ftfy repairs UTF-8 read as Latin-1
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽，过曝") and WAN_NEGATIVE_PROMPT.endswith("背景人很多，倒着走")


def test_wrong_keys_and_shapes_give_one_line_errors(tmp_path):
    config = text_encoder_config("debug")
    state = recipe_state(original_t5_shapes(config), seed=3)
    path = tmp_path / "t5.pth"

    renamed = dict(state)
    renamed["encoder.final_layer_norm.weight"] = renamed.pop("norm.weight")
    torch.save(renamed, path)
    with pytest.raises(CheckpointError) as err:
        load_text_encoder(path, config)
    assert "'norm.weight'" in str(err.value) and "'encoder.final_layer_norm.weight'" in str(err.value)
    assert "\n" not in str(err.value)

    state["blocks.1.attn.q.weight"] = torch.zeros(8, 16)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"'blocks.1.attn.q.weight' has shape \(8, 16\), expected \(16, 16\)"):
        load_text_encoder(path, config)


def test_missing_files_name_where_to_get_them(tmp_path):
    with pytest.raises(CheckpointError, match="models_t5_umt5-xxl-enc-bf16.pth.*huggingface.co/Wan-AI"):
        load_text_encoder(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(CheckpointError, match="google/umt5-xxl"):
        load_tokenizer(tmp_path / "google" / "umt5-xxl")


def test_bad_configs_are_rejected():
    with pytest.raises(ConfigError, match="shared_pos"):
        TextEncoderConfig(shared_pos=True)
    with pytest.raises(ConfigError, match="unknown keys"):
        TextEncoderConfig.from_dict({"dim": 8, "heads": 2})
    with pytest.raises(InputError):
        encode_prompts(None, None, [])
