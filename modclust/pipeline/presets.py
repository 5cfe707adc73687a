"""Presets and notebook parameters: every key known, every value of its declared type.

A pipeline notebook declares its parameters in its one cell tagged ``parameters``, one typed
line each (``epochs: int = 10  # training epochs``). A preset (``presets/<name>.yaml``) sets
some of them for every notebook at once. Two checks share one rule for a value against its
declared type:

A preset may start from another (``extends: paper``) and state only what differs.

- :func:`check_preset`, before the pipeline runs anything: every key is some notebook's
  parameter (with the close matches of a typo) and every value has the declared type; the
  error names the preset file, the key and the expected type.
- :func:`check_parameters`, in each notebook right after its parameters (and papermill's
  injected cell): the same check on the values the kernel actually holds, for a notebook run
  by hand or by papermill outside the pipeline.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modclust.core import paths
from modclust.pipeline.deps import DependencyError, preset_chain

EXTENDS = "extends"
"""The key by which a preset names the preset it builds on."""

PIPELINE_PARAMS = ("build_dir", "out_dir", "preset")
"""Parameters the pipeline sets for every stage itself; a preset must not set them."""

_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_NUMBERISH = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class PresetError(ValueError):
    """A preset or a notebook's parameters that the pipeline cannot run with."""


@dataclass(frozen=True)
class Parameter:
    """One line of a notebook's parameters cell."""

    name: str
    type: str  # "int", "float", "str", "bool", "list" or "list[<scalar>]"
    default: Any
    help: str
    notebook: str  # the notebook's name, e.g. "01_train"


