"""Data on disk: camera files (`cameras`), video (`video`), the HM-World reader (`hmworld`: files → samples with
clips, cameras, captions and subject masks), the preprocessed-sample format (`samples`) and the encoding that writes
it (`preprocess`). The package exports the HM-World reader; the other modules are imported where they are used."""

from .hmworld import HMWorldDataset, HMWorldSample, read_check_events, red_mask, subject_boxes

__all__ = ["HMWorldDataset", "HMWorldSample", "read_check_events", "red_mask", "subject_boxes"]
