"""Which code made a result: each stage's record of its inputs, and a check against a checkout.

make decides what reruns by file times, which say nothing once a build folder is copied to
another machine or the checkout is switched to another commit. So when a stage commits
(:func:`modclust.pipeline.stages.commit_stage`) it writes ``build/<preset>/<stage>/provenance.json``
inside its outputs' folder before that folder is moved into place: the record and the results
arrive together, or neither does, and a stage that fails leaves none. The record
(:func:`stage_record`) holds, taken when the stage started:

- ``notebook``, ``library`` and ``preset_files``: sha256 of the stage's notebook, of every file
  of the package it imports at any depth (the list make uses,
  :func:`modclust.pipeline.deps.stage_library`) and of the preset with those it ``extends``,
  each by its path in the checkout;
- ``parameters``: the preset's values the notebook received (not the pipeline's own
  ``build_dir``, ``out_dir`` and ``preset``, which has its own field);
- ``upstream``: each stage it reads (from the table of stages) with the sha256 of that stage's
  own record (None: it had none), so a stage read that was built again later shows;
- ``datasets``: the md5 of each raw ``.gz`` archive (:mod:`modclust.core.data`) of the datasets
  its parameters name (``dataset``, ``cnn_datasets``) under the data root; a stage that names
  none takes those of the stages it reads, or every dataset present when it reads none (or none
  of them has a record);
- ``python``, ``torch``, ``device``, ``git`` (the commit and whether the checkout's files
  differed from it; None outside a git checkout), ``started`` (UTC) and ``wall_s``.

:func:`compare` checks a build folder against a checkout, stage by stage in the table's
order: what differs between the record and the files and preset values there now (package
files by path, the notebook, the preset values, the datasets' archives, a stage read that was
rebuilt, is stale or has no record), "matching" when nothing does, "no record" for a stage built
before records were kept, "not built" for one without its executed notebook. A preset file edited without a change to the values the notebook
receives (a comment, another stage's key) does not count; nor do versions, device or commit,
which are shown, not compared::

    make provenance PRESET=smoke
    python -m modclust.pipeline provenance smoke     # exit status 0 when every stage matches

:func:`read` and :func:`summary_rows` give a record and its label/value rows to the HTML report.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from modclust.core import paths
from modclust.core.data import DATASETS, RAW_FILES, RAW_MD5
from modclust.core.io import write_json
from modclust.pipeline import deps
from modclust.pipeline.presets import PIPELINE_PARAMS, PresetError, load_preset, notebook_values, parameters_of

FILE = "provenance.json"
"""The record's name inside a stage's folder."""

FORMAT = 1

MATCHING, STALE, NO_RECORD, NOT_BUILT = "matching", "stale", "no record", "not built"
_UPSTREAM = {STALE: "is stale", NO_RECORD: "has no record", NOT_BUILT: "is not built"}


# -- hashes ------------------------------------------------------------------------------------

def _digest(path: Path, algorithm: str = "sha256") -> str | None:
    """The hex digest of a file's bytes, None when it is not there."""
    h = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def _hashes(files: Sequence[Path], root: Path) -> dict[str, str | None]:
    """sha256 of each file, by its path under ``root``."""
    return {f.relative_to(root).as_posix(): _digest(f) for f in files}


def _notebook(root: Path, stage: str) -> Path:
    return root / "notebooks" / f"{stage}.ipynb"


def _preset_file(root: Path, preset: str) -> Path:
    return root / "presets" / f"{preset}.yaml"


# -- datasets ----------------------------------------------------------------------------------

def _named_datasets(parameters: Mapping[str, Any]) -> set[str] | None:
    """The datasets a stage's parameters name (``dataset``, ``<section>_datasets``), None when
    no parameter names any."""
    values = [v for k, v in parameters.items() if k.split("_")[-1] in ("dataset", "datasets")]
    if not values:
        return None
    named = [n for v in values for n in ([v] if isinstance(v, str) else v)]
    return {n for n in named if n in DATASETS}


def _present_datasets() -> set[str]:
    root = paths.data_root()
    return {n for n, spec in DATASETS.items() if any((root / spec.folder / "raw" / f).is_file() for f in RAW_FILES)}


def _dataset_md5s(names: set[str]) -> dict[str, dict[str, str | None]]:
    """Each dataset's raw archives' md5 under the data root, by path there (None: missing)."""
    root = paths.data_root()
    return {n: {f"{DATASETS[n].folder}/raw/{f}": _digest(root / DATASETS[n].folder / "raw" / f, "md5")
                for f in RAW_FILES} for n in sorted(names)}


# -- the record --------------------------------------------------------------------------------