def parameters_of(notebook: str | os.PathLike[str]) -> dict[str, Parameter]:
    """The typed parameters declared in a notebook's ``parameters`` cell, in order."""
    path = Path(notebook)
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise PresetError(f"{path} must have exactly one cell tagged 'parameters' (it has {len(tagged)})")
    source = "".join(tagged[0]["source"])
    lines = source.splitlines()
    out: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None):
            raise PresetError(f"{path}: every line of the parameters cell must read 'name: type = value  # help'")
        line = lines[node.lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line[node.value.end_col_offset:] else ""
        out[node.target.id] = Parameter(node.target.id, ast.unparse(node.annotation),
                                        ast.literal_eval(node.value), comment, path.stem)
    return out


def pipeline_parameters(notebooks: Iterable[str | os.PathLike[str]]) -> dict[str, list[Parameter]]:
    """Every parameter of the given notebooks, each with the notebooks that declare it."""
    out: dict[str, list[Parameter]] = {}
    for nb in notebooks:
        for name, p in parameters_of(nb).items():
            out.setdefault(name, []).append(p)
    return out


def type_error(value: Any, type_name: str) -> str | None:
    """Why ``value`` is not of the declared type ``type_name``, or None when it is.

    ``float`` accepts ints; ``int`` and ``float`` refuse bools; ``list[T]`` checks every item.
    """
    if type_name in _SCALARS:
        ok = isinstance(value, _SCALARS[type_name]) and (type_name == "bool" or not isinstance(value, bool))
        if ok:
            return None
        got = f"{type(value).__name__} {value!r}"
        if type_name in ("int", "float") and isinstance(value, str) and _NUMBERISH.match(value.strip()):
            mantissa, e, exponent = value.strip().lower().partition("e")
            if e and "." not in mantissa:
                return (f"got the string {value!r}: YAML reads a number with an exponent but no decimal "
                        f"point as text; write {mantissa}.0e{exponent}")
            return f"got the string {value!r}: remove the quotes"
        return f"got {got}"
    match = re.fullmatch(r"list(?:\[(\w+)\])?", type_name)
    if match is None:
        raise PresetError(f"unsupported parameter type {type_name!r}: use int, float, str, bool or list[...]")
    if not isinstance(value, list):
        return f"got {type(value).__name__} {value!r}"
    item_type = match.group(1)
    if item_type is not None:
        for i, item in enumerate(value):
            why = type_error(item, item_type)
            if why is not None:
                return f"item {i}: {why}"
    return None


def _close(name: str, known: Iterable[str]) -> str:
    matches = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


def _preset_file(path: Path) -> dict[str, Any]:
    """One preset file's own mapping of keys to values (an empty file is an empty preset)."""
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PresetError(f"{path} is not valid YAML: {err}") from err
    values = {} if values is None else values
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise PresetError(f"{path} must be a mapping of parameter names to values, like 'epochs: 10'")
    return values


def preset_layers(path: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    """Each file of a preset's chain with its own keys, the base first (see :func:`load_preset`)."""
    try:
        chain = preset_chain(Path(path))
    except DependencyError as err:
        raise PresetError(str(err)) from err
    layers = []
    for i, file in enumerate(chain):
        values = _preset_file(file)
        base = values.pop(EXTENDS, None)
        expected = chain[i + 1].stem if i + 1 < len(chain) else None
        if base != expected:
            raise PresetError(f"{file}: '{EXTENDS}' names one preset on a line of its own, like "
                              f"'{EXTENDS}: paper'; got {base!r}")
        layers.append((file, values))
    return layers[::-1]


def load_preset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A preset's keys and values: those of the preset it ``extends`` (if any, recursively),
    updated by its own. A preset states only what differs from its base."""
    merged: dict[str, Any] = {}
    for _, values in preset_layers(path):
        merged.update(values)
    return merged


def check_preset(path: str | os.PathLike[str], notebooks: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Load the preset at ``path`` and check it against the notebooks' parameters.

    Every problem is collected into one :class:`PresetError` that names the file (of the
    preset's chain) that sets the key, each key and its expected type; the preset's merged
    values are returned when there is none.
    """
    layers = preset_layers(path)
    declared = pipeline_parameters(notebooks)
    problems = []
    for file, values in layers:
        where = "" if file == Path(path) else f" (set in {file})"
        for key, value in values.items():
            if key in PIPELINE_PARAMS:
                problems.append(f"{key}{where}: set by the pipeline for each stage, not by a preset; remove it")
            elif key not in declared:
                problems.append(f"{key}{where}: no notebook has this parameter{_close(key, declared)}")
            else:
                for p in declared[key]:
                    why = type_error(value, p.type)
                    if why is not None:
                        problems.append(f"{key}{where}: must be {p.type} (notebooks/{p.notebook}.ipynb: {p.help}); {why}")
                        break
    if problems:
        raise PresetError(f"preset {path} cannot run:\n  " + "\n  ".join(problems))
    return load_preset(path)


def _annotation_text(annotation: Any) -> str:
    """An annotation as the parameters cell wrote it: ``float`` -> "float", ``list[int]`` -> "list[int]"."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def check_parameters(namespace: Mapping[str, Any], hidden: Iterable[str] = (),
                     known: Iterable[str] = ()) -> None:
    """Check a notebook's parameters as its kernel holds them (call it in the cell after them).

    The declared types are the annotations of the parameters cell (``namespace
    ["__annotations__"]``). When ``hidden`` lists the kernel's own names (IPython's
    ``user_ns_hidden``), a name set by papermill's injected cell that this notebook does not
    declare is reported as a typo, unless it is in ``known`` (another notebook's parameter: a
    preset passed whole to each notebook sets those too).
    """
    annotations = namespace.get("__annotations__", {})
    problems = []
    for name, annotation in annotations.items():
        if name in namespace:
            type_name = _annotation_text(annotation)
            why = type_error(namespace[name], type_name)
            if why is not None:
                problems.append(f"{name}: must be {type_name}; {why}")
    hidden, known = set(hidden), set(known)
    if hidden:
        for name in namespace:
            value = namespace[name]
            imported = callable(value) or isinstance(value, types.ModuleType)  # not data: no parameter
            if not name.startswith("_") and not imported and name not in hidden | known | set(annotations):
                problems.append(f"{name}: no notebook has this parameter{_close(name, known | set(annotations))}")
    if problems:
        raise PresetError("this notebook's parameters cannot run:\n  " + "\n  ".join(problems))


def check_kernel_parameters(namespace: Mapping[str, Any]) -> None:
    """:func:`check_parameters` in the running IPython kernel, against the pipeline's notebooks."""
    from IPython import get_ipython  # the notebooks' kernel; not needed elsewhere

    shell = get_ipython()
    hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
    known = pipeline_parameters(sorted((paths.REPO / "notebooks").glob("0*.ipynb")))
    check_parameters(namespace, hidden=hidden, known=known)
