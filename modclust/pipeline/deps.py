"""What each pipeline stage depends on, read from the code: make's prerequisites, never kept by hand.

A stage is stale when its notebook, a file of its preset (with the presets it ``extends``) or
any module its notebook imports, at any depth, changed. The imports are read with :mod:`ast`
from the notebook's code cells and then from each module they reach (imports inside functions
count too); a package brings its ``__init__.py`` and the data files beside its modules (e.g.
the paper's matplotlib style).

This module uses the standard library only, so make can run it as a script before the
project's environment exists::

    python3 modclust/pipeline/deps.py build/deps.mk

writes the make include that ``pipeline.mk`` reads: the stages as
:mod:`modclust.pipeline.stage_table` declares them (``STAGES``, ``STAGE_INPUTS_<stage>``,
``STAGE_NUMBER_<stage>``), what the code says they depend on (``STAGE_LIBRARY_<stage>``,
``REPORT_LIBRARY`` for the HTML report) and ``PRESET_FILES_<preset>``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

PACKAGE = "modclust"
DATA_SUFFIXES = (".mplstyle", ".tplx", ".j2", ".css", ".json", ".yaml")
"""Files beside a package's modules that the code reads (package data)."""

_EXTENDS = re.compile(r"^extends:\s*['\"]?([A-Za-z0-9_.-]+)['\"]?\s*(#.*)?$")


class DependencyError(ValueError):
    """A preset chain or a notebook that the dependencies cannot be read from."""


def imported_modules(source: str) -> set[str]:
    """Dotted names of the ``modclust`` modules ``source`` imports, anywhere in it.

    ``from modclust.a import b`` yields ``modclust.a`` and ``modclust.a.b`` (``b`` may be a
    submodule; a name that is not one is dropped later, when no file has it).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` under the checkout ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(source: str, root: Path) -> list[Path]:
    """Every file of the package that code ``source`` reaches through imports, with package data."""
    todo = [p for n in imported_modules(source) for p in _with_parents(n)]
    seen: set[str] = set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, root)
        if path is None:
            continue
        files.add(path)
        files |= {f for f in path.parent.iterdir() if f.suffix in DATA_SUFFIXES and f.is_file()}
        todo += [p for n in imported_modules(path.read_text()) for p in _with_parents(n)]
    return sorted(files)


def notebook_code(path: Path) -> str:
    """The Python of a notebook's code cells (IPython ``%`` and ``!`` lines left out)."""
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, ValueError, KeyError) as err:
        raise DependencyError(f"cannot read the notebook {path} ({err}): restore it from git") from err
    lines = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            src = "".join(cell["source"])
            lines += [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def stage_library(notebook: Path, root: Path) -> list[Path]:
    """The package files a stage's notebook depends on (see the module docstring)."""
    return import_closure(notebook_code(notebook), root)


def preset_chain(path: Path) -> list[Path]:
    """A preset file and the ones it ``extends`` (``extends: <name>``, a preset in the same
    folder), the preset itself first. A missing base or a cycle is an error naming the chain."""
    chain: list[Path] = []
    while True:
        if path in chain:
            names = " -> ".join(p.stem for p in [*chain, path])
            raise DependencyError(f"presets extend each other in a cycle: {names}; remove one 'extends:'")
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml"))) or "none"
            via = f" (extended by {chain[-1]})" if chain else ""
            raise DependencyError(f"no preset {path}{via}; the presets are: {known}")
        chain.append(path)
        base = next((m.group(1) for m in map(_EXTENDS.match, path.read_text().splitlines()) if m), None)
        if base is None:
            return chain
        path = path.with_name(f"{base}.yaml")


def stage_table(root: Path) -> ModuleType:
    """The table of stages, ``modclust/pipeline/stage_table.py`` under ``root``, loaded from its
    file, not imported: make runs this module as a script, before the package can be imported,
    and every stage's notebook imports this module (through the preset checks), so an import
    would make every stage depend on the table (adding a stage would run all the others again)."""
    path = root / PACKAGE / "pipeline" / "stage_table.py"
    spec = importlib.util.spec_from_file_location("_modclust_stage_table", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _rel(paths: Iterable[Path], root: Path) -> str:
    return " ".join(str(p.relative_to(root)) for p in paths)


def makefile(root: Path) -> str:
    """The make include: the declared stages, each stage's library files, the report's, and each
    preset's chain of files."""
    lines = ["# Generated by modclust/pipeline/deps.py from modclust/pipeline/stage_table.py and the code's "
             "imports. Do not edit."]
    table = stage_table(root)
    lines += table.make_variables(table.STAGES)
    for stage in table.STAGES:
        notebook = root / "notebooks" / f"{stage.name}.ipynb"
        if not notebook.is_file():
            raise DependencyError(f"stage {stage.name} is declared in modclust/pipeline/stage_table.py "
                                  f"but there is no {notebook.relative_to(root)}")
        lines.append(f"STAGE_LIBRARY_{stage.name} := {_rel(stage_library(notebook, root), root)}")
    report = import_closure(f"import {PACKAGE}.pipeline.report", root)
    lines.append(f"REPORT_LIBRARY := {_rel(report, root)}")
    for preset in sorted((root / "presets").glob("*.yaml")):
        try:
            lines.append(f"PRESET_FILES_{preset.stem} := {_rel(preset_chain(preset), root)}")
        except DependencyError:  # left out: the preset check names the broken chain when it is run
            continue
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 modclust/pipeline/deps.py OUT.mk", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parents[2]
    out = Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    try:
        tmp.write_text(makefile(root))
        os.replace(tmp, out)
    except ValueError as err:  # a DependencyError, or a stage table that does not hold together
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        tmp.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
