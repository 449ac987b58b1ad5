"""hydra-wm: HyDRA hybrid-memory video world model (arXiv 2603.25716) on Wan2.1.

Public names are imported lazily so that `import hydra_wm` stays light (no diffusers/transformers
import until a loader that needs them is used).
"""

from __future__ import annotations

import importlib

from . import _compat

__version__ = "0.1.0"

_EXPORTS = {
    "DiTConfig": "hydra_wm.config",
    "dit_config": "hydra_wm.config",
    "HydraDiT": "hydra_wm.models.dit",
    "load_dit": "hydra_wm.models.loading",
    "load_relative_cameras": "hydra_wm.data.cameras",
    "read_video": "hydra_wm.data.video",
    "write_video": "hydra_wm.data.video",
    "load_vae": "hydra_wm.models.vae",
    "load_text_encoder": "hydra_wm.models.text_encoder",
    "FlowMatchSchedule": "hydra_wm.flow",
    "HydraPipeline": "hydra_wm.pipeline",
    "GenerationConfig": "hydra_wm.pipeline",
    "Sample": "hydra_wm.pipeline",
    "RolloutSample": "hydra_wm.pipeline",
    "RolloutConfig": "hydra_wm.rollout",
    "MemoryBank": "hydra_wm.rollout",
    "load_pose_streams": "hydra_wm.data.cameras",
    "HMWorldDataset": "hydra_wm.data.hmworld",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hydra_wm' has no attribute {name!r}")


_compat.install()  # old module paths (hydra_wm.model, ...) keep working for one release
