"""umT5-XXL text encoder (Wan2.1's) and prompt encoding: clean, tokenize to 512, encode, zero padding rows.

Implementation choice: the network is transformers' `UMT5EncoderModel`, loaded from the *original* Wan2.1 file
`models_t5_umt5-xxl-enc-bf16.pth` with a one-to-one key renaming (`_hf_key`). Wan2.1's own encoder
(`wan/modules/t5.py`, `T5Encoder` with `shared_pos=False`) is architecturally the same model:
- every layer has its own relative-position bias (`blocks.i.pos_embedding`; umT5, unlike T5 v1.1, does not
  share layer 0's), with bidirectional buckets: half the buckets per direction, exact below `num_buckets / 4`,
  logarithmic up to `max_distance = 128`;
- attention logits are *not* scaled by 1/sqrt(d) (the T5 convention, the scale is folded into the weights);
- feed-forward is gated GELU with the tanh approximation, `fc2(fc1(x) * gelu_tanh(gate(x)))`;
- RMS norms without mean subtraction, eps 1e-6, computed in float32; no embedding scaling.
The fixture `official_t5_parity.safetensors` (reference run) is reproduced to a relative L2 error of ~3e-7.

Loading builds the model on the meta device and assigns the checkpoint tensors into it, and `.pth` files are
memory-mapped: the 11 GB checkpoint is never held twice.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputError
from .state_dicts import WAN21_URL, check_layout, count_blocks, read_state_dict

# Wan2.1 `wan/configs/shared_config.py`, `sample_neg_prompt`: the negative prompt of every Wan2.1 sample (and
# HyDRA's).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)

T5_FILENAME = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_SUBDIR = "google/umt5-xxl"


@dataclass
class TextEncoderConfig:
    """Wan2.1 umT5 encoder (Wan2.1 `wan/modules/t5.py`, `umt5_xxl`); field names as in the fixture."""

    vocab: int = 256384
    """Token vocabulary size."""
    dim: int = 4096
    """Model width."""
    dim_attn: int = 4096
    """Total attention width (num_heads x head dim)."""
    dim_ffn: int = 10240
    """Hidden width of the gated feed-forward."""
    num_heads: int = 64
    """Attention heads."""
    num_layers: int = 24
    """Encoder blocks."""
    num_buckets: int = 32
    """Relative-position buckets (both directions together)."""
    shared_pos: bool = False
    """One position bias for all layers (T5) instead of one per layer (umT5). Only False is supported."""
    max_distance: int = 128
    """Distance at which the logarithmic position buckets saturate (Wan2.1 `T5RelativeEmbedding.max_dist`)."""
    eps: float = 1e-6
    """RMS-norm epsilon."""

    def __post_init__(self) -> None:
        for name in (
            "vocab",
            "dim",
            "dim_attn",
            "dim_ffn",
            "num_heads",
            "num_layers",
            "num_buckets",
            "max_distance",
        ):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"text encoder {name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.dim_attn % self.num_heads:
            raise ConfigError(f"text encoder dim_attn {self.dim_attn} is not divisible by num_heads {self.num_heads}")
        if self.shared_pos:
            raise ConfigError(
                "text encoder shared_pos=True (one position bias for all layers) is not supported; "
                "Wan2.1's umT5 uses shared_pos=False"
            )

    @classmethod
    def from_dict(cls, values: dict) -> TextEncoderConfig:
        """From the reference's config keys (e.g. fixture metadata `config`); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"text encoder config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**values)


TEXT_ENCODER_PRESETS: dict[str, TextEncoderConfig] = {
    "umt5-xxl": TextEncoderConfig(),
    # Tiny encoder for fast tests; text width 16 matches the `debug` DiT's `text_dim`.
    "debug": TextEncoderConfig(vocab=300, dim=16, dim_attn=16, dim_ffn=32, num_heads=2, num_layers=2),
}


