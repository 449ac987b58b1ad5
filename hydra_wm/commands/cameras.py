"""`hydra-wm cameras PATH`: show, save or plot the relative camera encodings of a camera file.

Users should see a trajectory before spending GPU hours on it: ``--plot`` draws both camera paths from
above. For matrix formats the view is the UE ground plane (UE is left-handed, X forward, Y right, Z up):
horizontal axis world Y, vertical axis world X, so that looking down from +Z nothing is mirrored; positions
in metres relative to the reference camera, Z (height) dropped. For already-relative vector files the plane
is the reference camera's own right (x) / forward (z) plane, which is the ground when that camera is level.
"""

from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path

import numpy as np
import torch

from ..data.cameras import RAW_UE_FRAMES, Numerics, load_camera_poses, load_relative_cameras
from ..errors import InputError
from ..io_utils import atomic_path, check_output_file, write_text_atomic

COLOURS = {"context": "#1f77b4", "target": "#d62728"}


def parse_reference(text: str) -> tuple[str, int]:
    """``"target:0"`` → ``("target", 0)``."""
    stream, _, frame = text.partition(":")
    if stream not in ("context", "target") or not frame.lstrip("-").isdigit():
        raise InputError(f"--reference: expected STREAM:FRAME with STREAM context or target, got {text!r}")
    return stream, int(frame)


def format_vectors(context: torch.Tensor, target: torch.Tensor) -> str:
    """Both streams as a compact table: one latent frame per line, ``[R | t]`` row-major."""
    lines = []
    for name, vectors in (("context", context), ("target", target)):
        lines.append(f"{name} [{vectors.shape[0]}x{vectors.shape[1]}]  (R row-major | t in m)")
        for i, v in enumerate(vectors.tolist()):
            rows = "  ".join(
                " ".join(f"{x:+.4f}" for x in v[r * 4 : r * 4 + 3]) + f" | {v[r * 4 + 3]:+8.3f}" for r in range(3)
            )
            lines.append(f"{i:3d}  {rows}")
    return "\n".join(lines)


def plot_camera_paths(
    context: np.ndarray,
    target: np.ndarray,
    out: str | Path,
    *,
    frame: str,
    origin: np.ndarray,
    title: str,
    arrow_every: int = 4,
) -> None:
    """Top view of two camera paths ``[n, 4, 4]`` (camera-to-world, columns right, down, forward, position).

    `frame` ``"world"``: UE ground plane (Y across, X up the page); ``"reference"``: camera x across, z up.
    Every frame's position is on the line; an arrow (viewing direction) every `arrow_every` frames.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    across, up = (1, 0) if frame == "world" else (0, 2)
    fig = Figure(figsize=(7, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = np.concatenate([context[:, :3, 3], target[:, :3, 3]]) - origin
    extent = max(float(np.ptp(points[:, [across, up]], axis=0).max()), 1.0)
    arrow = 0.06 * extent
    for name, poses in (("context", context), ("target", target)):
        position = poses[:, :3, 3] - origin
        forward = poses[:, :3, 2]
        # Normalise in the ground plane so a pitched camera still shows where it looks.
        planar = forward[:, [across, up]]
        planar = planar / np.maximum(np.linalg.norm(planar, axis=1, keepdims=True), 1e-9)
        x, y = position[:, across], position[:, up]
        colour = COLOURS[name]
        ax.plot(x, y, "-", color=colour, lw=1.5, label=f"{name} ({len(poses)} frames)")
        ax.plot(x[0], y[0], "o", color=colour, ms=7)
        ax.plot(x[-1], y[-1], "s", color=colour, ms=7)
        step = slice(None, None, arrow_every)
        ax.quiver(
            x[step],
            y[step],
            planar[step, 0] * arrow,
            planar[step, 1] * arrow,
            color=colour,
            angles="xy",
            scale_units="xy",
            scale=1,
            width=0.004,
            alpha=0.8,
        )
    ax.plot(0.0, 0.0, "*", color="black", ms=12, label="reference camera")
    ax.set_aspect("equal", adjustable="datalim")
    ax.margins(0.12)
    ax.grid(alpha=0.3)
    if frame == "world":
        ax.set_xlabel("UE world Y (right) [m]")
        ax.set_ylabel("UE world X (forward) [m]")
    else:
        ax.set_xlabel("reference camera x (right) [m]")
        ax.set_ylabel("reference camera z (forward) [m]")
    ax.set_title(f"{title}\nfrom above; o start, ■ end, arrows: viewing direction", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, fontsize=9, frameon=False)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    reference = parse_reference(args.reference)
    for flag, value in (("--latent-stride", args.latent_stride), ("--raw-frames", args.raw_frames)):
        if value < 1:
            raise InputError(f"{flag}: expected a positive integer, got {value}")
    for flag, value in (("--out", args.out), ("--plot", args.plot)):
        if value:
            check_output_file(value, flag)
    context, target = load_relative_cameras(
        path,
        latent_stride=args.latent_stride,
        reference=reference,
        numerics=args.numerics,
        raw_frames=args.raw_frames,
    )
    if args.out:
        record = {
            "about": f"Relative camera encodings of {path.name}: one [R|t] (3x4, row-major, t in m) per "
            f"latent frame, relative to {reference[0]} frame {reference[1]}; a camera file itself.",
            "latent_stride": args.latent_stride,
            "numerics": args.numerics,
            "context_camera": context.tolist(),
            "video_camera": target.tolist(),
        }
        write_text_atomic(args.out, json.dumps(record, indent=1, allow_nan=False) + "\n")  # finite: checked on reading
        print(f"wrote {args.out} (context {list(context.shape)}, target {list(target.shape)})")
    else:
        print(format_vectors(context, target))
    if args.plot:
        context_poses, target_poses, frame = load_camera_poses(path, raw_frames=args.raw_frames)
        stream, index = reference
        origin = (target_poses if stream == "target" else context_poses)[index, :3, 3] if frame == "world" else 0.0
        # Matrix files hold every video frame (an arrow per latent frame); vector files one per latent frame.
        plot_camera_paths(
            context_poses,
            target_poses,
            args.plot,
            frame=frame,
            origin=np.asarray(origin),
            title=path.name,
            arrow_every=args.latent_stride if frame == "world" else 1,
        )
        print(f"wrote {args.plot}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cameras",
        help="print, save or plot the relative camera encodings of a camera file",
        description="Read a camera file (cond_cam/tgt_cam, context_camera/video_camera, raw UE dump or "
        "HM-World camera.json) and print its relative 12-vectors per latent frame.",
    )
    parser.add_argument("path", help="camera JSON file")
    parser.add_argument("--out", metavar="X.json", help="write the vectors as JSON instead of printing them")
    parser.add_argument("--plot", metavar="OUT.png", help="draw both camera paths from above")
    parser.add_argument("--latent-stride", type=int, default=4, help="video frames per latent frame (default 4)")
    parser.add_argument(
        "--reference",
        default="target:0",
        metavar="STREAM:FRAME",
        help="camera that becomes the origin (default target:0, as the reference)",
    )
    parser.add_argument(
        "--numerics",
        choices=typing.get_args(Numerics),
        default="reference",
        help="float32 arithmetic of the reference (default) or exact float64",
    )
    parser.add_argument(
        "--raw-frames",
        type=int,
        default=RAW_UE_FRAMES,
        help=f"frames in a raw UE dump (default {RAW_UE_FRAMES})",
    )
    parser.set_defaults(func=run)
