"""`hydra-wm eval`: score predictions against an HM-World-layout dataset, per sample and on average.

Steps per sample (`evaluate_sample`): 1. read the ground truth and the prediction (`samples`); 2. PSNR and
SSIM on the compared target frames, and on the frames after a subject re-entered the view; 3. on Flatland
(``truth.json``), the exact subject metrics of `metrics.flatland_scores`; 4. LPIPS; 5. DSC; 6. VBench
consistency. A metric whose model was not given is reported as ``"skipped: <reason>"``, never estimated.

Conventions: per-frame PSNR is capped at `MAX_DB` = 100 dB before averaging, so identical frames score 100
(not +inf) and one exact frame cannot make a mean infinite. "After re-entry" frames are the target frames in
which some subject is visible again after having left the view (`flatland.reentry_mask`; on Flatland per
subject from the exact truth, elsewhere from the red mask videos). Means skip undefined values (NaN, written
as null/empty), e.g. re-entry metrics of a clip without a re-entry.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..data.cameras import closest_context_frames_of
from ..errors import InputError
from ..flatland.views import revisited_beyond_window
from ..io_utils import atomic_path, write_text_atomic
from ..metrics import flatland_scores, flatland_summary, nan_mean, psnr, segment_subjects, ssim
from .dsc import dsc_scores
from .features import ClipVision, DinoModel, load_clip, load_dino
from .lpips import LPIPS, load_lpips, lpips_frames
from .samples import GroundTruth, list_samples, load_ground_truth, prediction_path, read_prediction
from .vbench import background_consistency, subject_consistency

MAX_DB = 100.0
CHUNK = 8  # frames per PSNR/SSIM call, to bound memory on 480x832 clips
# Metric → (flatland-only, has an after-re-entry variant, table label).
METRICS = {
    "psnr": (False, True, "PSNR (dB, frames capped at 100)"),
    "ssim": (False, True, "SSIM"),
    "lpips": (False, True, "LPIPS"),
    "background_psnr": (True, True, "background PSNR (dB)"),
    "background_psnr_revisit": (True, False, "background PSNR, revisited (dB)"),
    "presence": (True, True, "subject presence (mask IoU)"),
    "missing": (True, True, "subject missing (rate)"),
    "position_error": (True, True, "position error (px)"),
    "identity": (True, True, "identity distance (0..1)"),
    # Where both the truth and the aligned context view show a subject (`metrics.STALE_METRICS`): the drawn subject
    # against where that view showed it, and against the truth on the same frames. Copying from memory without
    # moving the subject scores the first higher; carrying it along, the second.
    "stale_presence": (True, True, "presence at the view's old place"),
    "stale_presence_truth": (True, True, "… at the true place, same frames"),
    "dsc_ctx": (False, False, "DSC_ctx"),
    "dsc_gt": (False, False, "DSC_GT"),
    "subject_consistency": (False, False, "subject consistency (DINO)"),
    "background_consistency": (False, False, "background consistency (CLIP)"),
}


def metric_columns(flatland: bool) -> list[str]:
    columns = []
    for name, (flat_only, reentry, _) in METRICS.items():
        if flat_only and not flatland:
            continue
        columns += [name, f"{name}_reentry"] if reentry else [name]
    return columns


@dataclass
class EvalOptions:
    """What to compute. Paths are local; a model left out skips its metrics."""

    lpips_weights: list[str] = field(default_factory=list)
    """One file (backbone + LPIPS heads) or two (backbone, heads); see `evaluation.lpips`."""
    clip: str | None = None
    """CLIP ViT-B/16 folder for DSC (and background consistency unless `background_clip` is given)."""
    dino: str | None = None
    """DINO folder (ViTModel / Dinov2Model) for VBench subject consistency."""
    background_clip: str | None = None
    """CLIP folder for VBench background consistency (VBench uses ViT-B/32); default: `clip`."""
    frames: int | None = None
    """Compare only the first N target frames (default: all)."""
    context_frames: int | None = None
    """Leading condition frames in each prediction video (default: decided by the frame count)."""
    window: int = 5
    """Local attention window in frames for `background_psnr_revisit` (Flatland): background seen in the context
    but not in any context frame of the frame's window (HyDRA's 5; one latent frame per video frame)."""
    device: str = "cpu"
    resize: bool = False
    """Compare a prediction of another frame size than the ground truth's with the ground truth resized to it
    (`video.cover_and_crop`); without it such a prediction is an error."""


@dataclass
class Models:
    lpips: LPIPS | None
    clip: ClipVision | None
    dino: DinoModel | None
    background_clip: ClipVision | None
    skipped: dict[str, str]
    notes: list[str] = field(default_factory=list)


def load_models(options: EvalOptions) -> Models:
    """Load every model the options name; record why each metric without a model is skipped."""
    skipped = {}
    lpips_model = load_lpips(options.lpips_weights).to(options.device) if options.lpips_weights else None
    if lpips_model is None:
        skipped["lpips"] = skipped["lpips_reentry"] = "skipped: no --lpips-weights given"
    clip = load_clip(options.clip, options.device) if options.clip else None
    if clip is None:
        skipped["dsc_ctx"] = skipped["dsc_gt"] = "skipped: no --clip model given"
    dino = load_dino(options.dino, options.device) if options.dino else None
    if dino is None:
        skipped["subject_consistency"] = "skipped: no --dino model given"
    if options.background_clip and options.background_clip != options.clip:
        background = load_clip(options.background_clip, options.device)
    else:
        background = clip
    notes = []
    if background is None:
        skipped["background_consistency"] = "skipped: no --clip (or --background-clip) model given"
    elif not background.has_projection:
        notes.append(
            f"background consistency: {background.path} has no visual_projection; CLIP's pooled "
            "output is used instead of the projected image embedding"
        )
    return Models(lpips_model, clip, dino, background, skipped, notes)


def _chunked(fn, pred: Tensor, target: Tensor) -> Tensor:
    return torch.cat([fn(pred[:, i : i + CHUNK], target[:, i : i + CHUNK]) for i in range(0, pred.shape[1], CHUNK)])


def evaluate_sample(gt_root: Path, pred_root: Path, name: str, models: Models, options: EvalOptions) -> dict:
    """All metrics of one sample → ``{"name", "metrics", "frames", "events", "notes"}``."""
    # 1. ground truth and prediction
    gt = load_ground_truth(gt_root, name)
    Tc, Tt = gt.context.shape[1], gt.target.shape[1]
    N = Tt if options.frames is None else options.frames
    if N > Tt:
        raise InputError(f"--frames {N}: {gt.folder / 'tgt.mp4'} holds only {Tt} target frames")
    pred_path = prediction_path(pred_root, name)
    pred = read_prediction(pred_path, Tc, Tt, skip=options.context_frames, frames=N)
    notes = []
    if tuple(pred.shape[2:]) != tuple(gt.target.shape[2:]):
        if not options.resize:
            raise InputError(
                f"{pred_path}: frames of {pred.shape[2]}x{pred.shape[3]}, but {gt.folder / 'tgt.mp4'} has "
                f"{gt.target.shape[2]}x{gt.target.shape[3]}; pass --resize to compare with the ground truth resized"
            )
        notes.append(
            f"ground truth resized from {list(gt.target.shape[2:])} to the prediction's "
            f"{list(pred.shape[2:])}; no exact Flatland metrics"
        )
        gt = load_ground_truth(gt_root, name, size=tuple(pred.shape[2:]))
    try:
        metrics, frames = _sample_metrics(gt, pred, N, models, options, notes)
    except InputError as exc:  # e.g. frames too small for SSIM's window: name the prediction it is about
        raise InputError(f"{pred_path}: {exc}") from None
    events = [e for e in gt.events() if 0 <= e["entry"] < N or 0 <= e["exit"] < N]
    return {"name": name, "metrics": metrics, "frames": frames, "events": events, "notes": notes}


def _aligned_view_labels(gt: GroundTruth) -> np.ndarray | None:
    """Flatland subject labels ``[Tt, H, W]`` of each target frame's aligned context view -- the closest camera,
    as the closest-camera baseline and view snapping choose it -- for `metrics.STALE_METRICS`; None without the
    context masks or camera.json."""
    if gt.context_masks is None or not (gt.folder / "camera.json").is_file():
        return None
    truth = gt.truth
    index = closest_context_frames_of(gt.folder / "camera.json", gt.context.shape[1], len(truth["labels"]))
    # Each context frame once (a long target aligns many frames with the same few views), then picked per target frame.
    labels = segment_subjects(gt.context, truth["subject_colours"], truth["background_colours"]) * gt.context_masks
    return labels[index].numpy()


def _sample_metrics(
    gt: GroundTruth, pred: Tensor, N: int, models: Models, options: EvalOptions, notes: list[str]
) -> tuple[dict[str, float], dict[str, list]]:
    """Steps 2-6 of `evaluate_sample`: (metrics, per-frame curves) of `pred` against `gt`'s first N frames."""
    target = gt.target[:, :N]
    reentry = gt.reentry[:N] if gt.reentry is not None else None
    reentry_frames = reentry.any(axis=1) if reentry is not None else None
    metrics: dict[str, float] = {}
    frames: dict[str, list] = {}

    # 2. PSNR, SSIM (3. with the Flatland metrics when the exact truth is there)
    if gt.truth is not None:
        truth = gt.truth
        revisit = revisited_beyond_window(
            truth["yaw_deg"],
            len(truth["yaw_deg"]) - len(truth["labels"]),
            target.shape[-1],
            truth["fov_deg"],
            options.window,
        )[:N]
        stale = _aligned_view_labels(gt)
        scores = flatland_scores(
            pred,
            target,
            truth["labels"][:N],
            truth["subject_colours"],
            background_colours=truth["background_colours"],
            reentry=reentry,
            revisit=revisit,
            stale_labels=None if stale is None else stale[:N],
            max_db=MAX_DB,
        )
        metrics.update(flatland_summary(scores))
        per_frame = scores["frames"]
        frames["presence"] = per_frame["presence"].nanmean(dim=1).tolist()
    else:
        per_frame = {
            "psnr": _chunked(lambda a, b: psnr(a, b, max_db=MAX_DB), pred, target),
            "ssim": _chunked(ssim, pred, target),
        }
        for key in ("psnr", "ssim"):
            metrics[key] = nan_mean(per_frame[key])
            metrics[f"{key}_reentry"] = nan_mean(per_frame[key], reentry_frames) if reentry is not None else math.nan
        if reentry is None:
            notes.append("no mask videos: re-entry frames unknown")
    frames["psnr"] = per_frame["psnr"].tolist()
    frames["ssim"] = per_frame["ssim"].tolist()

    # 4. LPIPS
    if models.lpips is not None:
        values = lpips_frames(models.lpips, pred.to(options.device), target.to(options.device)).cpu()
        metrics["lpips"] = nan_mean(values)
        metrics["lpips_reentry"] = nan_mean(values, reentry_frames) if reentry is not None else math.nan
        frames["lpips"] = values.tolist()

    # 5. DSC: real boxes from the red masks, generated boxes from the tracker
    if models.clip is not None:
        context_boxes, target_boxes = gt.boxes("cond"), gt.boxes("tgt")
        if context_boxes is None or target_boxes is None:
            metrics["dsc_ctx"] = metrics["dsc_gt"] = math.nan
            notes.append("DSC: no cond_mask.mp4/tgt_mask.mp4")
        else:
            dsc = dsc_scores(models.clip, gt.context, context_boxes, pred, target, target_boxes[:N])
            metrics["dsc_ctx"], metrics["dsc_gt"] = dsc["dsc_ctx"], dsc["dsc_gt"]
            if dsc["reason"]:
                notes.append(f"DSC: {dsc['reason']}")

    # 6. VBench consistency of the generated frames
    if models.dino is not None:
        metrics["subject_consistency"] = subject_consistency(models.dino, pred)
    if models.background_clip is not None:
        metrics["background_consistency"] = background_consistency(models.background_clip, pred)

    return metrics, frames


