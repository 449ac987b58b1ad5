"""Dynamic Subject Consistency (DSC): the paper's metric (docs/reference.md §7), as the authors' ``eval_dsc.py``
computes it.

For each frame with a subject box: CLIP ViT-B/16 last-layer patch tokens (without the CLS token), ROI-aligned
in the box to 7x7 bins (``roi_align(..., aligned=True)``, adaptive sampling), averaged over the bins and
L2-normalised. Then

* ``DSC_ctx`` = mean cosine similarity over all (generated frame, context frame) pairs,
* ``DSC_GT``  = mean cosine similarity over all (generated frame, ground-truth target frame) pairs.

Boxes of real frames come from the red mask videos (union box of the red pixels, as ``cv2.boundingRect``
over all contours does in the reference). Boxes in generated frames come from `tracker.track_subject`
(the reference calls a YOLOv11 tracker that was never released), run on the generated frames whose
ground-truth target frame shows the subject.

Deviation from the reference, on purpose: the reference feeds frames through ``CLIPProcessor`` (short side to
224, centre crop 224) but scales frame-relative boxes by the cropped grid's side, so on a 480x832 frame the
box lands on the wrong content and subjects near the left or right edge fall outside the crop. Here the whole
frame is resized to 224x224 (`features.clip_patch_grid`), so frame-relative boxes map exactly onto the grid.

``roi_align`` is torchvision's (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``), rewritten with plain torch
ops because torchvision cannot be installed here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .features import ClipVision, clip_patch_grid
from .tracker import track_subject

ROI_SIZE = 7


def _interpolation_weights(coords: Tensor, valid: Tensor, size: int) -> Tensor:
    """Sample coordinates ``[N, P, G]`` on an axis of `size` cells → bilinear weights ``[N, P, G, size]``.

    torchvision's ``bilinear_interpolate``: a sample beyond (-1, size) contributes 0; otherwise it is clamped
    into [0, size - 1] and split between the two neighbouring cells.
    """
    valid = valid & (coords >= -1.0) & (coords <= size)
    coords = coords.clamp(min=0.0)
    low = coords.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coords = torch.where(at_edge, low.to(coords.dtype), coords)
    frac = coords - low.to(coords.dtype)
    weights = torch.zeros(*coords.shape, size, dtype=coords.dtype, device=coords.device)
    weights.scatter_add_(-1, low[..., None], ((1.0 - frac) * valid)[..., None])
    weights.scatter_add_(-1, high[..., None], (frac * valid)[..., None])
    return weights


def roi_align(features: Tensor, boxes: Tensor, output_size: int = ROI_SIZE, *, aligned: bool = True) -> Tensor:
    """torchvision ``roi_align(features, boxes, output_size, spatial_scale=1, sampling_ratio=-1, aligned)``
    with one box per feature map.

    ``features`` ``[N, C, H, W]``; ``boxes`` ``[N, 4]`` (x0, y0, x1, y1) in feature-cell units. Returns
    ``[N, C, output_size, output_size]``: each bin averages ``ceil(roi / output_size)`` x ... bilinear samples.
    """
    if features.ndim != 4 or boxes.shape != (features.shape[0], 4):
        raise InputError(
            f"roi_align: expected [N, C, H, W] features and [N, 4] boxes, got "
            f"{list(features.shape)} and {list(boxes.shape)}"
        )
    N, C, H, W = features.shape
    boxes = boxes.to(torch.float64)
    offset = 0.5 if aligned else 0.0
    x0, y0, x1, y1 = (boxes[:, i] - offset for i in range(4))
    roi_w, roi_h = x1 - x0, y1 - y0
    if not aligned:  # torchvision forces at least one cell for unaligned boxes
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / output_size, roi_h / output_size
    grid_w = torch.ceil(roi_w / output_size).clamp(min=0).long()  # adaptive sampling (sampling_ratio <= 0)
    grid_h = torch.ceil(roi_h / output_size).clamp(min=0).long()
    G_w, G_h = max(int(grid_w.max()), 1), max(int(grid_h.max()), 1)
    bins = torch.arange(output_size, dtype=torch.float64)

    def axis(start: Tensor, bin_size: Tensor, grid: Tensor, G: int, size: int) -> Tensor:
        samples = torch.arange(G, dtype=torch.float64)
        step = bin_size / grid.clamp(min=1)
        coords = (
            start[:, None, None]
            + bins[None, :, None] * bin_size[:, None, None]
            + (samples[None, None, :] + 0.5) * step[:, None, None]
        )  # (N, P, G)
        valid = samples[None, None, :] < grid[:, None, None]
        return _interpolation_weights(coords, valid.expand_as(coords), size)  # (N, P, G, size)

    weight_y = axis(y0, bin_h, grid_h, G_h, H).flatten(1, 2).to(features.dtype)  # (N, P*G_h, H)
    weight_x = axis(x0, bin_w, grid_w, G_w, W).flatten(1, 2).to(features.dtype)  # (N, P*G_w, W)
    samples = torch.einsum("nah,nchw,nbw->ncab", weight_y, features, weight_x)  # (N, C, P*G_h, P*G_w)
    samples = samples.reshape(N, C, output_size, G_h, output_size, G_w).sum(dim=(3, 5))  # (N, C, P, P)
    count = (grid_h * grid_w).clamp(min=1).to(features.dtype)
    return samples / count[:, None, None, None]


def roi_features(grid: Tensor, boxes: Tensor) -> Tensor:
    """Patch grid ``[N, D, g, g]`` and frame-relative boxes ``[N, 4]`` (x0, y0, x1, y1 in 0..1) → the
    L2-normalised mean of the 7x7 ROI-aligned bins, ``[N, D]`` (the reference's ``_extract_roi_features``)."""
    scale = torch.tensor([grid.shape[3], grid.shape[2], grid.shape[3], grid.shape[2]], dtype=boxes.dtype)
    regions = roi_align(grid, boxes * scale, ROI_SIZE, aligned=True)
    return F.normalize(regions.mean(dim=(2, 3)), dim=-1)


def valid_boxes(boxes: Tensor) -> Tensor:
    """``[T, 4]`` boxes with NaN rows (or the reference's -1 rows) for "no subject" → bool ``[T]``."""
    return ~torch.isnan(boxes).any(dim=1) & (boxes[:, 0] >= 0)


def dsc_scores(
    clip: ClipVision,
    context: Tensor,
    context_boxes: Tensor,
    prediction: Tensor,
    target: Tensor,
    target_boxes: Tensor,
) -> dict:
    """DSC of one sample.

    ``context`` ``[3, Tc, H, W]`` with ``context_boxes`` ``[Tc, 4]``; ``prediction`` and ``target``
    ``[3, T, H, W]`` with the ground-truth ``target_boxes`` ``[T, 4]`` (frame-relative, NaN rows where the
    mask shows no subject). Returns ``{"dsc_ctx", "dsc_gt", "track_boxes" [T, 4] (NaN where not tracked),
    "track_similarity" [T], "reason"}``; the scores are NaN with a ``reason`` when no context or target frame
    shows the subject.
    """
    nan = torch.full((target.shape[1],), math.nan, dtype=torch.float64)
    out = {
        "dsc_ctx": math.nan,
        "dsc_gt": math.nan,
        "track_boxes": torch.full((target.shape[1], 4), math.nan),
        "track_similarity": nan,
        "reason": None,
    }
    in_context, in_target = valid_boxes(context_boxes), valid_boxes(target_boxes)
    if not in_context.any():
        out["reason"] = "no context frame shows the subject (cond_mask)"
        return out
    if not in_target.any():
        out["reason"] = "no target frame shows the subject (tgt_mask)"
        return out
    context_features = roi_features(clip_patch_grid(clip, context[:, in_context]), context_boxes[in_context])
    template = F.normalize(context_features.mean(dim=0), dim=0)
    predicted_grid = clip_patch_grid(clip, prediction[:, in_target])
    boxes, similarity = track_subject(predicted_grid, template, context_boxes[in_context])
    predicted_features = roi_features(predicted_grid, boxes)
    target_features = roi_features(clip_patch_grid(clip, target[:, in_target]), target_boxes[in_target])
    out["dsc_ctx"] = float((predicted_features @ context_features.T).mean())
    out["dsc_gt"] = float((predicted_features @ target_features.T).mean())
    out["track_boxes"][in_target] = boxes.float()
    out["track_similarity"] = nan.clone()
    out["track_similarity"][in_target] = similarity.double()
    return out
