"""Training: `TrainConfig`, the loop (`train`), batching and data order, parallelism and checkpoints.

`PreprocessedDataset` and `read_sample` (the sample format, `hydra_wm.data.samples`) are re-exported here: the
reader `train` uses for a preprocessed folder."""

from ..data.samples import PreprocessedDataset, read_sample
from .config import TrainConfig
from .data import DataOrder, collate
from .loop import TrainResult, build_model, export_checkpoint, flow_matching_loss, set_trainable, train

__all__ = [
    "DataOrder",
    "PreprocessedDataset",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "collate",
    "export_checkpoint",
    "flow_matching_loss",
    "read_sample",
    "set_trainable",
    "train",
]
