"""Presets and notebook parameters: every key known, every value of its type and valid.

Each study's settings are one frozen dataclass whose field defaults are the defaults
(:data:`modclust.pipeline.studies.STUDIES`, by preset section): the MLP study's
:class:`~modclust.experiments.mlp_study.MlpSettings` (with the machine, ``device`` and
``threads``), the CNN's :class:`~modclust.experiments.cnn_study.CnnSettings` and modular
addition's :class:`~modclust.experiments.modular_addition.ModAddSettings`; constructing one checks
its values. This module takes them as arguments and imports none of them.

A preset (``presets/<name>.yaml``) sets MlpSettings' fields at its top level and the others'
in a section each, by field name::

    seeds: [0, 1]
    cnn:
      null_draws: 20
    modadd:
      p: 59

A preset may start from another (``extends: paper``) and state only what differs; a section
merges key by key with its base's. A pipeline notebook declares its parameters in its one cell
tagged ``parameters``, one typed line each (``epochs: int = 10  # training epochs``), with the
defaults of the fields: a top-level key under its own name, a section's key as
``<section>_<key>`` (``cnn_null_draws``, :func:`notebook_values`). Two checks share the rule
for a value against its type and the dataclasses' checks of values:

- :func:`check_preset`, before the pipeline runs anything: every key is a setting (with the
  close matches of a typo) that some notebook reads, every value has the field's type, and
  each study's settings construct; the error names the preset file, each key and what it
  must be.
- :func:`check_parameters`, in each notebook right after its parameters (and papermill's
  injected cell): the same checks on the values the kernel actually holds, for a notebook run
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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from modclust.core import paths
from modclust.core.checks import SettingsError
from modclust.pipeline.deps import DependencyError, preset_chain

EXTENDS = "extends"
"""The key by which a preset names the preset it builds on."""

PIPELINE_PARAMS = ("build_dir", "out_dir", "preset", "trained_dir")
"""Parameters the pipeline sets for a stage itself (``trained_dir`` only when the launcher
trained the stage's models, :mod:`modclust.pipeline.launch`); a preset must not set them."""

Settings = type
"""A study's settings: a frozen dataclass with a class attribute ``preset_section``, the preset
section that sets it (None: the preset's top level). This module takes them as arguments and
imports none, so a notebook that checks its parameters depends on its own study only."""

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


def setting_types(cls: type) -> dict[str, str]:
    """A settings dataclass's fields and their parameter types ("int", ..., a tuple as "list[...]")."""
    out = {}
    for f in fields(cls):
        text = str(f.type).replace(" ", "")
        match = re.fullmatch(r"tuple\[(\w+),\.\.\.\]", text)
        out[f.name] = f"list[{match.group(1)}]" if match else text
    return out


def parameter_name(section: str | None, key: str) -> str:
    """The notebook parameter of a preset key: ``key`` at the top level, else ``<section>_<key>``."""
    return key if section is None else f"{section}_{key}"


def notebook_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's values as notebook parameters: its sections' keys prefixed (``cnn_null_draws``)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, Mapping):  # a section (no top-level setting is a mapping)
            out.update({parameter_name(key, k): v for k, v in value.items()})
        else:
            out[key] = value
    return out