def _git(root: Path) -> dict[str, Any] | None:
    """The checkout's commit and whether its files differ from it (untracked ones too, ignored
    ones not); None when ``root`` is not a git checkout or git cannot tell."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD") if (root / ".git").exists() else None
    if commit is None:
        return None
    status = git("status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def _device(parameters: Mapping[str, Any]) -> str:
    """The ``device`` parameter and the machine's: its GPU when CUDA may be used, else its CPU."""
    asked = str(parameters.get("device", "cpu"))
    if asked != "cpu" and torch.cuda.is_available():
        return f"{asked}: {torch.cuda.get_device_name()}"
    return f"{asked}: CPU ({platform.machine()}, {os.cpu_count()} cores)"


def stage_record(root: str | os.PathLike[str], stage: str, preset: str, parameters: Mapping[str, Any],
           reads: Sequence[str], build_dir: str | os.PathLike[str], started: float,
           wall_s: float | None = None) -> dict[str, Any]:
    """The record of stage ``stage`` of ``preset`` in the checkout ``root`` (see the module
    docstring), taken before its notebook runs: ``parameters`` are the values it is given,
    ``reads`` the stages it reads, whose records are in ``build_dir/<stage>/``; ``started`` a
    time stamp (:func:`time.time`). ``wall_s`` is set when the stage is done."""
    root, build_dir = Path(root).resolve(), Path(build_dir)
    notebook = _notebook(root, stage)
    given = {k: v for k, v in parameters.items() if k not in PIPELINE_PARAMS}
    upstream = {r: read(build_dir / r) for r in reads}
    datasets = _named_datasets(given)
    if datasets is None:  # those of the stages it reads, or (none read, or none with a record) all present
        datasets = {n for rec in upstream.values() if rec for n in rec.get("datasets", {})} \
            if any(upstream.values()) else _present_datasets()
    return {
        "format": FORMAT,
        "stage": stage,
        "preset": preset,
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "wall_s": wall_s,
        "notebook": _hashes([notebook], root),
        "library": _hashes(deps.stage_library(notebook, root), root),
        "preset_files": _hashes(deps.preset_chain(_preset_file(root, preset)), root),
        "parameters": given,
        "upstream": {r: _digest(build_dir / r / FILE) for r in reads},
        "datasets": _dataset_md5s(datasets),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "device": _device(parameters),
        "git": _git(root),
    }


def write(stage_dir: str | os.PathLike[str], rec: Mapping[str, Any]) -> Path:
    """Write ``rec`` as ``stage_dir/provenance.json`` (atomically)."""
    return write_json(Path(stage_dir) / FILE, rec)


def read(stage_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A stage folder's record; None when it has none (built before records were kept) or the
    file cannot be read as one."""
    try:
        rec = json.loads((Path(stage_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "none"


def _combined(hashes: Mapping[str, str | None]) -> str:
    """One sha256 for a set of files: of their sorted "path hash" lines."""
    lines = "".join(f"{p} {h}\n" for p, h in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s} s" if minutes else f"{seconds:.1f} s"


def summary_rows(rec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A record as (label, value) rows of text, for a page of the report."""
    git = rec.get("git")
    commit = "not a git checkout" if not git else \
        git["commit"][:12] + (" with uncommitted changes" if git.get("dirty") else "")
    notebook = rec.get("notebook", {})
    library = rec.get("library", {})
    params = rec.get("parameters", {})
    upstream = rec.get("upstream", {})
    datasets = []
    for name, files in rec.get("datasets", {}).items():
        folder = DATASETS[name].folder if name in DATASETS else ""
        known = RAW_MD5.get(folder, {})
        odd = [p for p, md5 in files.items() if md5 != known.get(p.rsplit("/", 1)[-1])]
        datasets.append(f"{name} (" + (f"differ from the published md5: {', '.join(odd)}" if odd
                                       else f"{len(files)} archives, the published md5s") + ")")
    return [
        ("Stage", str(rec.get("stage"))),
        ("Preset", f"{rec.get('preset')}: " + ", ".join(rec.get("preset_files", {}))),
        ("Started", str(rec.get("started")).replace("T", " ").replace("+00:00", " UTC")),
        ("Wall time", _duration(rec.get("wall_s"))),
        ("Git commit", commit),
        ("Python, torch", f"{rec.get('python')}, torch {rec.get('torch')}"),
        ("Device", str(rec.get("device"))),
        ("Notebook", ", ".join(f"{p} (sha256 {_short(h)})" for p, h in notebook.items())),
        ("Package files", f"{len(library)} files, combined sha256 {_short(_combined(library))}"),
        ("Preset values", ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items()) or "none"),
        ("Stages read", ", ".join(f"{s} (record sha256 {_short(h)})" if h else f"{s} (no record)"
                                  for s, h in upstream.items()) or "none"),
        ("Datasets", "; ".join(datasets) or "none"),
    ]


