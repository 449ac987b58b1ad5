"""`hydra-wm generate`: continue condition videos along new camera paths with Wan2.1 + HyDRA.

Inputs, as the reference's `infer_hydra.py`: a folder in the example layout (every `N.mp4` with `camN.json`
and line N of `caption.txt`; HM-World sample folders work too, with `cond.mp4` as the condition), or one clip
given by `--video --cameras --prompt`. Checkpoints: `--ckpt-dir` with the Wan2.1-T2V-1.3B files and
`--hydra-ckpt` (without it: the base DiT with HyDRA's modules initialised, i.e. untrained memory).
Output: `OUT/<name>.mp4`, the condition frames followed by the generated frames. A shorter `--context-frames` /
`--target-frames` than the camera file covers uses the first frames of the video and of each camera stream.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
from collections.abc import Iterator
from pathlib import Path

import torch

from ..config import ATTENTION_MODES, RETRIEVAL_MODES
from ..errors import InputError, SomeFailed
from ..io_utils import atomic_path, check_output_dir
from ..offload import OFFLOAD_MODES
from ..pipeline import LATENT_STRIDE, GenerationConfig, HydraPipeline, ModelFiles, Sample, save_retrieval
from .options import add_config_options, config_from_args

DTYPES = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SHORT_OPTIONS = {"num_steps": "--steps", "guidance_scale": "--cfg"}
"""Second, shorter names of two `GenerationConfig` options (the names the README and earlier releases use)."""
PIPELINE_OPTIONS = ("device", "offload", "attention", "top_k", "retrieval")
"""`HydraPipeline` arguments that are options here; an option not given keeps the pipeline's default."""
FPS = 15.0
"""Frame rate of the written videos (the reference's)."""


def _fit_cameras(cams: torch.Tensor, rows: int, frames: int, label: str, source: str, notes: list[str]):
    """The first `rows` camera vectors; a camera file for a longer clip is cut to the requested length."""
    if cams.shape[0] < rows:
        raise InputError(
            f"{source}: {label} cameras cover {cams.shape[0]} latent frames "
            f"({LATENT_STRIDE * (cams.shape[0] - 1) + 1} frames); --{label}-frames {frames} needs {rows}"
        )
    if cams.shape[0] > rows:
        notes.append(f"{source}: using the first {rows} of {cams.shape[0]} {label} camera vectors")
    return cams[:rows]


MAX_UPSCALE = 8
"""A condition video must be at least 1/8 of the generated size on each side (before the cover-and-crop resize):
below that, one of its pixels would cover more than a VAE latent cell (8x8 pixels)."""


def check_condition_video(path: str | Path, config) -> None:
    """One line unless the video at `path` has at least `context_frames` frames and is not tiny (`MAX_UPSCALE`);
    read from its header and packets, nothing decoded."""
    from ..data.video import video_info

    frames, height, width = video_info(path)
    if frames < config.context_frames:
        raise InputError(f"{path}: holds {frames} frames; --context-frames {config.context_frames} needs that many")
    scale = max(config.height / height, config.width / width)
    if scale > MAX_UPSCALE:
        raise InputError(
            f"{path}: frames of {height}x{width} are too small for {config.height}x{config.width} output "
            f"(at most {MAX_UPSCALE}x upscaling; --height/--width set the output size)"
        )