def evaluate(pred_root, gt_root, options: EvalOptions, *, progress: bool = True) -> dict:
    """Score every ground-truth sample; returns the report (see `write_report`)."""
    pred_root, gt_root = Path(pred_root), Path(gt_root)
    names = list_samples(gt_root)
    for name in names:  # fail before any work when a prediction is missing
        prediction_path(pred_root, name)
    if options.frames is not None and options.frames < 1:
        raise InputError(f"--frames: expected at least 1, got {options.frames}")
    if options.window < 1:
        raise InputError(f"--window: expected at least 1 frame, got {options.window}")
    models = load_models(options)
    flatland = all((gt_root / n / "truth.json").is_file() for n in names)
    samples = [
        evaluate_sample(gt_root, pred_root, name, models, options)
        for name in tqdm(names, desc="eval", unit="sample", disable=not progress)
    ]
    columns = metric_columns(flatland)
    skipped = {k: v for k, v in models.skipped.items() if k in columns}
    for column in columns:  # e.g. Flatland metrics when every prediction had another frame size than the truth
        if column not in skipped and all(column not in s["metrics"] for s in samples):
            notes = sorted({note for s in samples for note in s["notes"]})
            skipped[column] = "skipped: not computed for any sample" + (f" ({notes[0]})" if notes else "")
    mean = {}
    for column in columns:
        if column in skipped:
            mean[column] = skipped[column]
        else:
            mean[column] = nan_mean([s["metrics"].get(column, math.nan) for s in samples])
    return {
        "pred": str(pred_root),
        "gt": str(gt_root),
        "flatland": flatland,
        "samples": len(samples),
        "settings": {
            "psnr_cap_db": MAX_DB,
            "frames": options.frames,
            "context_frames": options.context_frames,
            "window": options.window,
            "lpips_weights": options.lpips_weights,
            "clip": options.clip,
            "dino": options.dino,
            "background_clip": options.background_clip or options.clip,
        },
        "columns": columns,
        "skipped": skipped,
        "notes": models.notes,
        "mean": mean,
        "per_sample": samples,
    }


