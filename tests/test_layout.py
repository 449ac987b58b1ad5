"""The package's layering, read from the source: no import cycle, no upward import, commands only under the CLI.

Every module's imports are parsed with `ast`, those inside functions included (a cycle kept alive by an import
inside a function is still a cycle, and still couples the two modules). `LAYERS` is the architecture, lowest
first; a module may import from its own layer and the layers below it, never from a layer above. A new module
must be placed in a layer here. `docs/layout.md` explains the layers.
"""

import ast
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hydra_wm"

LAYERS: list[tuple[str, ...]] = [
    # 1. foundations: errors, typed configs, file helpers, devices, flow matching, exact metrics, offload
    (
        "hydra_wm.errors",
        "hydra_wm.config",
        "hydra_wm.io_utils",
        "hydra_wm.distributed",
        "hydra_wm.flow",
        "hydra_wm.metrics",
        "hydra_wm.offload",
    ),
    # 2. the networks and their checkpoint files
    ("hydra_wm.models",),
    # 3. data: cameras, video, HM-World, the preprocessed-sample format, preprocessing
    ("hydra_wm.data",),
    # 4. the sampler, the generation pipeline and the rollout's memory bank
    ("hydra_wm.pipeline", "hydra_wm.rollout"),
    # 5. Flatland: the world, its training data source, the built-in model
    ("hydra_wm.flatland",),
    # 6. training and evaluation, independent of each other
    ("hydra_wm.training", "hydra_wm.evaluation"),
    # 7. the browser viewer: reads result folders (evaluation reports included), drives live Flatland rollouts
    ("hydra_wm.viewer",),
    # 8. the command line and the package root (`_compat` imports moved modules by name only)
    ("hydra_wm.commands", "hydra_wm.cli", "hydra_wm.__main__", "hydra_wm._compat", "hydra_wm"),
]
BELOW_PIPELINE = ("hydra_wm.models", "hydra_wm.data")
ABOVE_THEM = ("hydra_wm.training", "hydra_wm.evaluation", "hydra_wm.flatland", "hydra_wm.commands", "hydra_wm.pipeline")


def within(module: str, prefix: str) -> bool:
    """`module` is `prefix` or lies inside it (the package root `hydra_wm` contains only itself here)."""
    return module == prefix or (prefix != "hydra_wm" and module.startswith(prefix + "."))


def layer_of(module: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if any(within(module, p) for p in layer)), None)


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, source: str, is_package: bool, modules) -> set[str]:
    """The hydra_wm modules `source` (module `name`) imports, anywhere in the file."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # `from .pkg import module`: that module; `from .module import name`: .module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == "hydra_wm" and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {
        name: imports_of(name, path.read_text(), path.name == "__init__.py", modules) for name, path in modules.items()
    }


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} (layer {layer_of(a) + 1}) imports {b} (layer {layer_of(b) + 1})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b) is not None and layer_of(a) is not None and layer_of(b) > layer_of(a)
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in module_names() if layer_of(name) is None)
    assert not unplaced, f"place these modules in tests/test_layout.py LAYERS: {unplaced}"


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_upward_import():
    assert upward_imports(import_graph()) == []


def test_models_and_data_import_nothing_from_above():
    graph = import_graph()
    bad = sorted(
        f"{a} imports {b}"
        for a, targets in graph.items()
        if any(within(a, p) for p in BELOW_PIPELINE)
        for b in targets
        if any(within(b, p) for p in ABOVE_THEM)
    )
    assert bad == []


def test_commands_are_imported_by_the_cli_only():
    graph = import_graph()
    bad = sorted(
        f"{a} imports {b}"
        for a, targets in graph.items()
        if not within(a, "hydra_wm.commands") and a != "hydra_wm.cli"
        for b in targets
        if within(b, "hydra_wm.commands")
    )
    assert bad == []


def test_training_and_evaluation_are_independent():
    graph = import_graph()
    pairs = (("hydra_wm.training", "hydra_wm.evaluation"), ("hydra_wm.evaluation", "hydra_wm.training"))
    bad = sorted(
        f"{a} imports {b}"
        for source, target in pairs
        for a, targets in graph.items()
        if within(a, source)
        for b in targets
        if within(b, target)
    )
    assert bad == []


def test_the_checks_catch_an_upward_import_and_a_cycle_hidden_in_a_function():
    """Guard against a check that passes vacuously: add an import inside a function of a models/ module."""
    graph = import_graph()
    modules = module_names()
    source = (modules["hydra_wm.models.dit"]).read_text() + "\n\ndef _probe():\n    from ..training.loop import train\n"
    graph["hydra_wm.models.dit"] = imports_of("hydra_wm.models.dit", source, False, modules)
    assert "hydra_wm.training.loop" in graph["hydra_wm.models.dit"]
    upward = upward_imports(graph)
    assert any(line.startswith("hydra_wm.models.dit (layer 2) imports hydra_wm.training.loop") for line in upward)
    assert any("hydra_wm.models.dit" in cycle and "hydra_wm.training.loop" in cycle for cycle in cycles(graph))


def test_old_module_paths_import_the_moved_modules():
    """The 0.1 moves (`hydra_wm._compat.MOVED`, docs/layout.md) keep the old paths working for one release."""
    import hydra_wm._compat as compat
    import hydra_wm.models.dit

    with pytest.warns(DeprecationWarning, match="hydra_wm.models.dit"):
        import hydra_wm.model as old  # noqa: F401
    assert old is hydra_wm.models.dit and old.__spec__.name == "hydra_wm.models.dit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from hydra_wm.codecs import PixelCodec, flatland_training_dataset, pixel_encoders
        from hydra_wm.world_model import load_flatland_model
    from hydra_wm.data.preprocess import pixel_encoders as moved_encoders
    from hydra_wm.flatland.model import load_flatland_model as moved_loader
    from hydra_wm.models.codecs import PixelCodec as moved_codec

    assert (PixelCodec, pixel_encoders, load_flatland_model) == (moved_codec, moved_encoders, moved_loader)
    assert callable(flatland_training_dataset)
    assert all(layer_of(new) is not None for homes in compat.MOVED.values() for new in homes)
