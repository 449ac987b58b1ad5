"""Load the Wan2.1 / HyDRA DiT from the released files (`load_dit(path)`), and find the encoders' files.

Accepted: `.safetensors`, `.pth`, `.ckpt`/`.pt`; a flat state dict or one wrapped as `{"state_dict": ...}`
(training checkpoints); the base Wan2.1 DiT (825 keys for 1.3B; HyDRA modules are then initialised as the
reference does) or a full HyDRA checkpoint (1,065 keys). The model is built on the meta device and the
checkpoint tensors are assigned into it, so a 2B-parameter file is never held twice.

`EncoderFiles` is the one place that knows where the Wan2.1 VAE, umT5 encoder and tokenizer sit in a checkpoint
folder; `preprocess` and `generate` both find them with it and load them with `load_vae` / `load_text_encoder`,
which read the architecture from the files' tensor shapes as `load_dit` does.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import DiTConfig
from ..errors import CheckpointError, InputError
from .dit import HydraDiT
from .state_dicts import WAN21_URL, count_blocks, read_state_dict
from .text_encoder import T5_FILENAME, TOKENIZER_SUBDIR
from .vae import VAE_FILENAME

HYDRA_MODULES = ("self_attn.tokenizer.", "cam_encoder_con.", "cam_encoder_tgt.", "projector.")
VIEW_EMBEDDING = "view_embedding."
"""Prefix of the `DiTConfig.aligned_view_input` embedding's keys (not part of HyDRA's or Wan2.1's files)."""
VIEW_GATE = "view_gate."
"""Prefix of the `DiTConfig.aligned_view_gate` gate's keys (likewise)."""
_DEFAULT_HEAD_DIM = 128  # Wan2.1 1.3B and 14B both use 128-channel heads


def config_from_metadata(metadata: dict[str, str], path: Path) -> dict:
    """`DiTConfig` fields stored as strings in safetensors metadata (`dim`, `patch_size`, `attention`, ...)."""
    fields = {}
    if metadata.get("has_image_input", "False") not in ("False", "false", "0"):
        raise CheckpointError(
            f"{path}: metadata has_image_input={metadata['has_image_input']}: image-to-video DiTs are not supported"
        )
    for field in dataclasses.fields(DiTConfig):
        key = field.name
        if key not in metadata:
            continue
        if field.type == "str":  # attention, retrieval: exported by `hydra-wm train` so models load as trained
            fields[key] = metadata[key]
            continue
        try:
            fields[key] = ast.literal_eval(metadata[key])
        except (ValueError, SyntaxError) as exc:
            raise CheckpointError(
                f"{path}: metadata {key!r}: expected a number or tuple, got {metadata[key]!r}"
            ) from exc
    return fields


def config_from_shapes(state: dict[str, Tensor], path: Path) -> dict:
    """Infer the architecture from tensor shapes (all but the number of heads, which shapes cannot tell)."""
    needed = ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight", "head.head.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a Wan2.1 DiT checkpoint: missing key(s) {', '.join(missing)}")
    patch = state["patch_embedding.weight"]
    dim, in_dim, *patch_size = patch.shape
    return {
        "dim": dim,
        "in_dim": in_dim,
        "patch_size": tuple(patch_size),
        "out_dim": state["head.head.weight"].shape[0] // math.prod(patch_size),
        "text_dim": state["text_embedding.0.weight"].shape[1],
        "freq_dim": state["time_embedding.0.weight"].shape[1],
        "ffn_dim": state["blocks.0.ffn.0.weight"].shape[0] if "blocks.0.ffn.0.weight" in state else 4 * dim,
        "num_layers": count_blocks(state),
    }


