"""Wan2.1 video VAE: loads `Wan2.1_VAE.pth` as published; encodes to normalised latents, decodes to [-1, 1].

Implementation choice: the network is diffusers' `AutoencoderKLWan`, loaded from the *original* key layout
through diffusers' own converter `convert_wan_vae_to_diffusers` (`diffusers/loaders/single_file_utils.py`).
diffusers' class is a line-by-line port of Wan2.1 `wan/modules/vae.py` (causal 3-D convs, first frame
encoded alone then 4-frame chunks, per-chunk feature cache), it is maintained and runs on every backend; a
private port would be ~600 more lines to keep correct. The fixture `official_vae_parity.safetensors`
(reference run, full-size VAE) is reproduced to a relative L2 error of ~1e-6. Two things are deliberately
ours rather than diffusers':
- latent normalisation: diffusers' `encode` returns the raw posterior; Wan normalises the posterior *mean* per
  channel, `(mu - mean) / std` (Wan2.1 `WanVAE.encode`, `scale = [mean, 1 / std]`), and decode undoes it;
- spatial tiling: diffusers' tiled path measures tiles in two units and blends in the model dtype; ours takes
  tile size and overlap in **pixels**, blends with linear ramps and accumulates in float32.

The model is built on the meta device and the checkpoint tensors are assigned into it (`assign=True`), so
loading never holds a randomly initialised copy next to the real weights; `.pth` files are memory-mapped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputError
from .state_dicts import WAN21_URL, check_layout, read_state_dict

VAE_FILENAME = "Wan2.1_VAE.pth"
"""The VAE file of the Wan2.1 checkpoint folder."""
# Residual blocks per encoder level (the decoder has one more): fixed at Wan2.1's 2 because diffusers' key
# converter hard-codes the block indices this implies.
NUM_RES_BLOCKS = 2

# Per-channel statistics of Wan2.1 VAE latents (Wan2.1 `wan/modules/vae.py`, `WanVAE.__init__`; identical to
# diffusers' `AutoencoderKLWan` config `latents_mean` / `latents_std`).
WAN_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass
class VAEConfig:
    """Architecture of the Wan2.1 causal video VAE (Wan2.1 `wan/modules/vae.py`, `_video_vae`)."""

    base_dim: int = 96
    """Channels of the first encoder level (and last decoder level)."""
    z_dim: int = 16
    """Latent channels C."""
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Channel multiplier per resolution level."""
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    """Which spatial downsamplings also halve time; two of them give the 4x temporal compression."""
    latents_mean: tuple[float, ...] = WAN_LATENTS_MEAN
    """Per-channel latent mean subtracted by `encode`."""
    latents_std: tuple[float, ...] = WAN_LATENTS_STD
    """Per-channel latent std divided out by `encode`."""

    def __post_init__(self) -> None:
        self.dim_mult = tuple(int(m) for m in self.dim_mult)
        self.temporal_downsample = tuple(bool(t) for t in self.temporal_downsample)
        self.latents_mean = tuple(float(m) for m in self.latents_mean)
        self.latents_std = tuple(float(s) for s in self.latents_std)
        if min(self.base_dim, self.z_dim, *self.dim_mult) < 1:
            raise ConfigError(f"VAE config: sizes must be positive, got {self}")
        # diffusers' `convert_wan_vae_to_diffusers` hard-codes Wan2.1's 4 levels of 2 (decoder: 3) residual
        # blocks.
        if len(self.dim_mult) != 4:
            raise ConfigError(f"VAE dim_mult: expected 4 levels as in Wan2.1, got {self.dim_mult}")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ConfigError(
                f"VAE temporal_downsample: expected {len(self.dim_mult) - 1} flags (one per downsampling), "
                f"got {len(self.temporal_downsample)}"
            )
        # diffusers' AutoencoderKLWan encodes in 1 + 4k frame chunks whatever the config says.
        if sum(self.temporal_downsample) != 2:
            raise ConfigError("VAE temporal_downsample: exactly two temporal downsamplings (4x) are supported")
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ConfigError(f"VAE latents_mean/latents_std: expected {self.z_dim} values each")
        if min(self.latents_std) <= 0:
            raise ConfigError("VAE latents_std: every value must be positive")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


