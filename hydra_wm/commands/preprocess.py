"""`hydra-wm preprocess DATA OUT --ckpt-dir DIR`: encode an HM-World-layout dataset for training.

Writes OUT/samples/<name>.safetensors (VAE latents of the context and target clips, each encoded on its own;
the caption's umT5 embedding; relative cameras) and OUT/manifest.json. Re-running skips finished samples; a bad
sample (unreadable, or incomplete: missing files) is reported, skipped and listed at the end and in
OUT/failed.json, and the exit code is then 3. Under `torchrun --nproc_per_node=N` each process (GPU) takes
every N-th sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..distributed import DEVICE_PREFERENCES

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="encode a dataset (VAE latents, caption embeddings, cameras) for training",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "data", help="HM-World layout folder (sample folders with cond.mp4, tgt.mp4, camera.json; caption.txt)"
    )
    p.add_argument("out", help="output folder (re-running into it resumes)")
    p.add_argument(
        "--ckpt-dir", help="Wan2.1 folder: Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/"
    )
    p.add_argument("--vae", help="VAE file (default: CKPT_DIR/Wan2.1_VAE.pth)")
    p.add_argument("--text-encoder", help="umT5 file (default: CKPT_DIR/models_t5_umt5-xxl-enc-bf16.pth)")
    p.add_argument("--tokenizer", help="tokenizer folder (default: CKPT_DIR/google/umt5-xxl)")
    p.add_argument(
        "--vae-preset", help="VAE architecture the file must match (default: read from its tensor shapes, as generate)"
    )
    p.add_argument(
        "--text-encoder-preset",
        help="text encoder architecture the file must match (default: read from its tensor shapes, as generate)",
    )
    p.add_argument("--text-length", type=int, default=512, help="caption tokens (default 512, as Wan2.1)")
    p.add_argument("--num-frames", type=int, help="frames read from each clip (default: all; must be 1 + 4k)")
    p.add_argument("--height", type=int, help="resize-and-crop height in pixels (default: native)")
    p.add_argument("--width", type=int, help="resize-and-crop width in pixels (default: native)")
    p.add_argument("--tiled", action="store_true", help="tiled VAE encoding (large frames, less memory)")
    p.add_argument("--latent-dtype", choices=sorted(DTYPES), default="float32", help="storage dtype of latents")
    p.add_argument("--device", choices=DEVICE_PREFERENCES, default="auto", help="auto: cuda:LOCAL_RANK if present")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """The options, before anything is loaded: frame count 4k+1, sizes, the output folder."""
    from ..errors import InputError
    from ..io_utils import check_output_dir
    from ..pipeline import LATENT_STRIDE

    if args.ckpt_dir is None and None in (args.vae, args.text_encoder, args.tokenizer):
        raise InputError("give --ckpt-dir, or all of --vae, --text-encoder and --tokenizer")
    s = LATENT_STRIDE
    if args.num_frames is not None and (args.num_frames < 1 or (args.num_frames - 1) % s):
        raise InputError(f"--num-frames: expected {s}k+1 frames (1, {1 + s}, {1 + 2 * s}, ...), got {args.num_frames}")
    if (args.height is None) != (args.width is None):
        raise InputError("--height and --width: give both, or neither (native size)")
    for flag, value in (("--height", args.height), ("--width", args.width), ("--text-length", args.text_length)):
        if value is not None and value < 1:
            raise InputError(f"{flag}: expected a positive number, got {value}")
    check_output_dir(args.out, "OUT")


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or `EXIT_SOME_FAILED` (via `SomeFailed`) when some samples failed or were incomplete (listed)."""
    from ..data import HMWorldDataset
    from ..data.preprocess import load_encoders, preprocess
    from ..distributed import env_rank, pick_device, sum_over_ranks
    from ..errors import SomeFailed

    check_args(args)
    rank, world_size, local_rank = env_rank()
    device = pick_device(args.device, local_rank)
    dataset = HMWorldDataset(  # the folder's layout and captions are checked before the encoders load
        args.data,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        load_masks=True,  # tgt_mask.mp4 -> the subject mask on the latent grid (`subject_loss_weight`)
        require=("cond.mp4", "tgt.mp4", "camera.json"),
    )
    encoders = load_encoders(
        args.ckpt_dir,
        vae=args.vae,
        text_encoder=args.text_encoder,
        tokenizer=args.tokenizer,
        vae_preset=args.vae_preset,
        text_encoder_preset=args.text_encoder_preset,
        text_length=args.text_length,
        tiled=args.tiled,
        device=device,
    )
    dataset.latent_stride = encoders.latent_stride
    settings = {"num_frames": args.num_frames, "height": args.height, "width": args.width}
    report = preprocess(
        dataset,
        args.out,
        encoders,
        settings=settings,
        rank=rank,
        world_size=world_size,
        latent_dtype=DTYPES[args.latent_dtype],
        progress=not args.quiet,
    )
    print(
        f"preprocess (rank {rank}/{world_size}): wrote {len(report.written)}, skipped {len(report.skipped)} "
        f"(done earlier), failed {len(report.failed)} in {report.seconds:.1f} s"
    )
    for name, reason in report.failed.items():
        print(f"  failed: {name}: {reason}")
    failed_anywhere = sum_over_ranks(len(report.failed))  # under torchrun: no rank exits early, all exit alike
    if failed_anywhere and not report.failed:
        raise SomeFailed(
            f"{failed_anywhere} samples failed on other ranks; listed in {Path(args.out)}/failed.rank*.json"
        )
    if report.failed:
        listed = "failed.json" if world_size == 1 else f"failed.rank{rank}.json"
        total = len(report.failed) + len(report.written) + len(report.skipped)
        raise SomeFailed(
            f"{len(report.failed)} of {total} samples failed or were incomplete; "
            f"listed above and in {Path(args.out) / listed}"
        )
    return 0