def sample_chunks(args: argparse.Namespace, config, skipped: dict[str, str]) -> Iterator[list]:
    """The requested samples in chunks of `--chunk`, each read (videos decoded) only when its turn comes.

    Every sample's caption, cameras and condition video (frame count, size) are checked before the first chunk, so
    a bad file fails fast. Incomplete samples of a folder (missing files, no caption) are left out and recorded
    in `skipped` ({name: what is missing}), unless named by --samples (then an error).
    """
    from ..data.cameras import load_relative_cameras
    from ..data.video import read_video

    def fit(name, source, cam_context, cam_target) -> list[torch.Tensor]:
        return [
            _fit_cameras(cams, rows, frames, label, source, notes)
            for cams, rows, frames, label in (
                (cam_context, config.context_latent_frames, config.context_frames, "context"),
                (cam_target, config.target_latent_frames, config.target_frames, "target"),
            )
        ]

    notes: list[str] = []
    if args.input is None:
        cams = fit(args.name, args.cameras, *load_relative_cameras(args.cameras))
        check_condition_video(args.video, config)
        condition = read_video(args.video, config.context_frames, config.height, config.width)
        print("".join(f"note: {note}\n" for note in notes), end="")
        yield [Sample(args.name or Path(args.video).stem, args.prompt, condition, *cams)]
        return
    from ..data.hmworld import HMWorldDataset

    size = {"num_frames": config.context_frames, "height": config.height, "width": config.width}
    require = ("cond.mp4", "camera.json")
    index = HMWorldDataset(args.input, load_clips=False, load_masks=False, require=require)
    known = index.names + list(index.incomplete)
    unknown = sorted(set(args.samples or []) - set(known))
    if unknown:
        raise InputError(f"{args.input}: no sample(s) {', '.join(unknown)}; found {', '.join(known)}")
    named_incomplete = [n for n in args.samples or [] if n in index.incomplete]
    if named_incomplete:
        name = named_incomplete[0]
        raise InputError(f"{args.input}/{name}: incomplete sample: missing {', '.join(index.incomplete[name])}")
    if not args.samples:
        skipped.update({name: f"missing {', '.join(missing)}" for name, missing in index.incomplete.items()})
    names = args.samples or index.names
    if not names:
        raise InputError(f"{args.input}: no complete sample ({'; '.join(index.describe_incomplete()[:3])})")
    cameras = {}
    for name in names:
        sample = index[name]
        cameras[name] = fit(name, f"{args.input}/{name}", sample.context_cameras, sample.target_cameras)
        check_condition_video(index.path_of(name, "cond.mp4"), config)
    notes += [f"{args.input}/{name}: skipped, incomplete sample: {why}" for name, why in skipped.items()]
    print("".join(f"note: {note}\n" for note in notes), end="")
    data = HMWorldDataset(args.input, load_masks=False, require=require, **size)
    for first in range(0, len(names), args.chunk):
        chunk = []
        for name in names[first : first + args.chunk]:
            chunk.append(Sample(name, index.captions[name], data[name].condition, *cameras[name]))
        yield chunk


def _check_source(args: argparse.Namespace) -> None:
    single = [args.video, args.cameras, args.prompt]
    if args.input is not None and any(v is not None for v in single):
        raise InputError("give either an example folder or --video/--cameras/--prompt, not both")
    if args.input is None and any(v is None for v in single):
        missing = [f for f, v in zip(("--video", "--cameras", "--prompt"), single, strict=True) if v is None]
        raise InputError(f"give an example folder, or --video, --cameras and --prompt (missing {', '.join(missing)})")
    if args.prompt is not None and not args.prompt.strip():
        raise InputError("--prompt: empty; describe the clip")
    check_device(args.device)


