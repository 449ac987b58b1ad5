"""Video metrics: PSNR and SSIM, and Flatland's exact subject metrics (presence, position, identity).

Conventions. Videos are ``[3, T, H, W]`` float tensors (numpy arrays are accepted) in the project's range
[-1, 1]; ``value_range`` names another range (e.g. ``(0, 255)``). PSNR and SSIM are computed on the frames
mapped to [0, 1] with data range 1, which gives the same numbers as uint8 frames with data range 255. (SSIM is
not shift-invariant, so computing it on [-1, 1] data with range 2 would give different, non-standard values.)
Per-frame results are ``[T]`` float64 tensors; NaN marks a frame where a metric is undefined (e.g. no subject
pixel), and summaries average over the defined entries only.

PSNR: ``10 log10(1 / MSE)`` per frame on [0, 1] data, MSE over all pixels and channels (skimage's
``peak_signal_noise_ratio`` on each frame). Identical frames give +inf unless `max_db` caps it.

SSIM: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population
(co)variances, computed per channel over "valid" window positions only and averaged over pixels and
channels. This equals skimage's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, channel_axis=-1)`` (which crops the padded border) and the ``ssim`` of
``pytorch_msssim``, the definitions video world-model papers report.

Flatland metrics (the truth is exact, see `hydra_wm.flatland`): a colour segmentation of the generated frame
finds each subject by its known colours (`segment_subjects`), then per target frame and subject

* presence: IoU of the segmented and the true subject mask (0 = the subject *vanished*);
* position error: distance in pixels between the two masks' centroids (large while the truth moves:
  *frozen*);
* identity: total-variation distance (0..1) of colour histograms inside the two masks' bounding boxes
  (large = *distorted*);
* background PSNR: PSNR over the pixels no subject covers.

`flatland_scores` reports them over all target frames and over the frames after a subject re-entered the view.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .errors import InputError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SEGMENT_TOLERANCE = 60.0  # RGB distance (0..255 scale) within which a pixel takes a subject colour


def _video(video, name: str) -> Tensor:
    """Validate ``[C, T, H, W]`` and convert to float64."""
    video = torch.as_tensor(video)
    if video.ndim != 4:
        raise InputError(f"{name}: expected a [C, T, H, W] video, got shape {list(video.shape)}")
    return video.to(torch.float64)


def _pair(pred, target, value_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[Tensor, Tensor]:
    """Validate two videos of the same shape and map them from `value_range` to [0, 1] (float64)."""
    pred, target = _video(pred, "prediction"), _video(target, "target")
    if pred.shape != target.shape:
        raise InputError(f"prediction shape {list(pred.shape)} does not match target shape {list(target.shape)}")
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise InputError(f"value_range: expected (low, high) with high > low, got {value_range!r}")
    return (pred - low) / (high - low), (target - low) / (high - low)


def _mask(mask, name: str) -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.ndim != 3:
        raise InputError(f"{name}: expected a [T, H, W] mask, got shape {list(mask.shape)}")
    return mask.bool()


def _psnr_from_mse(mse: Tensor, max_db: float | None) -> Tensor:
    out = 10.0 * torch.log10(1.0 / mse)  # on [0, 1] data; mse 0 → +inf, 0/0 → NaN
    return out.clamp(max=max_db) if max_db is not None else out


def psnr(pred, target, *, value_range=(-1.0, 1.0), max_db: float | None = None) -> Tensor:
    """Per-frame PSNR in dB. ``pred``, ``target``: ``[C, T, H, W]``. Returns ``[T]`` (+inf where equal,
    or `max_db` when given)."""
    pred, target = _pair(pred, target, value_range)
    mse = (pred - target).pow(2).mean(dim=(0, 2, 3))  # (T,)
    return _psnr_from_mse(mse, max_db)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """``[size]`` normalised 1-D Gaussian taps (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def ssim(
    pred,
    target,
    *,
    value_range=(-1.0, 1.0),
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-frame SSIM (see the module docstring). ``[C, T, H, W]`` each → ``[T]``, 1.0 where identical."""
    pred, target = _pair(pred, target, value_range)
    C, T, H, W = pred.shape
    if H < window or W < window:
        raise InputError(f"ssim: frames of {H}x{W} are smaller than the {window}x{window} window")
    x = rearrange(pred, "c t h w -> (t c) 1 h w")
    y = rearrange(target, "c t h w -> (t c) 1 h w")
    g = gaussian_window(window, sigma)

    def blur(img: Tensor) -> Tensor:  # separable Gaussian, valid positions only
        img = F.conv2d(img, g.view(1, 1, window, 1))
        return F.conv2d(img, g.view(1, 1, 1, window))  # (T*C, 1, H - window + 1, W - window + 1)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = k1**2, k2**2  # data range 1
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_channel = rearrange(ssim_map.mean(dim=(1, 2, 3)), "(t c) -> t c", t=T)
    return per_channel.mean(dim=1)


def masked_psnr(pred, target, region, *, value_range=(-1.0, 1.0), max_db: float | None = None) -> Tensor:
    """PSNR over the pixels where ``region`` ``[T, H, W]`` is True (all channels). ``[T]``, NaN if empty."""
    pred, target = _pair(pred, target, value_range)
    region = _mask(region, "region").to(torch.float64)
    if region.shape != pred.shape[1:]:
        raise InputError(f"region shape {list(region.shape)} does not match video frames {list(pred.shape[1:])}")
    count = region.sum(dim=(1, 2)) * pred.shape[0]
    mse = ((pred - target).pow(2) * region).sum(dim=(0, 2, 3)) / count
    return _psnr_from_mse(mse, max_db)


def background_psnr(
    pred, target, true_subjects, pred_subjects=None, *, value_range=(-1.0, 1.0), max_db: float | None = None
) -> Tensor:
    """PSNR on the pixels no subject covers: outside ``true_subjects`` ``[T, H, W]`` bool and, when given,
    also outside ``pred_subjects`` (the subjects found in the prediction). ``[T]``, NaN where no pixel is
    left."""
    region = ~_mask(true_subjects, "true_subjects")
    if pred_subjects is not None:
        region &= ~_mask(pred_subjects, "pred_subjects")
    return masked_psnr(pred, target, region, value_range=value_range, max_db=max_db)


# ----------------------------------------------------------------------------------------------
# Subjects


def segment_subjects(
    video, subject_colours, background_colours=None, *, tolerance: float = SEGMENT_TOLERANCE
) -> Tensor:
    """Label each pixel with the subject whose colour it shows.

    ``video``: ``[3, T, H, W]`` in [-1, 1]. ``subject_colours``: ``[S, K, 3]`` RGB in 0..255 (K colours per
    subject, Flatland: primary and secondary). ``background_colours``: optional ``[B, 3]`` RGB of the
    scenery. A pixel belongs to subject s when its nearest subject colour (RGB distance) is one of s's,
    closer than ``tolerance`` and, when background colours are given, closer than every background colour.
    Returns ``[T, H, W]`` int64: 0 background, s + 1 for subject s.
    """
    video = _video(video, "video")
    colours = torch.as_tensor(subject_colours, dtype=torch.float64)
    if colours.ndim != 3 or colours.shape[-1] != 3 or video.shape[0] != 3:
        raise InputError(
            f"segment_subjects: expected an RGB video and [S, K, 3] colours, got video "
            f"{list(video.shape)}, colours {list(colours.shape)}"
        )
    rgb = rearrange((video + 1.0) * 127.5, "c t h w -> t h w c")  # (T, H, W, 3) in 0..255
    S, K = colours.shape[:2]
    distance = torch.cdist(rgb.reshape(-1, 3), colours.reshape(S * K, 3))  # (T*H*W, S*K)
    nearest, which = distance.min(dim=1)
    keep = nearest < tolerance
    if background_colours is not None:
        background = torch.as_tensor(background_colours, dtype=torch.float64).reshape(-1, 3)
        keep &= nearest < torch.cdist(rgb.reshape(-1, 3), background).min(dim=1).values
    labels = torch.where(keep, which // K + 1, torch.zeros_like(which))
    return labels.reshape(rgb.shape[:3])


def mask_iou(pred_mask, true_mask) -> Tensor:
    """Per-frame IoU of two ``[T, H, W]`` masks → ``[T]``; NaN where both are empty."""
    pred_mask, true_mask = _mask(pred_mask, "pred_mask"), _mask(true_mask, "true_mask")
    inter = (pred_mask & true_mask).sum(dim=(1, 2)).to(torch.float64)
    union = (pred_mask | true_mask).sum(dim=(1, 2)).to(torch.float64)
    return inter / union  # 0/0 = NaN


def centroids(mask) -> Tensor:
    """``[T, H, W]`` mask → ``[T, 2]`` (x, y) mean of its pixel centres (x + 0.5, y + 0.5), NaN if empty."""
    mask = _mask(mask, "mask").to(torch.float64)
    T, H, W = mask.shape
    count = mask.sum(dim=(1, 2))
    x = (mask.sum(dim=1) * (torch.arange(W, dtype=torch.float64) + 0.5)).sum(dim=1) / count
    y = (mask.sum(dim=2) * (torch.arange(H, dtype=torch.float64) + 0.5)).sum(dim=1) / count
    return torch.stack([x, y], dim=1)


def position_error(pred_mask, true_mask) -> Tensor:
    """Distance in pixels between the centroids of two ``[T, H, W]`` masks → ``[T]``, NaN if one is empty."""
    return (centroids(pred_mask) - centroids(true_mask)).norm(dim=1)


def box_region(mask) -> Tensor:
    """``[T, H, W]`` mask → the filled bounding box of its pixels in each frame (empty for an empty mask)."""
    mask = _mask(mask, "mask")
    rows, cols = mask.any(dim=2), mask.any(dim=1)  # (T, H), (T, W)

    def span(hit: Tensor) -> Tensor:  # (T, N) → (T, N) True from the first to the last hit
        forward = hit.cumsum(dim=1) > 0
        backward = hit.flip(1).cumsum(dim=1).flip(1) > 0
        return forward & backward

    return span(rows)[:, :, None] & span(cols)[:, None, :]


def colour_histogram(video, region, *, bins: int = 4) -> Tensor:
    """Normalised joint RGB histograms (``bins`` per channel) of the pixels in ``region`` ``[T, H, W]``.

    ``video`` ``[3, T, H, W]`` in [-1, 1]. Returns ``[T, bins**3]``; rows of empty regions are NaN.
    """
    video = _video(video, "video")
    region = _mask(region, "region")
    level = ((video + 1.0) / 2.0 * bins).floor().clamp(0, bins - 1).long()  # (3, T, H, W)
    code = (level[0] * bins + level[1]) * bins + level[2]  # (T, H, W)
    counts = torch.zeros(code.shape[0], bins**3, dtype=torch.float64)
    counts.scatter_add_(1, code.flatten(1), region.flatten(1).to(torch.float64))  # (T, bins**3)
    return counts / counts.sum(dim=1, keepdim=True)


def identity_distance(pred, target, pred_mask, true_mask, *, bins: int = 4) -> Tensor:
    """Total-variation distance (0..1) between the colour histograms inside the bounding boxes of the
    predicted and the true subject mask → ``[T]``; NaN where either mask is empty."""
    _pair(pred, target)  # shape check
    h_pred = colour_histogram(pred, box_region(pred_mask), bins=bins)
    h_true = colour_histogram(target, box_region(true_mask), bins=bins)
    return 0.5 * (h_pred - h_true).abs().sum(dim=1)


# ----------------------------------------------------------------------------------------------
# Flatland summary


def nan_mean(values, where=None) -> float:
    """Mean (float64) of the values that are not NaN, over the entries where `where` is True if given; NaN when
    nothing is left. `values` and `where`: tensors, arrays or lists. Every summary in the package averages so."""
    values = torch.as_tensor(values, dtype=torch.float64)
    if where is not None:
        values = values[torch.as_tensor(where, dtype=torch.bool)]
    values = values[~torch.isnan(values)]
    return float(values.mean()) if values.numel() else math.nan


def flatland_scores(
    pred,
    target,
    true_labels,
    subject_colours,
    *,
    background_colours=None,
    reentry=None,
    revisit=None,
    stale_labels=None,
    tolerance: float = SEGMENT_TOLERANCE,
    max_db: float | None = 100.0,
) -> dict:
    """All metrics for one target clip, per frame and summarised.

    ``pred``, ``target``: ``[3, T, H, W]`` in [-1, 1]. ``true_labels``: ``[T, H, W]`` int, 0 background and
    s + 1 where subject s is visible. ``subject_colours``: ``[S, K, 3]`` RGB 0..255 (only the real subjects).
    ``background_colours``: optional ``[B, 3]`` RGB for the segmentation. ``reentry``: optional ``[T, S]``
    bool, the frames after subject s re-entered the view (`flatland.reentry_mask`). ``revisit``: optional
    ``[T, W]`` (view columns) or ``[T, H, W]`` bool, the background seen in the context beyond the local
    window's reach (`flatland.views.revisited_beyond_window`); adds ``background_psnr_revisit`` ``[T]``.
    ``stale_labels``: optional ``[T, H, W]`` int labels of an earlier frame per target frame showing the same view
    (the aligned context view: the closest camera, as view snapping chooses it); adds, where both the truth and that
    view show subject s, ``stale_presence`` (IoU of the drawn subject with where the view showed it) and
    ``stale_presence_truth`` (IoU with the truth on the same frames) ``[T, S]``: a model that copies a subject
    from memory without moving it scores the first higher, one that carries it along the second
    (`STALE_METRICS`).

    Returns ``{"frames": {...}, "overall": {...}, "reentry": {...}}``. ``frames`` holds ``psnr``, ``ssim``,
    ``background_psnr`` ``[T]`` and ``presence`` (IoU), ``position_error`` (px), ``identity`` (0..1),
    ``missing`` (truth visible but nothing segmented) ``[T, S]``, all NaN where undefined (subject metrics
    are defined only where the truth shows the subject). ``overall`` averages every defined entry;
    ``reentry`` only frames (for per-frame metrics: frames with any subject) in the re-entry mask.
    Per-frame PSNRs are capped at `max_db` (default 100 dB) so that one exactly reproduced frame does not
    make a mean infinite; pass None for uncapped values.
    """
    pred, target = _video(pred, "prediction"), _video(target, "target")
    true_labels = torch.as_tensor(true_labels).long()
    colours = torch.as_tensor(subject_colours)
    S = colours.shape[0]
    found = segment_subjects(pred, colours, background_colours, tolerance=tolerance)  # (T, H, W)
    frames = {
        "psnr": psnr(pred, target, max_db=max_db),
        "ssim": ssim(pred, target),
        "background_psnr": background_psnr(pred, target, true_labels > 0, max_db=max_db),
    }
    if revisit is not None:
        revisit = torch.as_tensor(revisit).bool()
        if revisit.dim() == 2:  # view columns -> every row
            revisit = revisit[:, None, :].expand(-1, pred.shape[2], -1)
        if revisit.shape != pred.shape[1:]:
            raise InputError(f"revisit: expected shape {list(pred.shape[1:])}, got {list(revisit.shape)}")
        frames["background_psnr_revisit"] = masked_psnr(pred, target, revisit & (true_labels == 0), max_db=max_db)
    per_subject = {"presence": [], "position_error": [], "identity": [], "missing": []}
    if stale_labels is not None:
        stale_labels = torch.as_tensor(stale_labels).long()
        if stale_labels.shape != true_labels.shape:
            raise InputError(f"stale_labels: expected shape {list(true_labels.shape)}, got {list(stale_labels.shape)}")
        per_subject.update({name: [] for name in STALE_METRICS})
    for s in range(S):
        truth, guess = true_labels == s + 1, found == s + 1
        shown = truth.any(dim=(1, 2))
        nan = torch.full(shown.shape, math.nan, dtype=torch.float64)
        presence = torch.where(shown, mask_iou(guess, truth), nan)
        per_subject["presence"].append(presence)
        per_subject["position_error"].append(position_error(guess, truth))
        per_subject["identity"].append(identity_distance(pred, target, guess, truth))
        per_subject["missing"].append(torch.where(shown, (~guess.any(dim=(1, 2))).to(torch.float64), nan))
        if stale_labels is not None:
            stale = stale_labels == s + 1
            both = shown & stale.any(dim=(1, 2))
            per_subject["stale_presence"].append(torch.where(both, mask_iou(guess, stale), nan))
            per_subject["stale_presence_truth"].append(torch.where(both, presence, nan))
    for name, columns in per_subject.items():
        frames[name] = torch.stack(columns, dim=1)  # (T, S)
    overall = {name: nan_mean(values) for name, values in frames.items()}
    summary = {"frames": frames, "overall": overall}
    if reentry is not None:
        reentry = torch.as_tensor(reentry).bool()
        if reentry.shape != (pred.shape[1], S):
            raise InputError(f"reentry: expected shape {[pred.shape[1], S]}, got {list(reentry.shape)}")
        any_frame = reentry.any(dim=1)
        summary["reentry"] = {
            name: nan_mean(values, any_frame if values.ndim == 1 else reentry) for name, values in frames.items()
        }
    return summary


FLATLAND_METRICS = ("psnr", "ssim", "background_psnr", "presence", "missing", "position_error", "identity")
"""The `flatland_scores` metrics reported overall and after re-entry (``NAME_reentry``)."""
STALE_METRICS = ("stale_presence", "stale_presence_truth")
"""`flatland_scores` metrics with ``stale_labels``: drawn subjects against where the aligned view showed them."""


def flatland_summary(scores: dict) -> dict[str, float]:
    """`flatland_scores` output -> flat {metric: mean}: each of `FLATLAND_METRICS` (and `STALE_METRICS` when
    computed) overall and as
    ``NAME_reentry`` (when re-entry frames were given), plus ``background_psnr_revisit`` when computed."""
    out = {}
    for key in FLATLAND_METRICS + STALE_METRICS:
        if key not in scores["overall"]:  # the stale metrics only with stale_labels
            continue
        out[key] = scores["overall"][key]
        if "reentry" in scores:
            out[f"{key}_reentry"] = scores["reentry"][key]
    if "background_psnr_revisit" in scores["overall"]:
        out["background_psnr_revisit"] = scores["overall"]["background_psnr_revisit"]
    return out