# ----------------------------------------------------------------------------------------------
# Output


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def report_csv(report: dict) -> str:
    """One row per sample and a final ``mean`` row; skipped metrics carry their reason."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = report["columns"]
    writer.writerow(["sample", *columns])
    for sample in report["per_sample"]:
        cells = (report["skipped"].get(c) or _cell(sample["metrics"].get(c)) for c in columns)
        writer.writerow([sample["name"], *cells])
    writer.writerow(["mean", *(_cell(report["mean"][c]) for c in columns)])
    return buffer.getvalue()


def _fixed(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def format_table(report: dict, *, per_sample: bool = False) -> str:
    """The terminal table: each metric's mean over all compared target frames and over re-entry frames."""
    kind = "Flatland" if report["flatland"] else "HM-World layout"
    lines = [f"{report['samples']} samples · prediction {report['pred']} · ground truth {report['gt']} ({kind})"]
    columns = report["columns"]
    if per_sample:
        heads = [
            c
            for c in ("psnr", "ssim", "psnr_reentry", "presence_reentry", "lpips", "dsc_gt")
            if c in columns and c not in report["skipped"]
        ]
        width = max(len(s["name"]) for s in report["per_sample"])
        lines.append(f"{'sample':<{width}}  " + "  ".join(f"{h:>16}" for h in heads))
        for sample in report["per_sample"]:
            cells = "  ".join(f"{_fixed(sample['metrics'].get(h)):>16}" for h in heads)
            lines.append(f"{sample['name']:<{width}}  {cells}")
        lines.append("")
    lines.append(f"{'metric':<34}{'all target frames':>20}{'after re-entry':>20}")
    for name, (_, has_reentry, label) in METRICS.items():
        if name not in columns:
            continue
        if name in report["skipped"]:
            lines.append(f"{label:<34}  {report['skipped'][name]}")
            continue
        overall = _fixed(report["mean"][name])
        after = _fixed(report["mean"][f"{name}_reentry"]) if has_reentry else "-"
        lines.append(f"{label:<34}{overall:>20}{after:>20}")
    lines += [f"note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def plot_report(report: dict, path: Path) -> None:
    """Per-frame PSNR (and Flatland subject presence) of every sample, their mean, and exit (v) / entry (^)
    frames on each sample's curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [("psnr", "PSNR (dB)")] + ([("presence", "presence (IoU)")] if report["flatland"] else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (key, label) in zip(axes[:, 0], panels, strict=True):
        curves = [np.asarray(s["frames"][key], dtype=float) for s in report["per_sample"] if key in s["frames"]]
        for sample, curve in zip(report["per_sample"], curves, strict=False):
            ax.plot(curve, color="tab:blue", alpha=0.25, linewidth=0.8)
            for event in sample["events"]:
                for frame, marker, colour in ((event["exit"], "v", "tab:red"), (event["entry"], "^", "tab:green")):
                    if 0 <= frame < len(curve) and np.isfinite(curve[frame]):
                        ax.plot(frame, curve[frame], marker, color=colour, markersize=4)
        if curves and len({len(c) for c in curves}) == 1:
            with np.errstate(all="ignore"):
                stacked = np.stack(curves)
                counts = np.isfinite(stacked).sum(axis=0)
                mean = np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)
            ax.plot(mean, color="black", linewidth=2.0, label="mean")
        ax.plot([], [], "v", color="tab:red", label="exit")
        ax.plot([], [], "^", color="tab:green", label="entry")
        ax.set_ylabel(label)
        ax.legend(loc="lower left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("target frame")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{report['pred']} vs {report['gt']}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_report(report: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.csv`` and ``per_frame.png`` into `out_dir` (atomically)."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "metrics.json", "csv": out_dir / "metrics.csv", "plot": out_dir / "per_frame.png"}
    write_text_atomic(paths["json"], json.dumps(_json_safe(report), indent=1) + "\n")
    write_text_atomic(paths["csv"], report_csv(report))
    plot_report(report, paths["plot"])
    return paths
