"""Evaluation: the paper's metrics (PSNR, SSIM, LPIPS, DSC, VBench consistency), Flatland's exact subject
metrics, and the `hydra-wm eval` runner. Learned metrics load their weights from local paths only; a metric
whose weights are not given is reported as skipped, never estimated."""

from .dsc import dsc_scores, roi_align, roi_features
from .features import ClipVision, DinoModel, load_clip, load_dino
from .lpips import LPIPS, load_lpips, lpips_frames
from .runner import EvalOptions, evaluate, format_table, write_report
from .tracker import track_subject
from .vbench import background_consistency, consistency, subject_consistency

__all__ = [
    "LPIPS",
    "ClipVision",
    "DinoModel",
    "EvalOptions",
    "background_consistency",
    "consistency",
    "dsc_scores",
    "evaluate",
    "format_table",
    "load_clip",
    "load_dino",
    "load_lpips",
    "lpips_frames",
    "roi_align",
    "roi_features",
    "subject_consistency",
    "track_subject",
    "write_report",
]
