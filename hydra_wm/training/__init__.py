"""Training: `TrainConfig`, the loop (`train`), the preprocessed-data reader, parallelism and checkpoints."""

from .config import TrainConfig
from .data import DataOrder, PreprocessedDataset, collate, read_sample
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
