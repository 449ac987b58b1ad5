"""`hydra-wm train DATA --out RUN (--init CKPT | --preset NAME) ...`: train HyDRA (or a baseline).

DATA is a folder written by `hydra-wm preprocess`, or `flatland:PRESET` (e.g. `flatland:small`) to train on
Flatland clips rendered and encoded by the pixel codec on the fly (`--flatland-samples`, `--flatland-seed`).

Every option is a `TrainConfig` field (same name, dashes for underscores, its docstring as help), so the CLI and
the Python API `hydra_wm.training.train` cannot drift apart. Under `torchrun --nproc_per_node=N` the same command
trains with DDP or FSDP (`--parallel`).
"""

from __future__ import annotations

import argparse

from ..training import config as train_config
from .options import add_config_options, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train HyDRA on preprocessed samples or Flatland clips (one process, or torchrun for DDP/FSDP)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "data",
        help="folder written by `hydra-wm preprocess`, or flatland:PRESET (e.g. flatland:small): Flatland clips "
        "rendered and encoded by the pixel codec on the fly",
    )
    add_config_options(
        p,
        train_config.TrainConfig,
        choices=train_config.FIELD_CHOICES,
        metavars={"tokenizer_kernel": ("KT", "KH", "KW"), "betas": ("B1", "B2")},
        skip=("data",),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; exit code 128 + N when signal N (SIGINT, SIGTERM) stopped the run after saving its checkpoint."""
    from ..distributed import env_rank
    from ..io_utils import check_output_dir
    from ..training import TrainConfig, train

    config = config_from_args(TrainConfig, args)
    check_output_dir(config.out, "--out")
    result = train(config)
    code = 128 + result.stopped_by if result.stopped_by is not None else 0
    if env_rank()[0] != 0:
        return code
    if result.export is not None:
        print(f"train: step {result.step}; exported {result.export}")
    elif result.checkpoint is not None:
        print(f"train: step {result.step}; latest checkpoint {result.checkpoint}")
    return code
