"""The Flatland data source for training: clips rendered and encoded on the fly, nothing on disk.

What `hydra-wm train flatland:PRESET` (`TrainConfig.data`) trains on: `FlatlandDataset` clips through the lossless
`PixelCodec` with a null text embedding, the same tensors `hydra-wm flatland` + `hydra-wm preprocess` would write.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from ..data.cameras import camera_poses, relative_vectors
from ..data.preprocess import EncodedDataset, pixel_encoders
from ..errors import InputError
from ..models.codecs import PixelCodec
from ..rollout import RolloutConfig, plan_chunks, select_history
from .config import FlatlandConfig, flatland_config
from .dataset import FlatlandDataset
from .world import render_clip

CHUNK_STREAM = 17
"""Seed stream of the chunk choice (`FlatlandChunkDataset.chunk_of`), apart from the clip's own streams."""


def flatland_training_dataset(
    preset: str = "small",
    samples: int = 512,
    seed: int = 0,
    *,
    factor: int = 2,
    text_dim: int = 8,
    chunk_frames: int = 0,
    kernel: int = 2,
):
    """`EncodedDataset` of `samples` Flatland clips (preset `preset`, `seed`) through `PixelCodec(factor)`, null text.

    Nothing touches the disk: clip i is rendered and encoded when read, identical to sample i that
    `hydra-wm flatland` + `hydra-wm preprocess` would write with the same codec. `text_dim` is the width of the
    null text embedding (8: `flatland-tiny`'s). With `chunk_frames` > 0, item i is instead one chunk of that many
    frames of clip i with the context a rollout gives it (`FlatlandChunkDataset`: as many context frames as the
    preset's clips have, the 8 newest and the rest pre-selected by camera in units of `kernel` frames, the
    memory tokenizer's temporal kernel).
    """
    codec = PixelCodec(factor)
    config = flatland_config(preset)
    if chunk_frames:
        history = RolloutConfig.for_context(config.context_frames, chunk_frames)  # as `hydra-wm demo --rollout`
        clips = FlatlandChunkDataset(config, samples, seed, history=history, kernel=kernel)
    else:
        clips = FlatlandDataset(config, samples, seed, latent_stride=codec.latent_stride)
    return EncodedDataset(clips, pixel_encoders(codec, text_dim=text_dim))


class FlatlandChunkDataset(Dataset):
    """Chunks of long Flatland clips, each conditioned as a rollout conditions it (docs/rollout.md).

    Item i is one chunk of clip (seed, i): chunk c of the clip's target (c drawn from (seed, i), every chunk of
    `rollout.plan_chunks` equally likely), with the context `rollout.select_history` picks for it from every
    frame before it — the `history.recent_frames` newest plus `history.memory_frames` pre-selected by camera, in
    units of the memory tokenizer's `kernel` frames — and cameras referred to the chunk's first frame. The
    history is the true frames (teacher forcing), so a model trained on these items sees at training time the
    input layout it gets in `hydra-wm demo --rollout` / `Rollout.step`. Chunk 0 conditions on the clip's context
    frames, exactly a `FlatlandDataset` item cut to the chunk's frames. One latent frame per video frame
    (`PixelCodec`): the bank and the selection count latent frames. Items have `FlatlandDataset`'s keys
    `context`, `target`, `context_cameras`, `target_cameras`, `target_labels`, `caption` and `index`, plus
    ``chunk`` (c) and ``context_frames`` (the bank frames of the context, ``[Tc]`` int64).
    """

    def __init__(self, config: FlatlandConfig, length: int, seed: int = 0, *, history: RolloutConfig, kernel: int = 2):
        if length < 1:
            raise InputError(f"FlatlandChunkDataset length: expected at least 1, got {length}")
        if history.history != "memory":
            raise InputError(f"FlatlandChunkDataset: trains the `memory` history, got {history.history!r}")
        if config.context_frames < history.context_frames:
            raise InputError(
                f"FlatlandChunkDataset: the preset's {config.context_frames} context frames are fewer than the "
                f"{history.context_frames} a chunk conditions on"
            )
        self.config, self.length, self.seed, self.history = config, length, seed, history
        self.plan = plan_chunks(config.target_frames, history.chunk_frames, 1)
        self.set_kernel(kernel)

    def set_kernel(self, kernel: int) -> None:
        """Pre-select the history in units of `kernel` frames (the memory tokenizer's temporal kernel)."""
        if kernel < 1 or self.history.memory_frames % kernel:
            raise InputError(
                f"memory_frames {self.history.memory_frames}: expected a multiple of the memory tokenizer's "
                f"{kernel} frames"
            )
        self.kernel = kernel

    def __len__(self) -> int:
        return self.length

    def chunk_of(self, index: int) -> int:
        """The chunk item `index` trains on."""
        return int(np.random.default_rng([self.seed, index, CHUNK_STREAM]).integers(len(self.plan)))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        clip = render_clip(self.config, self.seed, index)
        chunk = self.chunk_of(index)
        start = clip.context_frames + sum(self.plan[:chunk])
        stop = start + self.plan[chunk]
        poses = camera_poses(clip.camera_to_world)
        choice = select_history(poses[:start], poses[start:stop], self.history, self.kernel)
        context = torch.tensor(choice.context, dtype=torch.int64)
        video = rearrange(torch.from_numpy(clip.frames).float() / 127.5 - 1.0, "t h w c -> c t h w")
        reference = poses[start]  # as `Rollout.step`: cameras relative to the chunk's first target frame
        return {
            "context": video[:, context],
            "target": video[:, start:stop],
            "context_cameras": relative_vectors(poses[context], reference),
            "target_cameras": relative_vectors(poses[start:stop], reference),
            "target_labels": torch.from_numpy(clip.labels[start:stop].astype(np.int64)),
            "caption": clip.caption(),
            "index": index,
            "chunk": chunk,
            "context_frames": context,
        }