def _check_keys(model: HydraDiT, state: dict[str, Tensor], path: Path, hydra: bool, skip: tuple[str, ...] = ()) -> None:
    """One clear error naming a few missing/unexpected keys or wrong shapes (keys starting with `skip` may be
    missing)."""
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(skip) or k in state}
    if not hydra:
        expected = {k: s for k, s in expected.items() if not any(m in k for m in HYDRA_MODULES)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CheckpointError(f"{path}: does not match the model config: " + "; ".join(problems))


def load_dit(
    path: str | os.PathLike,
    *,
    config: DiTConfig | None = None,
    num_heads: int | None = None,
    head_dim: int = _DEFAULT_HEAD_DIM,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    **overrides,
) -> HydraDiT:
    """Load a Wan2.1 or HyDRA DiT checkpoint; returns the model in eval mode.

    The architecture comes from `config` if given, else from the file's metadata, else from tensor shapes
    (with `num_heads`, or `head_dim` = 128). `overrides` set other config fields (`attention`, `top_k`,
    `window`, ...). A base Wan2.1 file (no HyDRA keys) gets HyDRA modules initialised as the reference
    does, with the tokenizer drawn from a generator seeded by `seed`. `dtype` casts floating tensors.
    """
    path = Path(path)
    state, metadata = read_state_dict(path, what="DiT checkpoint")
    state = (
        {k.removeprefix("module."): v for k, v in state.items()}
        if all(k.startswith("module.") for k in state)
        else state
    )
    if config is None:
        fields = config_from_shapes(state, path)
        fields.update(config_from_metadata(metadata, path))
        if num_heads is not None:
            fields["num_heads"] = num_heads
        elif "num_heads" not in fields:
            if fields["dim"] % head_dim:
                raise CheckpointError(
                    f"{path}: width {fields['dim']} is not divisible by head_dim {head_dim}; pass num_heads"
                )
            fields["num_heads"] = fields["dim"] // head_dim
        config = DiTConfig(**fields)
    if overrides:
        config = config.replace(**overrides)
    hydra_keys = [k for k in state if any(m in k for m in HYDRA_MODULES)]
    expected_hydra = 8 * config.num_layers  # (tokenizer conv, two camera encoders, projector) x (weight, bias)
    if hydra_keys and len(hydra_keys) != expected_hydra:
        raise CheckpointError(
            f"{path}: partial HyDRA checkpoint: {len(hydra_keys)} of {expected_hydra} HyDRA keys present "
            f"(e.g. {hydra_keys[0]})"
        )
    hydra = bool(hydra_keys)
    # A checkpoint trained without `aligned_view_input` may be loaded with it (to fine-tune it on): the view
    # embedding starts as its patch embedding (`HydraDiT.init_view_embedding`).
    # Likewise `aligned_view_gate`: the gate starts nearly shut (`HydraDiT.init_view_gate`).
    added = [
        (prefix, init)
        for prefix, wanted, init in (
            (VIEW_EMBEDDING, config.aligned_view_input, "init_view_embedding"),
            (VIEW_GATE, config.aligned_view_gate, "init_view_gate"),
        )
        if wanted and prefix + "weight" not in state
    ]
    with torch.device("meta"):
        model = HydraDiT(config)
    _check_keys(model, state, path, hydra, skip=tuple(prefix for prefix, _ in added))
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=hydra and not added, assign=True)
    for prefix, init in added:
        module = getattr(model, prefix.rstrip("."))
        module.to_empty(device="cpu")
        getattr(model, init)()
        module.to(model.patch_embedding.weight.dtype)
    if not hydra:
        hydra_modules = [
            module
            for block in model.blocks
            for module in (block.cam_encoder_con, block.cam_encoder_tgt, block.projector, block.self_attn.tokenizer)
        ]
        for module in hydra_modules:
            module.to_empty(device="cpu")  # materialise in float32, in place
        model.init_hydra_modules(torch.Generator().manual_seed(seed))
        for module in hydra_modules:
            module.to(model.patch_embedding.weight.dtype)
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------ encoder files


@dataclass(frozen=True)
class EncoderFiles:
    """The Wan2.1 VAE file, umT5 encoder file and tokenizer folder that preprocessing and generation encode with."""

    vae: Path
    text_encoder: Path
    tokenizer: Path

    @classmethod
    def locate(
        cls,
        ckpt_dir: str | os.PathLike | None = None,
        *,
        vae: str | os.PathLike | None = None,
        text_encoder: str | os.PathLike | None = None,
        tokenizer: str | os.PathLike | None = None,
    ) -> EncoderFiles:
        """Explicit paths win; the others are Wan2.1's file names in `ckpt_dir`. Nothing is read (see `missing`)."""
        given = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer}
        names = {"vae": VAE_FILENAME, "text_encoder": T5_FILENAME, "tokenizer": TOKENIZER_SUBDIR}
        if ckpt_dir is None and None in given.values():
            lacking = ", ".join(key for key, path in given.items() if path is None)
            raise InputError(f"no checkpoint folder and no path for: {lacking}")
        return cls(**{key: Path(ckpt_dir) / names[key] if path is None else Path(path) for key, path in given.items()})

    def missing(self) -> list[str]:
        """The files (and the tokenizer folder) that are not there, as errors list them."""
        files = [str(path) for path in (self.vae, self.text_encoder) if not path.is_file()]
        return files + ([f"{self.tokenizer}/ (tokenizer folder)"] if not self.tokenizer.is_dir() else [])

    def check(self) -> EncoderFiles:
        """Self, or one CheckpointError listing every missing file and where to get it."""
        if missing := self.missing():
            raise CheckpointError(
                f"missing checkpoint files: {', '.join(missing)} (from {WAN21_URL}); nothing is downloaded"
            )
        return self


def random_weights(module: torch.nn.Module, dtype: torch.dtype, device, seed: int) -> torch.nn.Module:
    """A meta-device `module` materialised on `device` in `dtype` with small random weights N(0, 0.02²), eval mode,
    no gradients: real-size models for memory and speed checks without weight files (benchmarks/)."""
    module = module.to(dtype).to_empty(device=device)
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02, generator=generator)
    return module.eval().requires_grad_(False)