def text_encoder_config(name: str, **overrides) -> TextEncoderConfig:
    """A text-encoder preset by name, with optional field overrides."""
    if name not in TEXT_ENCODER_PRESETS:
        raise ConfigError(f"unknown text encoder preset {name!r}; known: {', '.join(sorted(TEXT_ENCODER_PRESETS))}")
    return dataclasses.replace(TEXT_ENCODER_PRESETS[name], **overrides)


# ------------------------------------------------------------------------------------------ checkpoint layout

# Wan2.1 block-relative names -> transformers UMT5 names (layer.0: self-attention sub-layer, layer.1:
# feed-forward).
_BLOCK_KEYS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}


def original_t5_shapes(config: TextEncoderConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of `models_t5_umt5-xxl-enc-bf16.pth` for `config` (Wan2.1 key names)."""
    c = config
    block = {
        "norm1.weight": (c.dim,),
        "attn.q.weight": (c.dim_attn, c.dim),
        "attn.k.weight": (c.dim_attn, c.dim),
        "attn.v.weight": (c.dim_attn, c.dim),
        "attn.o.weight": (c.dim, c.dim_attn),
        "pos_embedding.embedding.weight": (c.num_buckets, c.num_heads),
        "norm2.weight": (c.dim,),
        "ffn.gate.0.weight": (c.dim_ffn, c.dim),
        "ffn.fc1.weight": (c.dim_ffn, c.dim),
        "ffn.fc2.weight": (c.dim, c.dim_ffn),
    }
    shapes = {"token_embedding.weight": (c.vocab, c.dim)}
    for i in range(c.num_layers):
        shapes.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    shapes["norm.weight"] = (c.dim,)
    return shapes


def _hf_key(key: str) -> str:
    if key == "token_embedding.weight":
        return "shared.weight"
    if key == "norm.weight":
        return "encoder.final_layer_norm.weight"
    _, index, name = key.split(".", 2)  # "blocks.{i}.{name}"
    return f"encoder.block.{index}.{_BLOCK_KEYS[name]}"


def _hf_config(config: TextEncoderConfig):
    from transformers import UMT5Config

    return UMT5Config(
        vocab_size=config.vocab,
        d_model=config.dim,
        d_kv=config.dim_attn // config.num_heads,
        d_ff=config.dim_ffn,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        relative_attention_num_buckets=config.num_buckets,
        relative_attention_max_distance=config.max_distance,
        feed_forward_proj="gated-gelu",  # transformers maps this to tanh-approximated GELU ("gelu_new")
        layer_norm_epsilon=config.eps,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
        # Named explicitly so the backend never depends on what happens to be installed; sdpa ships with
        # torch.
        attn_implementation="sdpa",
    )


class UMT5TextEncoder(nn.Module):
    """umT5 encoder: token ids and attention mask -> hidden states (padding rows left as computed)."""

    def __init__(self, config: TextEncoderConfig | None = None):
        super().__init__()
        from transformers import UMT5EncoderModel

        self.config = config or TextEncoderConfig()
        self.model = UMT5EncoderModel(_hf_config(self.config))

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, L) -> (B, L, dim). Masked positions are excluded as keys; their rows are computed."""
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def config_from_shapes(state: dict[str, torch.Tensor]) -> TextEncoderConfig:
    """The architecture of a umT5 file in the Wan2.1 layout, from its tensor shapes (widths, heads from the
    position-bias table, buckets, layers). A file without those keys gets umT5-XXL's, and the layout check that
    follows names what is wrong with it."""
    keys = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight")
    pos = "blocks.0.pos_embedding.embedding.weight"
    if not all(k in state for k in (*keys, pos)):
        return TextEncoderConfig()
    buckets, heads = state[pos].shape
    return TextEncoderConfig(
        vocab=state[keys[0]].shape[0],
        dim=state[keys[0]].shape[1],
        dim_attn=state[keys[1]].shape[0],
        dim_ffn=state[keys[2]].shape[0],
        num_heads=heads,
        num_buckets=buckets,
        num_layers=count_blocks(state),
    )


def load_text_encoder(
    path: str | Path,
    config: TextEncoderConfig | dict | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
) -> UMT5TextEncoder:
    """Load the Wan2.1 umT5 encoder file (original key layout; `.pth` or `.safetensors`), in eval mode.

    `config` is a `TextEncoderConfig`, a dict with its keys (vocab, dim, dim_attn, dim_ffn, num_heads,
    num_layers, num_buckets, shared_pos), or None: read from the file's tensor shapes (`config_from_shapes`), as
    `load_dit` does; either way the file must match it key for key and shape for shape. Default dtype bf16, as
    Wan2.1 runs it (`t5_dtype`).
    """
    state, _ = read_state_dict(path, what=f"the umT5-XXL encoder `{T5_FILENAME}`", hint=f"download it from {WAN21_URL}")
    if config is None:
        config = config_from_shapes(state)
    elif isinstance(config, dict):
        config = TextEncoderConfig.from_dict(config)
    check_layout(state, original_t5_shapes(config), source=path, what=f"Wan2.1 umT5 encoder ({T5_FILENAME})")
    # One tensor at a time, dropping each source tensor: never two copies of the 11 GB file.
    converted = {_hf_key(key): state.pop(key).to(device=device, dtype=dtype) for key in list(state)}
    converted["encoder.embed_tokens.weight"] = converted["shared.weight"]
    with torch.device("meta"):
        encoder = UMT5TextEncoder(config)
    encoder.model.load_state_dict(converted, strict=True, assign=True)
    # assign=True gives the two embedding names two Parameter objects over one tensor; tie them again so that
    # `.to(device)` moves (and allocates) the 1 GB embedding once.
    encoder.model.encoder.embed_tokens.weight = encoder.model.shared.weight
    return encoder.eval().requires_grad_(False)


# -------------------------------------------------------------------------------------------- prompt encoding


def clean_prompt(text: str) -> str:
    """Wan2.1's prompt cleaning (`wan/modules/tokenizers.py`, clean='whitespace'): fix mojibake, unescape
    HTML twice, collapse whitespace runs to one space, strip."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


def load_tokenizer(folder: str | Path):
    """The umT5 tokenizer from a local folder (Wan2.1 ships it as `google/umt5-xxl/` beside the weights)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: tokenizer folder not found; expected `{TOKENIZER_SUBDIR}/` from the Wan2.1 "
            f"checkpoint ({WAN21_URL})"
        )
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # a broken folder becomes one line naming it
        raise CheckpointError(f"{folder}: cannot load the umT5 tokenizer: {type(exc).__name__}: {exc}") from exc