VAE_PRESETS: dict[str, VAEConfig] = {
    "wan2.1": VAEConfig(),
    # Same structure at a few channels, for fast tests (tiling, end-to-end runs).
    "debug": VAEConfig(base_dim=8),
}


def vae_config(name: str, **overrides) -> VAEConfig:
    """A VAE preset by name, with optional field overrides."""
    if name not in VAE_PRESETS:
        raise ConfigError(f"unknown VAE preset {name!r}; known: {', '.join(sorted(VAE_PRESETS))}")
    return dataclasses.replace(VAE_PRESETS[name], **overrides)


# ------------------------------------------------------------------------------------------ checkpoint layout


def _residual_keys(prefix: str, in_dim: int, out_dim: int) -> list[str]:
    # Wan2.1 `ResidualBlock.residual` = [RMS_norm, SiLU, CausalConv3d, RMS_norm, SiLU, Dropout, CausalConv3d].
    keys = [f"{prefix}.residual.0.gamma", f"{prefix}.residual.3.gamma"]
    keys += [f"{prefix}.residual.{i}.{p}" for i in (2, 6) for p in ("weight", "bias")]
    if in_dim != out_dim:
        keys += [f"{prefix}.shortcut.weight", f"{prefix}.shortcut.bias"]
    return keys


def _middle_keys(prefix: str, dim: int) -> list[str]:
    attention = [f"{prefix}.1.norm.gamma"] + [
        f"{prefix}.1.{m}.{p}" for m in ("to_qkv", "proj") for p in ("weight", "bias")
    ]
    return _residual_keys(f"{prefix}.0", dim, dim) + attention + _residual_keys(f"{prefix}.2", dim, dim)


def _resample_keys(prefix: str, temporal: bool) -> list[str]:
    keys = [f"{prefix}.resample.1.weight", f"{prefix}.resample.1.bias"]
    return keys + ([f"{prefix}.time_conv.weight", f"{prefix}.time_conv.bias"] if temporal else [])


def original_vae_keys(config: VAEConfig) -> list[str]:
    """Key names of `Wan2.1_VAE.pth` for `config`, mirroring Wan2.1 `Encoder3d` / `Decoder3d` module order."""
    conv = ("weight", "bias")
    keys = [f"encoder.conv1.{p}" for p in conv]
    dims = [config.base_dim * m for m in (1, *config.dim_mult)]
    index = 0
    for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        for _ in range(NUM_RES_BLOCKS):
            keys += _residual_keys(f"encoder.downsamples.{index}", in_dim, out_dim)
            in_dim, index = out_dim, index + 1
        if level < len(config.dim_mult) - 1:
            keys += _resample_keys(f"encoder.downsamples.{index}", config.temporal_downsample[level])
            index += 1
    keys += _middle_keys("encoder.middle", dims[-1]) + ["encoder.head.0.gamma"]
    keys += [f"encoder.head.2.{p}" for p in conv] + [f"conv1.{p}" for p in conv] + [f"conv2.{p}" for p in conv]

    keys += [f"decoder.conv1.{p}" for p in conv]
    dims = [config.base_dim * m for m in (config.dim_mult[-1], *config.dim_mult[::-1])]
    keys += _middle_keys("decoder.middle", dims[0])
    temporal_upsample = config.temporal_downsample[::-1]
    index = 0
    for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        # Wan2.1 `Decoder3d`: every upsampling halves the channels, so levels after the first start at in_dim
        # // 2.
        if 0 < level < len(config.dim_mult):
            in_dim //= 2
        for _ in range(NUM_RES_BLOCKS + 1):
            keys += _residual_keys(f"decoder.upsamples.{index}", in_dim, out_dim)
            in_dim, index = out_dim, index + 1
        if level < len(config.dim_mult) - 1:
            keys += _resample_keys(f"decoder.upsamples.{index}", temporal_upsample[level])
            index += 1
    return keys + ["decoder.head.0.gamma"] + [f"decoder.head.2.{p}" for p in conv]


def _build_diffusers_vae(config: VAEConfig) -> nn.Module:
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=config.base_dim,
        z_dim=config.z_dim,
        dim_mult=list(config.dim_mult),
        num_res_blocks=NUM_RES_BLOCKS,
        attn_scales=[],
        temperal_downsample=list(config.temporal_downsample),
        latents_mean=list(config.latents_mean),
        latents_std=list(config.latents_std),
    )