def settings_problems(cls: Settings, values: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Every problem of a study's settings built from ``values`` (the rest at their defaults), each
    with the fields it concerns; lists are taken as the settings' tuples."""
    try:
        cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except SettingsError as err:
        return err.problems
    return []


def settings_from_parameters(cls: type, namespace: Mapping[str, Any]) -> Any:
    """A study's settings from a notebook's parameters (``cnn_null_draws`` and so on), checked.

    Call it right after the parameters (:func:`check_kernel_parameters`): a notebook run by
    hand gets the value checks a preset gets before the pipeline runs.
    """
    section = cls.preset_section
    values = {f: namespace[parameter_name(section, f)] for f in setting_types(cls)
              if parameter_name(section, f) in namespace}
    problems = settings_problems(cls, values)
    if problems:
        raise PresetError("this notebook's parameters cannot run:\n  " + "\n  ".join(
            f"{parameter_name(section, concerned[0])}: {message}" for concerned, message in problems))
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


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


def merge(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``values``; a section (``cnn:``, ``modadd:``) in both merges key by key."""
    out = dict(base)
    for key, value in values.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def load_preset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A preset's keys and values: those of the preset it ``extends`` (if any, recursively),
    updated by its own, section by section. A preset states only what differs from its base."""
    merged: dict[str, Any] = {}
    for _, values in preset_layers(path):
        merged = merge(merged, values)
    return merged


def check_preset(path: str | os.PathLike[str], notebooks: Iterable[str | os.PathLike[str]],
                 studies: Mapping[str | None, Settings]) -> dict[str, Any]:
    """Load the preset at ``path`` and check it against the settings and the notebooks.

    Every problem is collected into one :class:`PresetError` that names, for each key, the file
    (of the preset's chain) that sets it and what it must be: a known setting that some notebook
    reads, of the field's type, and a value the study's settings accept (checked by constructing
    them). The preset's merged values are returned when there is none.
    """
    layers = preset_layers(path)
    declared = pipeline_parameters(notebooks)
    types = {section: setting_types(cls) for section, cls in studies.items()}
    problems: list[str] = []
    origin: dict[tuple[str | None, str], Path] = {}  # (section, key) -> the file that sets it last
    broken: set[str | None] = set()  # studies with a key of the wrong type: their values are not built
    sectioned = {parameter_name(section, key) for section in studies if section for key in types[section]}
    own = set(declared) - sectioned - set(PIPELINE_PARAMS)  # notebooks' parameters a preset sets at its top level

    def check_key(file: Path, where: str, section: str | None, key: str, value: Any) -> None:
        shown = key if section is None else f"{section}.{key}"
        name = parameter_name(section, key)
        if key not in types[section] and not (section is None and key in own):
            head, _, rest = key.partition("_")
            hint = (f" (a {head} setting goes in its section: '{head}: {{{rest}: ...}}')"
                    if section is None and head in studies and rest in types[head]
                    else _close(key, set(types[section]) | (own if section is None else set())))
            problems.append(f"{shown}{where}: no such setting{hint}")
            return
        origin[section, key] = file
        if name not in declared:
            problems.append(f"{shown}{where}: no notebook has the parameter {name}; "
                            "add it to the notebook that reads it")
        type_name = types[section].get(key) or declared[name][0].type  # a notebook's own parameter, in no study
        why = type_error(value, type_name)
        if why is not None:
            broken.add(section)
            help_ = f" (notebooks/{declared[name][0].notebook}.ipynb: {declared[name][0].help})" \
                if name in declared else ""
            problems.append(f"{shown}{where}: must be {type_name}{help_}; {why}")

    for file, values in layers:
        where = "" if file == Path(path) else f" (set in {file})"
        for key, value in values.items():
            if key in PIPELINE_PARAMS:
                problems.append(f"{key}{where}: set by the pipeline for each stage, not by a preset; remove it")
            elif key in studies:
                if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                    broken.add(key)
                    problems.append(f"{key}{where}: must be a section of {studies[key].__name__}'s settings, "
                                    f"one 'name: value' per line indented below '{key}:', got {value!r}")
                    continue
                for k, v in value.items():
                    check_key(file, where, key, k, v)
            else:
                check_key(file, where, None, key, value)
    merged = load_preset(path)
    rank = {file: i for i, (file, _) in enumerate(layers)}
    for section in studies:
        if section in broken:
            continue
        values = merged if section is None else merged.get(section, {})
        known = {k: v for k, v in values.items() if k in types[section]}
        for concerned, message in settings_problems(studies[section], known):
            key = max(concerned, key=lambda k: rank.get(origin.get((section, k)), -1))  # the latest file's
            shown = key if section is None else f"{section}.{key}"
            file = origin.get((section, key))
            where = "" if file == Path(path) else f" (set in {file})" if file else " (its default)"
            problems.append(f"{shown}{where}: {message}")
    if problems:
        raise PresetError(f"preset {path} cannot run:\n  " + "\n  ".join(problems))
    return merged


def _annotation_text(annotation: Any) -> str:
    """An annotation as the parameters cell wrote it: ``float`` -> "float", ``list[int]`` -> "list[int]"."""
    if isinstance(annotation, str):
        return annotation
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def check_parameters(namespace: Mapping[str, Any], studies: Iterable[Settings] = (), hidden: Iterable[str] = (),
                     known: Iterable[str] = ()) -> None:
    """Check a notebook's parameters as its kernel holds them (call it in the cell after them).

    The declared types are the annotations of the parameters cell (``namespace
    ["__annotations__"]``); values are checked as the studies' settings check them
    (:func:`settings_problems`), for the fields the notebook declares (a rule between one of
    them and a field it does not declare is left to the preset's check). When ``hidden`` lists
    the kernel's own names (IPython's ``user_ns_hidden``), a name set by papermill's injected
    cell that this notebook does not declare is reported as a typo, unless it is in ``known``
    (another notebook's parameter: a preset passed whole to each notebook sets those too).
    """
    annotations = namespace.get("__annotations__", {})
    problems = []
    for name, annotation in annotations.items():
        if name in namespace:
            type_name = _annotation_text(annotation)
            why = type_error(namespace[name], type_name)
            if why is not None:
                problems.append(f"{name}: must be {type_name}; {why}")
    if not problems:  # the values, where the types are right: each study's fields this notebook declares
        for cls in studies:
            section = cls.preset_section
            given = {f: namespace[parameter_name(section, f)] for f in setting_types(cls)
                     if parameter_name(section, f) in annotations and parameter_name(section, f) in namespace}
            for concerned, message in settings_problems(cls, given) if given else []:
                if set(concerned) <= set(given):  # a rule between fields, one of them not here, is the preset's
                    problems.append(f"{parameter_name(section, concerned[0])}: {message}")
    hidden, known = set(hidden), set(known)
    if hidden:
        for name in namespace:
            value = namespace[name]
            imported = callable(value) or isinstance(value, types.ModuleType)  # not data: no parameter
            if not name.startswith("_") and not imported and name not in hidden | known | set(annotations):
                problems.append(f"{name}: no notebook has this parameter{_close(name, known | set(annotations))}")
    if problems:
        raise PresetError("this notebook's parameters cannot run:\n  " + "\n  ".join(problems))


def check_kernel_parameters(namespace: Mapping[str, Any], *studies: Settings) -> None:
    """:func:`check_parameters` in the running IPython kernel, against the pipeline's notebooks and
    the settings of the ``studies`` whose fields the notebook declares."""
    from IPython import get_ipython  # the notebooks' kernel; not needed elsewhere

    shell = get_ipython()
    hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
    known = pipeline_parameters(sorted((paths.REPO / "notebooks").glob("0*.ipynb")))
    check_parameters(namespace, studies, hidden=hidden, known=known)