def save_latents(path: Path, result, prompt: str, config, hydra_ckpt: str | None) -> None:
    """Context and generated latents (normalised, as the DiT sees them) with the settings as metadata."""
    from safetensors.torch import save_file

    metadata = {"prompt": prompt, **{k: str(v) for k, v in vars(config).items()}, "hydra_ckpt": str(hydra_ckpt)}
    tensors = {"context": result.context_latents.contiguous(), "target": result.target_latents.contiguous()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 3 (`SomeFailed`) when incomplete samples of the folder were skipped (listed)."""
    _check_source(args)
    config = config_from_args(GenerationConfig, args)
    if not args.fps > 0:
        raise InputError(f"--fps: expected a positive number, got {args.fps}")
    if args.save_retrieval and args.attention not in (None, "memory"):
        raise InputError(f"--save-retrieval needs --attention memory (got {args.attention})")
    if args.chunk < 1:
        raise InputError(f"--chunk: expected at least 1 sample, got {args.chunk}")
    check_output_dir(args.out, "--out")
    files = ModelFiles.find(args.ckpt_dir, args.hydra_ckpt)
    skipped: dict[str, str] = {}
    chunks = sample_chunks(args, config, skipped)
    first = next(chunks)  # reads and checks every sample's cameras and video before any model is loaded
    options = {name: getattr(args, name) for name in PIPELINE_OPTIONS if getattr(args, name) is not None}
    pipeline = HydraPipeline(files, dtype=DTYPES[args.dtype], **options, log=lambda message: print(message, flush=True))
    print(
        f"generating {config.context_frames}+{config.target_frames} frames at {config.height}x{config.width}, "
        f"{config.num_steps} steps, CFG {config.guidance_scale}, seed {config.seed}, {pipeline.device} "
        f"{str(pipeline.dtype).removeprefix('torch.')}, offload {pipeline.offload}"
    )
    out = Path(args.out)
    for samples in itertools.chain([first], chunks):
        results = pipeline(samples, config, record_retrieval=args.save_retrieval, progress=not args.no_progress)
        for sample, result in zip(samples, results, strict=True):
            write_outputs(out, sample, result, config, args)
    if skipped:
        raise SomeFailed(f"{args.input}: skipped {len(skipped)} incomplete sample(s): {', '.join(sorted(skipped))}")
    return 0


def write_outputs(out: Path, sample, result, config, args: argparse.Namespace) -> None:
    from ..data.video import write_video
    from ..evaluation.plots import plot_retrieval

    video_path = out / f"{result.name}.mp4"
    write_video(video_path, result.video, fps=args.fps)
    written = [video_path]
    if args.save_latents:
        written.append(out / f"{result.name}_latents.safetensors")
        save_latents(written[-1], result, sample.prompt, config, args.hydra_ckpt)
    if args.save_retrieval and result.retrieval is not None:
        written += [out / f"{result.name}_retrieval.safetensors", out / f"{result.name}_retrieval.png"]
        save_retrieval(written[-2], result.retrieval)
        plot_retrieval(result.retrieval, written[-1], title=f"{result.name}: memory frames retrieved")
    print("wrote " + ", ".join(str(p) for p in written), flush=True)


def add_model_options(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The DiT overrides and the runtime options of `generate` and `rollout` (`PIPELINE_OPTIONS`, `--dtype`);
    returns the runtime group for the command's own."""
    pipeline_defaults = {name: p.default for name, p in inspect.signature(HydraPipeline).parameters.items()}
    model = p.add_argument_group("model (default: the checkpoint's)")
    model.add_argument("--attention", choices=ATTENTION_MODES, help="self-attention mode of the DiT")
    model.add_argument("--top-k", type=int, help="memory frames retrieved per frame")
    model.add_argument(
        "--retrieval",
        choices=RETRIEVAL_MODES,
        help="how memory frames are ranked: relevance (HyDRA) or camera (the paper's camera-FOV ablation)",
    )
    run_ = p.add_argument_group("runtime")
    run_.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    run_.add_argument("--dtype", choices=tuple(DTYPES), default="auto", help="model dtype (auto: bf16 on CUDA)")
    run_.add_argument(
        "--offload",
        choices=OFFLOAD_MODES,
        help="model: load each model only for its step; blocks: also stream DiT blocks to the GPU one at a time "
        f"(smallest GPU memory); none: keep models loaded (default: {pipeline_defaults['offload']})",
    )
    return run_


def check_device(device: str | None) -> None:
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = GenerationConfig()
    p = subparsers.add_parser(
        "generate",
        help="continue condition videos along new camera paths (Wan2.1 + HyDRA)",
        description="Generate the continuation of condition videos along their target camera paths. Defaults are "
        f"the reference's: {defaults.height}x{defaults.width}, {defaults.context_frames}+{defaults.target_frames} "
        f"frames, {defaults.num_steps} steps, CFG {defaults.guidance_scale:g}, shift {defaults.shift:g}, seed "
        f"{defaults.seed}, {FPS:g} fps.",
    )
    src = p.add_argument_group("input")
    src.add_argument("input", nargs="?", help="folder in the example layout (N.mp4, camN.json, caption.txt)")
    src.add_argument("--samples", nargs="+", metavar="NAME", help="only these samples of the folder (e.g. 1 3)")
    src.add_argument("--video", help="single clip: condition video")
    src.add_argument("--cameras", help="single clip: camera file (any format `hydra-wm cameras` reads)")
    src.add_argument("--prompt", help="single clip: caption")
    src.add_argument("--name", help="single clip: output name (default: the video's file name)")
    ckpt = p.add_argument_group("checkpoints (never downloaded)")
    ckpt.add_argument("--ckpt-dir", required=True, help="folder with the Wan2.1-T2V-1.3B files")
    ckpt.add_argument("--hydra-ckpt", help="HyDRA checkpoint hydra.ckpt (default: base DiT, untrained memory)")
    add_config_options(p.add_argument_group("generation (GenerationConfig)"), GenerationConfig, aliases=SHORT_OPTIONS)
    run_ = add_model_options(p)
    run_.add_argument(
        "--chunk",
        type=int,
        default=8,
        help="samples per pass through the models (default 8): bounds the decoded condition videos in memory",
    )
    run_.add_argument("--no-progress", action="store_true", help="no progress bar")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="outputs", help="output folder (default outputs/)")
    out.add_argument("--fps", type=float, default=FPS, help=f"frame rate of the mp4 (default {FPS:g})")
    out.add_argument("--save-latents", action="store_true", help="also write <name>_latents.safetensors")
    out.add_argument(
        "--save-retrieval",
        action="store_true",
        help="also write <name>_retrieval.safetensors (retrieved memory frames per block and step) and a heat map",
    )
    p.set_defaults(func=run)