def _original_to_diffusers_names(config: VAEConfig) -> dict[str, str]:
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    original = original_vae_keys(config)
    converted = convert_wan_vae_to_diffusers({key: key for key in original})  # diffusers name -> original name
    return {orig: new for new, orig in converted.items()}


def original_vae_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of `Wan2.1_VAE.pth` for `config` (e.g. to write test files in its layout)."""
    with torch.device("meta"):
        model_shapes = {k: tuple(v.shape) for k, v in _build_diffusers_vae(config).state_dict().items()}
    names = _original_to_diffusers_names(config)
    if sorted(names.values()) != sorted(model_shapes):
        # Only reachable if a diffusers release renames its modules: fail here rather than mis-load weights.
        raise CheckpointError("diffusers' AutoencoderKLWan no longer matches the Wan2.1 VAE layout this code expects")
    return {orig: model_shapes[new] for orig, new in names.items()}


# ----------------------------------------------------------------------------------------------------- tiling


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering [0, size); the last tile is pushed back to end exactly at `size`."""
    if size <= tile:
        return [0]
    return [*range(0, size - tile, stride), size - tile]


def _ramp(length: int, ramp: int, rise: bool, fall: bool) -> torch.Tensor:
    """1-D blend weights: linear rise over the first `ramp` samples and fall over the last (where a neighbour
    overlaps), 1 elsewhere. Complementary ramps of two neighbours sum to 1 over a shared `ramp`-wide band."""
    weight = torch.ones(length, dtype=torch.float32)
    ramp = min(ramp, length)
    if ramp > 0:
        up = (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp
        if rise:
            weight[:ramp] *= up
        if fall:
            weight[-ramp:] *= up.flip(0)
    return weight


def tiled_map(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int, overlap: int, scale: float
) -> torch.Tensor:
    """Apply `fn` to overlapping spatial tiles of `x` (B, C, T, H, W) and blend the results in float32.

    `tile` and `overlap` are in units of `x`'s last two axes; `fn` maps an h x w tile to h*scale x w*scale.
    Each output pixel is the weight-normalised sum of the tiles covering it (linear ramps across overlaps).
    """
    height, width = x.shape[-2:]
    tile_h, tile_w = min(tile, height), min(tile, width)
    rows = _tile_starts(height, tile_h, tile - overlap)
    cols = _tile_starts(width, tile_w, tile - overlap)
    out_tile_h, out_tile_w, out_ramp = round(tile_h * scale), round(tile_w * scale), round(overlap * scale)
    out = weights = None
    for top in rows:
        w_rows = _ramp(out_tile_h, out_ramp, rise=top > 0, fall=top + tile_h < height)
        for left in cols:
            piece = fn(x[..., top : top + tile_h, left : left + tile_w]).float()  # (B, C', T', h', w')
            if out is None:
                out = piece.new_zeros(*piece.shape[:3], round(height * scale), round(width * scale))
                weights = piece.new_zeros(out.shape[-2:])
            w_cols = _ramp(out_tile_w, out_ramp, rise=left > 0, fall=left + tile_w < width)
            blend = torch.outer(w_rows, w_cols).to(piece.device)  # (h', w')
            y0, x0 = round(top * scale), round(left * scale)
            out[..., y0 : y0 + out_tile_h, x0 : x0 + out_tile_w] += piece * blend
            weights[y0 : y0 + out_tile_h, x0 : x0 + out_tile_w] += blend
    return out / weights


# ------------------------------------------------------------------------------------------------------ model


class WanVAE(nn.Module):
    """Wan2.1 VAE with Wan's latent normalisation: video [-1, 1] <-> normalised latents."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config or VAEConfig()
        self.model = _build_diffusers_vae(self.config)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Kept as float32 constants, not buffers: moving the model to bf16 must not round the statistics.
        shape = (1, self.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.config.latents_mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(self.config.latents_std, dtype=torch.float32, device=device).view(shape)
        return mean, std

    def _check_tiles(self, tile_size: int, tile_overlap: int) -> None:
        f = self.config.spatial_factor
        if tile_size % f or tile_overlap % f or not 0 <= tile_overlap < tile_size:
            raise InputError(
                f"VAE tiles: tile_size {tile_size} and tile_overlap {tile_overlap} (pixels) must be "
                f"multiples of {f} with 0 <= overlap < size"
            )

    def _encode_mean(self, video: torch.Tensor) -> torch.Tensor:
        return self.model.encode(video).latent_dist.mean

    def _decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latents).sample

    @torch.no_grad()
    def encode(
        self, video: torch.Tensor, *, tiled: bool = False, tile_size: int = 256, tile_overlap: int = 64
    ) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised posterior mean (B, C, 1 + (T-1)/4, H/8, W/8), float32.

        `tiled=True` encodes overlapping `tile_size`-pixel squares (overlap `tile_overlap` pixels) one by one.
        """
        t_factor, s_factor = self.config.temporal_factor, self.config.spatial_factor
        if video.dim() != 5 or video.shape[1] != 3:
            raise InputError(f"VAE encode: expected video of shape (B, 3, T, H, W), got {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if (frames - 1) % t_factor or height % s_factor or width % s_factor:
            raise InputError(
                f"VAE encode: got {frames} frames of {height}x{width}; expected 1 + {t_factor}k frames and "
                f"a size divisible by {s_factor}"
            )
        x = video.to(self.device, self.dtype)
        if tiled:
            self._check_tiles(tile_size, tile_overlap)
            mean = tiled_map(self._encode_mean, x, tile=tile_size, overlap=tile_overlap, scale=1 / s_factor)
        else:
            mean = self._encode_mean(x).float()
        latents_mean, latents_std = self._stats(mean.device)
        return (mean - latents_mean) / latents_std

    @torch.no_grad()
    def decode(
        self, latents: torch.Tensor, *, tiled: bool = False, tile_size: int = 256, tile_overlap: int = 64
    ) -> torch.Tensor:
        """Normalised latents (B, C, F, h, w) -> video (B, 3, 1 + 4(F-1), 8h, 8w) clamped to [-1, 1], float32.

        `tiled=True` decodes overlapping tiles of `tile_size` output pixels (overlap `tile_overlap` pixels).
        """
        if latents.dim() != 5 or latents.shape[1] != self.config.z_dim:
            raise InputError(
                f"VAE decode: expected latents (B, {self.config.z_dim}, F, h, w), got {tuple(latents.shape)}"
            )
        latents_mean, latents_std = self._stats(latents.device)
        z = (latents.float() * latents_std + latents_mean).to(self.device, self.dtype)
        if tiled:
            self._check_tiles(tile_size, tile_overlap)
            s_factor = self.config.spatial_factor
            video = tiled_map(
                self._decode_raw,
                z,
                tile=tile_size // s_factor,
                overlap=tile_overlap // s_factor,
                scale=s_factor,
            )
        else:
            video = self._decode_raw(z).float()
        return video.clamp(-1.0, 1.0)


def config_from_shapes(state: dict[str, torch.Tensor]) -> VAEConfig:
    """The architecture of a VAE file in the Wan2.1 layout, from its tensor shapes: Wan2.1's, with the width of
    the first encoder level read from ``encoder.conv1`` (the file is checked against the result when loading)."""
    conv = state.get("encoder.conv1.weight")
    return VAEConfig() if conv is None else VAEConfig(base_dim=conv.shape[0])


def load_vae(
    path: str | Path,
    config: VAEConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> WanVAE:
    """Load `Wan2.1_VAE.pth` (original key layout; `.pth` or `.safetensors`) into an eval-mode `WanVAE`.

    The architecture is `config`, or, when None, read from the file's tensor shapes (`config_from_shapes`), as
    `load_dit` does; either way the file must match it key for key and shape for shape.
    """
    state, _ = read_state_dict(path, what=f"the Wan2.1 VAE `{VAE_FILENAME}`", hint=f"download it from {WAN21_URL}")
    config = config or config_from_shapes(state)
    check_layout(state, original_vae_shapes(config), source=path, what=f"Wan2.1 VAE ({VAE_FILENAME})")
    names = _original_to_diffusers_names(config)
    # Convert one tensor at a time and drop the source tensor, so at most one extra tensor is alive at once.
    converted = {names[key]: state.pop(key).to(device=device, dtype=dtype) for key in list(state)}
    with torch.device("meta"):
        vae = WanVAE(config)
    vae.model.load_state_dict(converted, strict=True, assign=True)
    return vae.eval().requires_grad_(False)
