"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"), v0.1.

Written here because the ``lpips`` and ``torchvision`` packages cannot be installed beside the CPU torch this
project pins. The computation is the ``lpips`` package's ``LPIPS.forward`` (``lpips/lpips.py``):

1. scale: ``(x - shift) / scale`` per channel, shift = (-.030, -.088, -.188), scale = (.458, .448, .450),
   on images in [-1, 1];
2. backbone features after five ReLUs (AlexNet: relu1..relu5; VGG16: relu1_2, relu2_2, relu3_3, relu4_3,
   relu5_3), torchvision's layer layout;
3. each feature map unit-normalised over channels, ``f / (||f||_2 + 1e-10)``;
4. squared difference, a learned non-negative 1x1 convolution to one channel ("linear head"), spatial mean;
5. sum over the five layers.

Weights (local files, ``.pth`` or ``.safetensors``), keys as the upstream files name them:

* backbone: torchvision's ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` (keys ``features.0.weight``
  …; ``classifier.*`` is ignored), or an ``lpips`` module's ``net.slice{k}.{i}.*`` keys (same indices);
* heads: the ``lpips`` package's ``weights/v0.1/alex.pth`` / ``vgg.pth`` (keys ``lin0.model.1.weight`` …
  ``lin4.model.1.weight``, each ``[1, C_k, 1, 1]``).

