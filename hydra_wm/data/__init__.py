"""Dataset readers: files on disk → samples (clips, cameras, captions, subject masks)."""

from .hmworld import HMWorldDataset, HMWorldSample, read_check_events, red_mask, subject_boxes

__all__ = ["HMWorldDataset", "HMWorldSample", "read_check_events", "red_mask", "subject_boxes"]
