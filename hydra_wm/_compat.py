"""Old import paths of the modules that moved in 0.1 (`docs/layout.md`), kept working for one release.

`hydra_wm.model` became `hydra_wm.models.dit`, `hydra_wm.world_model` became `hydra_wm.flatland.model`, and so on:
`MOVED` lists every old path with its new home. `install()` (run by `import hydra_wm`) puts one finder on
`sys.meta_path` that answers these names only: importing an old path imports the new module, warns once
(`DeprecationWarning`) and registers the same module object under the old name, so ``from hydra_wm.model import
HydraDiT`` and ``hydra_wm.models.dit.HydraDiT`` are one class. An old module whose names went to several places
(`hydra_wm.retrieval`, `hydra_wm.codecs`, `hydra_wm.retrieval_viz`) becomes a stand-in that looks each name up in
its new homes, in order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED: dict[str, tuple[str, ...]] = {
    "hydra_wm.model": ("hydra_wm.models.dit",),
    "hydra_wm.retrieval": ("hydra_wm.models.memory", "hydra_wm.models.attention", "hydra_wm.config"),
    "hydra_wm.loading": ("hydra_wm.models.loading",),
    "hydra_wm.state_dicts": ("hydra_wm.models.state_dicts",),
    "hydra_wm.parity": ("hydra_wm.models.parity",),
    "hydra_wm.vae": ("hydra_wm.models.vae",),
    "hydra_wm.text_encoder": ("hydra_wm.models.text_encoder",),
    "hydra_wm.codecs": ("hydra_wm.models.codecs", "hydra_wm.data.preprocess", "hydra_wm.flatland.training"),
    "hydra_wm.cameras": ("hydra_wm.data.cameras",),
    "hydra_wm.video": ("hydra_wm.data.video",),
    "hydra_wm.preprocess": ("hydra_wm.data.preprocess",),
    "hydra_wm.baselines": ("hydra_wm.evaluation.baselines",),
    "hydra_wm.retrieval_viz": ("hydra_wm.evaluation.plots", "hydra_wm.pipeline", "hydra_wm.models.attention"),
    "hydra_wm.world_model": ("hydra_wm.flatland.model",),
}
"""Old module path -> its new home(s)."""


class _StandIn(types.ModuleType):
    """An old module whose names moved to several modules: each attribute comes from the first that has it."""

    def __init__(self, name: str, homes: list[types.ModuleType]):
        super().__init__(name, f"moved to {', '.join(m.__name__ for m in homes)}")
        self._homes = homes

    def __getattr__(self, attr: str):
        for home in self._homes:
            if hasattr(home, attr):
                return getattr(home, attr)
        raise AttributeError(f"{self.__name__}.{attr} moved; see docs/layout.md")


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        homes = [importlib.import_module(name) for name in MOVED[spec.name]]
        warnings.warn(
            f"{spec.name} moved to {', '.join(MOVED[spec.name])}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        if len(homes) > 1:
            return _StandIn(spec.name, homes)
        self._specs[spec.name] = homes[0].__spec__  # importlib sets the old name's spec on the module next
        return homes[0]

    def exec_module(self, module) -> None:
        if isinstance(module, _StandIn):
            return
        module.__spec__ = self._specs.pop(module.__spec__.name)  # the module keeps its own spec


def install() -> None:
    """Answer the old paths (once per interpreter)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
