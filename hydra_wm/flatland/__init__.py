"""Flatland: HM-World in miniature, a procedural world whose truth is known exactly.

A camera pans back and forth inside a wrapping panorama while subjects from a catalogue walk in and out
of view; every clip holds a subject that leaves the view and comes back during the target clip.
`render_clip` renders one clip with its truth, `write_dataset` writes clips in the HM-World layout,
`FlatlandDataset` renders them on the fly for training. `flatland.training` is the data source of
`hydra-wm train flatland:PRESET` and `flatland.model` the built-in world model (both imported where used).
"""

from .config import FLATLAND_PRESETS, SCENE_STYLES, FlatlandConfig, flatland_config
from .dataset import (
    FlatlandDataset,
    camera_record,
    character_record,
    check_record,
    clip_to_item,
    read_captions,
    read_truth,
    sample_name,
    truth_record,
    write_dataset,
    write_sample,
)
from .world import FlatlandClip, find_events, reentry_mask, render_clip, ue_yaw_matrices

__all__ = [
    "FLATLAND_PRESETS",
    "SCENE_STYLES",
    "FlatlandClip",
    "FlatlandConfig",
    "FlatlandDataset",
    "camera_record",
    "character_record",
    "check_record",
    "clip_to_item",
    "find_events",
    "flatland_config",
    "read_captions",
    "read_truth",
    "reentry_mask",
    "render_clip",
    "sample_name",
    "truth_record",
    "ue_yaw_matrices",
    "write_dataset",
    "write_sample",
]
