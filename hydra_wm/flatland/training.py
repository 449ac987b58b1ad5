"""The Flatland data source for training: clips rendered and encoded on the fly, nothing on disk.

What `hydra-wm train flatland:PRESET` (`TrainConfig.data`) trains on: `FlatlandDataset` clips through the lossless
`PixelCodec` with a null text embedding, the same tensors `hydra-wm flatland` + `hydra-wm preprocess` would write.
"""

from __future__ import annotations

from ..data.preprocess import EncodedDataset, pixel_encoders
from ..models.codecs import PixelCodec
from .config import flatland_config
from .dataset import FlatlandDataset


def flatland_training_dataset(
    preset: str = "small", samples: int = 512, seed: int = 0, *, factor: int = 2, text_dim: int = 8
):
    """`EncodedDataset` of `samples` Flatland clips (preset `preset`, `seed`) through `PixelCodec(factor)`, null text.

    Nothing touches the disk: clip i is rendered and encoded when read, identical to sample i that
    `hydra-wm flatland` + `hydra-wm preprocess` would write with the same codec. `text_dim` is the width of the
    null text embedding (8: `flatland-tiny`'s).
    """
    codec = PixelCodec(factor)
    clips = FlatlandDataset(flatland_config(preset), samples, seed, latent_stride=codec.latent_stride)
    return EncodedDataset(clips, pixel_encoders(codec, text_dim=text_dim))
