"""Command-line options generated from a typed config dataclass: one option per field, its docstring as help.

`hydra-wm train` is built from `TrainConfig` and the generation options of `hydra-wm generate` from
`GenerationConfig` this way, so a command and its Python API cannot drift apart: names, types, defaults, allowed
values and help text live on the config class alone. An option that is not given is left out of the parsed
namespace (`argparse.SUPPRESS`), so `config_from_args` leaves that field at the class's default.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Mapping, Sequence
from functools import cache

_TYPES = {"int": int, "float": float, "str": str}
_LONG_DEFAULT = 40
"""Defaults longer than this many characters are left to the field's docstring (e.g. a whole negative prompt)."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: docstring} read from the class source (the string literal under each annotated field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            value = following.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docs[node.target.id] = " ".join(value.value.split())  # type: ignore[union-attr]
    return docs


def add_config_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    choices: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
    metavars: Mapping[str, tuple[str, ...]] | None = None,
    skip: Sequence[str] = (),
) -> None:
    """Add ``--field-name`` for every init field of the dataclass `cls` but `skip`.

    The type comes from the annotation (bool: ``--x/--no-x``; a tuple: one value per element), the help from the
    field's docstring and default, the allowed values from `choices` (the config module's table, which its
    validation uses too); `aliases` gives a field a second, shorter option name.
    """
    choices, aliases, metavars = choices or {}, aliases or {}, metavars or {}
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if not field.init or field.name in skip:
            continue
        names = ["--" + field.name.replace("_", "-"), *([aliases[field.name]] if field.name in aliases else [])]
        shown = str(field.default)
        default = f" (default: {shown})" if len(shown) <= _LONG_DEFAULT else ""
        kwargs = {"help": f"{docs.get(field.name, '')}{default}".replace("%", "%%"), "default": argparse.SUPPRESS}
        kind = field.type.removesuffix(" | None")
        if kind == "bool":
            parser.add_argument(*names, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind.startswith("tuple["):
            element = _TYPES[kind.removeprefix("tuple[").split(",")[0].strip(" ]")]
            count = "+" if kind.endswith(", ...]") else len(kind.split(","))  # tuple[float, ...]: one or more
            metavar = metavars.get(field.name, field.name.upper() if count == "+" else (field.name.upper(),) * count)
            parser.add_argument(*names, type=element, nargs=count, metavar=metavar, **kwargs)
        else:
            parser.add_argument(*names, type=_TYPES[kind], choices=choices.get(field.name), **kwargs)


def config_from_args(cls: type, args: argparse.Namespace):
    """An instance of `cls` from the options that were given (the rest keep the class's defaults)."""
    names = {field.name for field in dataclasses.fields(cls) if field.init}
    return cls(**{key: value for key, value in vars(args).items() if key in names})
