"""`hydra-wm export RUN --out FILE`: write the model of a training checkpoint as a loadable DiT file.

RUN is a run folder (its latest checkpoint is used) or one `checkpoints/step_*.safetensors` file. The output has
the layout and config metadata of the export at the end of a finished run (`load_dit` reads it), so a run that
stopped early (`--stop-after`, a signal) can be evaluated or shipped as it is.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a training checkpoint's model as a .safetensors/.ckpt DiT file", description=__doc__
    )
    p.add_argument("run", help="run folder (latest checkpoint) or a checkpoints/step_*.safetensors file")
    p.add_argument(
        "--out", required=True, help="output file (.safetensors, or .ckpt/.pth/.pt; the config goes with it either way)"
    )
    p.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export the EMA weights when the run kept them (default: yes)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io_utils import check_output_file
    from ..training import export_checkpoint

    check_output_file(args.out, "--out")
    path = export_checkpoint(args.run, args.out, use_ema=args.ema)
    print(f"export: wrote {path}")
    return 0
