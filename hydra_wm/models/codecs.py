"""Latent codecs other than the Wan VAE: `PixelCodec`, a space-to-depth "VAE" for Flatland.

A codec here is anything with the `WanVAE` interface the rest of the package uses: ``encode(video)`` with video
(B, 3, T, H, W) in [-1, 1] -> latents (B, C, F, h, w) float32, ``decode(latents)`` -> video clamped to [-1, 1],
and ``config.temporal_factor`` / ``config.spatial_factor`` / ``config.z_dim``. `data.preprocess.pixel_encoders`
wraps one into the `Encoders` that `EncodedDataset` and `preprocess` take, with a null text embedding;
`flatland.training.flatland_training_dataset` is the built-in model's training set: Flatland clips rendered and
encoded on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ..errors import ConfigError, InputError

# Pixel statistics of Flatland video in [-1, 1], measured on 64 clips of the `small` preset (seed 0, all 40
# frames): mean 0.113 (per channel 0.121 / 0.109 / 0.109), std 0.456 (0.455 / 0.435 / 0.476). Rounded, fixed
# constants (not fitted per data set) so that a trained model and its codec never disagree.
FLATLAND_PIXEL_MEAN = 0.1
FLATLAND_PIXEL_STD = 0.45


@dataclass(frozen=True)
class PixelCodecConfig:
    """Shape facts of a `PixelCodec`, named as `vae.VAEConfig`'s so callers need not tell the codecs apart."""

    factor: int
    """Space-to-depth factor s: latents have H/s x W/s positions."""

    @property
    def z_dim(self) -> int:
        return 3 * self.factor * self.factor

    @property
    def spatial_factor(self) -> int:
        return self.factor

    @property
    def temporal_factor(self) -> int:
        return 1


class PixelCodec(nn.Module):
    """Lossless pixel codec: space-to-depth by `factor`, one latent frame per video frame, a fixed affine scale.

    encode: ``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 3 s^2, T, H/s, W/s)``, channel ``c * s^2 + i * s + j`` holding
    colour c of pixel (i, j) of each s x s cell (einops ``b c t (h i) (w j) -> b (c i j) t h w``), then
    ``(x - mean) / std``. decode undoes both and clamps to [-1, 1]; ``decode(encode(v)) == v`` up to float32
    rounding (exact for 8-bit frames) for any v in [-1, 1].

    Why s = 2 by default: with the DiT's Wan2.1 patch (1, 2, 2) on top, a 32x32 Flatland frame becomes 16x16
    latents and 8x8 = 64 tokens, the size of the built-in models (and the split of Wan2.1: the codec makes
    the spatial grid, the DiT patchifies it 2x2, patchify/unpatchify run exactly as for the real model). s = 4
    with patch (1, 1, 1) gives the same tokens with the same 48 numbers each, so nothing is gained, while s = 2
    keeps the latents image-like (16x16x12, viewable and cheap to inspect) and needs H, W divisible by 4 in both
    cases. Nothing is compressed: Flatland frames are small, and a lossless codec removes codec error from every
    measurement (a trained VAE would add its own blur to PSNR and to subject presence).

    No temporal compression: ``latent_stride = 1`` (``config.temporal_factor``), so cameras are read for every
    video frame (`data.cameras.latent_frame_indices(n, 1)` = all n frames; `FlatlandDataset(..., latent_stride=1)`)
    and any clip length works (the Wan VAE needs 1 + 4k frames).

    Scale: ``mean`` / ``std`` default to Flatland's pixel statistics (`FLATLAND_PIXEL_MEAN`, `FLATLAND_PIXEL_STD`),
    so latents have roughly zero mean and unit variance, like the normalised Wan latents and like the flow
    matching noise. It is one fixed affine map for every channel, stored nowhere but here: change it and a
    trained model no longer matches.
    """

    latent_stride = 1

    def __init__(self, factor: int = 2, mean: float = FLATLAND_PIXEL_MEAN, std: float = FLATLAND_PIXEL_STD):
        super().__init__()
        if int(factor) < 1:
            raise ConfigError(f"PixelCodec factor: expected a positive integer, got {factor!r}")
        if not std > 0:
            raise ConfigError(f"PixelCodec std: expected > 0, got {std!r}")
        self.config = PixelCodecConfig(int(factor))
        self.factor, self.mean, self.std = int(factor), float(mean), float(std)

    @property
    def z_dim(self) -> int:
        """Latent channels C = 3 s^2."""
        return self.config.z_dim

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, F, h, w) of the latents of a (3, frames, height, width) clip."""
        self._check_size(height, width)
        return (self.z_dim, frames, height // self.factor, width // self.factor)

    def _check_size(self, height: int, width: int) -> None:
        if height % self.factor or width % self.factor:
            raise InputError(f"PixelCodec: frames of {height}x{width} are not divisible by factor {self.factor}")

    @torch.no_grad()
    def encode(self, video: Tensor, **_ignored) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> latents (B, 3 s^2, T, H/s, W/s), float32.

        Keyword arguments of `WanVAE.encode` (``tiled=...``) are accepted and ignored: there is nothing to tile.
        """
        if video.dim() != 5 or video.shape[1] != 3:
            raise InputError(f"PixelCodec encode: expected video of shape (B, 3, T, H, W), got {tuple(video.shape)}")
        self._check_size(*video.shape[3:])
        s = self.factor
        latents = rearrange(video.float(), "b c t (h i) (w j) -> b (c i j) t h w", i=s, j=s)
        return (latents - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: Tensor, **_ignored) -> Tensor:
        """Latents (B, 3 s^2, F, h, w) -> video (B, 3, F, s h, s w) clamped to [-1, 1], float32."""
        if latents.dim() != 5 or latents.shape[1] != self.z_dim:
            raise InputError(
                f"PixelCodec decode: expected latents (B, {self.z_dim}, F, h, w), got {tuple(latents.shape)}"
            )
        s = self.factor
        video = rearrange(latents.float() * self.std + self.mean, "b (c i j) t h w -> b c t (h i) (w j)", i=s, j=s)
        return video.clamp(-1.0, 1.0)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, z_dim={self.z_dim}, mean={self.mean}, std={self.std}"
