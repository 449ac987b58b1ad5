"""VBench subject and background consistency (Huang et al. 2024), as VBench's code computes them.

``vbench/subject_consistency.py`` and ``vbench/background_consistency.py``: with L2-normalised per-frame
features f_0 .. f_{T-1},

    score = 1 / (T - 1) * sum_{i >= 1} ( max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0)) ) / 2

Subject consistency uses DINO ViT-B/16 CLS features (`features.dino_cls`: short side to 224, bilinear, no
crop); background consistency uses CLIP image embeddings (`features.clip_image_embeds`: short side to 224,
bicubic, centre crop). VBench uses CLIP ViT-B/32 for the latter; any CLIP folder works here and the one used
is reported. We score the generated target frames only (the condition frames are copies of the input).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .features import ClipVision, DinoModel, clip_image_embeds, dino_cls


def consistency(features: Tensor) -> float:
    """VBench's score of per-frame features ``[T, D]`` (T >= 2; NaN for a single frame)."""
    if features.ndim != 2:
        raise InputError(f"consistency: expected [T, D] features, got {list(features.shape)}")
    if features.shape[0] < 2:
        return math.nan
    features = F.normalize(features.double(), dim=-1)
    previous = (features[1:] * features[:-1]).sum(dim=-1).clamp(min=0.0)
    first = (features[1:] * features[:1]).sum(dim=-1).clamp(min=0.0)
    return float(((previous + first) / 2.0).mean())


def subject_consistency(dino: DinoModel, video: Tensor) -> float:
    """``[3, T, H, W]`` in [-1, 1] → VBench subject consistency (DINO)."""
    return consistency(dino_cls(dino, video))


def background_consistency(clip: ClipVision, video: Tensor) -> float:
    """``[3, T, H, W]`` in [-1, 1] → VBench background consistency (CLIP)."""
    return consistency(clip_image_embeds(clip, video))