`load_lpips` takes one file holding both (e.g. a saved ``lpips.LPIPS`` state dict) or two files (backbone,
heads, in either order); the backbone kind is recognised from the first convolution's kernel (11x11: AlexNet,
3x3: VGG16). Every expected key must be present with its exact shape, else `CheckpointError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..models.state_dicts import read_state_dict

# (in, out, kernel, stride, padding) of each convolution, keyed by its index in torchvision's `features`.
ALEXNET_CONVS = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}
ALEXNET_POOLS = (2, 5)  # MaxPool2d(3, stride 2) indices before relu5 (the final pool at 12 is never used)
VGG16_CONVS = {
    i: (c_in, c_out, 3, 1, 1)
    for i, (c_in, c_out) in zip(
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        (
            (3, 64),
            (64, 64),
            (64, 128),
            (128, 128),
            (128, 256),
            (256, 256),
            (256, 256),
            (256, 512),
            (512, 512),
            (512, 512),
            (512, 512),
            (512, 512),
            (512, 512),
        ),
        strict=True,
    )
}
VGG16_POOLS = (4, 9, 16, 23)  # MaxPool2d(2, stride 2)
# The five LPIPS taps: the ReLU closing each slice (lpips/pretrained_networks.py slice boundaries).
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
# Smallest frame side each backbone can take (AlexNet: 11x11/4 convolution and two 3x3/2 pools before relu5).
MIN_SIZE = {"alex": 31, "vgg": 16}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class Backbone(nn.Module):
    """torchvision's AlexNet or VGG16 ``features`` (same indices, so its state dict loads by key), cut
    after the last LPIPS tap; `forward` returns the five tapped ReLU outputs."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in TAPS:
            raise ValueError(f"LPIPS backbone: expected 'alex' or 'vgg', got {kind!r}")
        self.kind = kind
        convs, pools = (ALEXNET_CONVS, ALEXNET_POOLS) if kind == "alex" else (VGG16_CONVS, VGG16_POOLS)
        pool = nn.MaxPool2d(3, 2) if kind == "alex" else nn.MaxPool2d(2, 2)
        layers: list[nn.Module] = []
        for index in range(TAPS[kind][-1] + 1):
            if index in convs:
                c_in, c_out, k, s, p = convs[index]
                layers.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=p))
            elif index in pools:
                layers.append(pool)
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)

    @property
    def channels(self) -> list[int]:
        """Channels at each tap."""
        convs = ALEXNET_CONVS if self.kind == "alex" else VGG16_CONVS
        return [convs[max(i for i in convs if i < tap)][1] for tap in TAPS[self.kind]]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` (already scaled) → five ``[B, C_k, H_k, W_k]`` feature maps."""
        taps, out = set(TAPS[self.kind]), []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                out.append(x)
        return out


class LPIPS(nn.Module):
    """LPIPS v0.1 distance: backbone + five linear heads (see the module docstring)."""

    def __init__(self, kind: str = "alex"):
        super().__init__()
        self.net = Backbone(kind)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.net.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] → distances ``[B]`` (0 for identical images)."""
        feats_x = self.net((x - self.shift) / self.scale)
        feats_y = self.net((y - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for lin, fx, fy in zip(self.lins, feats_x, feats_y, strict=True):
            fx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            fy = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            total = total + lin((fx - fy).pow(2)).mean(dim=(1, 2, 3))  # (B,)
        return total


def _read(path: Path) -> dict[str, Tensor]:
    return read_state_dict(path, what="LPIPS weight file")[0]


def _normalise_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map every accepted spelling onto this module's keys: ``net.features.{i}.*`` and ``lins.{k}.weight``."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if match := re.fullmatch(r"(?:net\.)?features\.(\d+)\.(weight|bias)", key):
            out[f"net.features.{match[1]}.{match[2]}"] = value
        elif match := re.fullmatch(r"net\.slice\d\.(\d+)\.(weight|bias)", key):
            out[f"net.features.{match[1]}.{match[2]}"] = value
        elif match := re.fullmatch(r"lin(\d)\.model\.\d\.weight", key):
            out[f"lins.{match[1]}.weight"] = value
    return out


def _upstream_name(key: str) -> str:
    """This module's key → the name the upstream files use (for error messages)."""
    if match := re.fullmatch(r"lins\.(\d)\.weight", key):
        return f"lin{match[1]}.model.1.weight"
    return key.removeprefix("net.")


def load_lpips(paths: str | os.PathLike | list[str | os.PathLike]) -> LPIPS:
    """Build LPIPS from one file (backbone + heads) or two files (backbone and heads, either order)."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    if not 1 <= len(paths) <= 2:
        raise CheckpointError(f"LPIPS weights: expected one or two files, got {len(paths)}")
    state: dict[str, Tensor] = {}
    for path in paths:
        state.update(_normalise_keys(_read(path)))
    where = " + ".join(str(p) for p in paths)
    first = state.get("net.features.0.weight")
    if first is None:
        raise CheckpointError(
            f"{where}: no backbone key 'features.0.weight' (torchvision alexnet/vgg16 weights are needed)"
        )
    kind = {11: "alex", 3: "vgg"}.get(first.shape[-1])
    if kind is None:
        raise CheckpointError(
            f"{where}: features.0.weight has a {first.shape[-1]}x{first.shape[-1]} kernel; "
            "expected 11x11 (AlexNet) or 3x3 (VGG16)"
        )
    model = LPIPS(kind)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        shown = ", ".join(_upstream_name(k) for k in missing[:3])
        raise CheckpointError(f"{where}: LPIPS-{kind} weights lack {len(missing)} keys (e.g. {shown})")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: key {_upstream_name(key)}: expected shape {list(tensor.shape)}, got {list(state[key].shape)}"
            )
    model.load_state_dict({k: state[k].float() for k in expected})
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips_frames(model: LPIPS, pred: Tensor, target: Tensor, *, batch: int = 8) -> Tensor:
    """Per-frame LPIPS of two ``[3, T, H, W]`` videos in [-1, 1] → ``[T]`` float64."""
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[0] != 3:
        raise InputError(
            f"lpips: expected two [3, T, H, W] videos of one shape, got {list(pred.shape)} and {list(target.shape)}"
        )
    minimum = MIN_SIZE[model.net.kind]
    if min(pred.shape[2:]) < minimum:
        raise InputError(
            f"lpips: frames of {pred.shape[2]}x{pred.shape[3]} are smaller than LPIPS-{model.net.kind}'s "
            f"minimum {minimum}x{minimum}"
        )
    x, y = pred.float().transpose(0, 1), target.float().transpose(0, 1)  # (T, 3, H, W)
    out = [model(x[i : i + batch], y[i : i + batch]) for i in range(0, x.shape[0], batch)]
    return torch.cat(out).double()