# -- a build folder against a checkout ---------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One stage of a build folder against a checkout: its status (matching, stale, no record,
    not built) and what differs."""

    stage: str
    status: str
    differences: tuple[str, ...] = ()

    @property
    def matching(self) -> bool:
        return self.status == MATCHING

    def __str__(self) -> str:
        return "\n".join([f"{self.stage}: {self.status}", *(f"    {d}" for d in self.differences)])


def _stages(root: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The checkout's stages and what each reads: its table of stages, or (a checkout without
    one) its notebooks, reading nothing."""
    if (root / deps.PACKAGE / "pipeline" / "stage_table.py").is_file():
        return [(s.name, tuple(s.reads)) for s in deps.stage_table(root).STAGES]
    return [(p.stem, ()) for p in sorted((root / "notebooks").glob("0*.ipynb"))]


def _file_differences(what: str, recorded: Mapping[str, str | None], now: Mapping[str, str | None]) -> list[str]:
    """``what`` changed, gone, or (package files) no longer or newly imported, by path."""
    out = []
    for path in sorted(set(recorded) | set(now)):
        if path not in now:
            out.append(f"{what} no longer imported: {path}")
        elif path not in recorded:
            out.append(f"{what} now imported: {path}")
        elif recorded[path] != now[path]:
            out.append(f"{what} {'changed' if now[path] else 'gone'}: {path}")
    return out


def _value_differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    out = []
    for key in [*recorded, *(k for k in now if k not in recorded)]:
        if key not in now:
            out.append(f"preset value {key} no longer given (was {json.dumps(recorded[key])})")
        elif key not in recorded:
            out.append(f"preset value {key} now given: {json.dumps(now[key])}")
        elif recorded[key] != now[key]:
            out.append(f"preset value {key}: {json.dumps(recorded[key])} recorded, {json.dumps(now[key])} now")
    return out


def _dataset_differences(recorded: Mapping[str, Mapping[str, str | None]]) -> list[str]:
    root = paths.data_root()
    out = []
    for files in recorded.values():
        for path, md5 in files.items():
            now = _digest(root / path, "md5")
            if now != md5:
                out.append(f"dataset file {'gone' if now is None else 'changed'}: {path} "
                           f"(md5 {_short(md5)} recorded, {_short(now)} now)")
    return out


def _stage_differences(root: Path, build_dir: Path, stage: str, reads: tuple[str, ...], rec: Mapping[str, Any],
                       preset_values: dict[str, Any] | str, found: Mapping[str, Finding]) -> list[str]:
    notebook = _notebook(root, stage)
    out = _file_differences("notebook", rec.get("notebook", {}), _hashes([notebook], root))
    if notebook.is_file():
        try:
            library = _hashes(deps.stage_library(notebook, root), root)
        except (SyntaxError, deps.DependencyError) as err:
            out.append(f"the package files cannot be listed: {err}")
        else:
            out += _file_differences("package file", rec.get("library", {}), library)
        if isinstance(preset_values, str):
            out.append(preset_values)
        else:
            try:
                declared = parameters_of(notebook)
            except (PresetError, ValueError, SyntaxError) as err:
                out.append(f"the notebook's parameters cannot be read: {err}")
            else:
                now = {k: v for k, v in preset_values.items() if k in declared and k not in PIPELINE_PARAMS}
                out += _value_differences(rec.get("parameters", {}), now)
    upstream = rec.get("upstream", {})
    if tuple(upstream) != reads:
        out.append(f"reads {', '.join(reads) or 'no stage'} now, recorded {', '.join(upstream) or 'none'}")
    for r in reads:
        if r in found and not found[r].matching:
            out.append(f"upstream {r} {_UPSTREAM[found[r].status]}")
        elif r in upstream and upstream[r] != _digest(build_dir / r / FILE):
            out.append(f"upstream {r} was built again after this stage (its record differs)")
    return out + _dataset_differences(rec.get("datasets", {}))


def compare(build_dir: str | os.PathLike[str], preset: str, checkout_root: str | os.PathLike[str]) -> list[Finding]:
    """Each stage of the checkout's table of stages, in order, against the build folder
    ``build_dir`` (``build/<preset>``) of ``preset``: what differs between its record and the
    checkout ``checkout_root`` now (see the module docstring). The datasets are those of the
    data root (:func:`modclust.core.paths.data_root`)."""
    root, build_dir = Path(checkout_root).resolve(), Path(build_dir)
    try:
        preset_values: dict[str, Any] | str = notebook_values(load_preset(_preset_file(root, preset)))
    except (PresetError, deps.DependencyError, OSError) as err:
        preset_values = f"the preset's values cannot be read: {err}"
    found: dict[str, Finding] = {}
    for stage, reads in _stages(root):
        if not (build_dir / f"{stage}.ipynb").is_file():
            found[stage] = Finding(stage, NOT_BUILT)
            continue
        rec = read(build_dir / stage)
        if rec is None:
            why = "its provenance.json cannot be read" if (build_dir / stage / FILE).exists() else \
                "built before provenance records were kept"
            found[stage] = Finding(stage, NO_RECORD, (why,))
            continue
        differences = _stage_differences(root, build_dir, stage, reads, rec, preset_values, found)
        found[stage] = Finding(stage, STALE if differences else MATCHING, tuple(differences))
    return list(found.values())
