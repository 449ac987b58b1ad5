"""`hydra-wm train DATA --out RUN (--init CKPT | --preset NAME) ...`: train HyDRA (or a baseline).

DATA is a folder written by `hydra-wm preprocess`, or `flatland:PRESET` (e.g. `flatland:small`) to train on
Flatland clips rendered and encoded by the pixel codec on the fly (`--flatland-samples`, `--flatland-seed`).

Every option is a `TrainConfig` field (same name, dashes for underscores, its docstring as help), so the CLI and
the Python API `hydra_wm.training.train` cannot drift apart. Under `torchrun --nproc_per_node=N` the same command
trains with DDP or FSDP (`--parallel`).
"""

from __future__ import annotations

import argparse
import dataclasses

from ..config import ATTENTION_MODES, DIT_PRESETS, PREDICTIONS, RETRIEVAL_MODES
from ..training import config as train_config

_CHOICES = {
    "attention": ATTENTION_MODES,
    "retrieval": RETRIEVAL_MODES,
    "prediction": PREDICTIONS,
    "preset": tuple(sorted(DIT_PRESETS)),
    "trainable": train_config.TRAINABLE,
    "precision": train_config.PRECISIONS,
    "parallel": train_config.PARALLEL,
    "lr_schedule": train_config.LR_SCHEDULES,
    "timesteps": train_config.TIMESTEP_SAMPLING,
    "loss_weighting": train_config.LOSS_WEIGHTING,
    "device": train_config.DEVICES,
}
_TYPES = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str, "str | None": str}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train HyDRA on preprocessed samples or Flatland clips (one process, or torchrun for DDP/FSDP)",
        description=__doc__.splitlines()[0],
        argument_default=argparse.SUPPRESS,  # unset options keep TrainConfig's defaults
    )
    p.add_argument(
        "data",
        help="folder written by `hydra-wm preprocess`, or flatland:PRESET (e.g. flatland:small): Flatland clips "
        "rendered and encoded by the pixel codec on the fly",
    )
    docs = train_config.field_docs()
    for field in dataclasses.fields(train_config.TrainConfig):
        if field.name == "data":
            continue
        option = "--" + field.name.replace("_", "-")
        help_text = f"{docs.get(field.name, '')} (default: {field.default})".replace("%", "%%")
        if field.type == "bool":
            p.add_argument(option, action=argparse.BooleanOptionalAction, help=help_text)
        elif field.type.startswith("tuple[int"):
            p.add_argument(option, type=int, nargs=3, metavar=("KT", "KH", "KW"), help=help_text)
        elif field.type.startswith("tuple"):
            p.add_argument(option, type=float, nargs=2, metavar=("B1", "B2"), help=help_text)
        else:
            p.add_argument(option, type=_TYPES[field.type], choices=_CHOICES.get(field.name), help=help_text)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..distributed import env_rank
    from ..training import TrainConfig, train

    names = {field.name for field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    result = train(config)
    if env_rank()[0] != 0:
        return 0
    if result.export is not None:
        print(f"train: step {result.step}; exported {result.export}")
    elif result.checkpoint is not None:
        print(f"train: step {result.step}; latest checkpoint {result.checkpoint}")
    return 0