@torch.no_grad()
def encode_prompts(
    encoder: UMT5TextEncoder, tokenizer, prompts: str | Sequence[str], max_length: int = 512
) -> torch.Tensor:
    """Prompts -> text embeddings (B, max_length, dim), rows past each prompt's token count set to zero.

    As Wan2.1 `T5EncoderModel.__call__` + `WanModel`: the encoder sees the padded batch with its mask, each
    output is cut to its true length and zero-padded back to `max_length` (docs/reference.md §3).
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise InputError("encode_prompts: expected at least one prompt")
    if tokenizer.padding_side != "right":
        raise InputError(
            f"encode_prompts: the tokenizer must pad on the right, it pads on the {tokenizer.padding_side}"
        )
    tokens = tokenizer(
        [clean_prompt(p) for p in prompts],
        padding="max_length",
        truncation=True,
        max_length=max_length,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = tokens["input_ids"].to(encoder.device), tokens["attention_mask"].to(encoder.device)
    hidden = encoder(ids, mask)  # (B, L, D)
    lengths = mask.gt(0).sum(dim=1)  # (B,)
    padding = torch.arange(ids.shape[1], device=ids.device)[None, :] >= lengths[:, None]  # (B, L)
    return hidden.masked_fill(padding[..., None], 0.0)
