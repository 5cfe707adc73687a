"""The paper pipeline's runner: one run per build folder at a time, each stage committed whole.

``make paper`` and ``make results`` (pipeline.mk) call it; make still decides which stages are
stale. Its commands:

- ``run PRESET -- COMMAND...``: take the lock of ``build/<preset>`` (a second run waits, naming
  the first), remove what earlier runs left in its ``.tmp/``, check the preset against every
  notebook's parameters, then run COMMAND (make) holding the lock.
- ``stage PRESET STAGE INDEX TOTAL``: execute ``notebooks/<STAGE>.ipynb`` with papermill into a
  fresh temporary folder; only when it succeeds are its outputs moved into place, and last its
  executed notebook, the stage's "finished" marker. A failure names the cell; an interrupt is
  reported as one; the previous results stay until a new set is complete. It prints one line
  per stage (on a terminal, a live one showing the notebook's current loop).
- ``latex PRESET``: compile the paper in ``build/<preset>/paper/`` from a copy of ``paper/``
  and the preset's figures and numbers (with the stages' ``\\input`` lines, written from
  :mod:`modclust.pipeline.stage_table`), so presets never share LaTeX's auxiliary files; the
  PDF goes to ``build/<preset>/paper.pdf``, and the figures and numbers are installed in the
  checkout's ``figures/`` and ``paper/generated/`` (the last preset compiled).
- ``report PRESET [STAGE...]``: the executed notebooks as HTML (:mod:`modclust.pipeline.report`).
- ``provenance PRESET``: each stage of ``build/<preset>`` against the checkout, from the record
  a stage writes when it commits (``<stage>/provenance.json``, :mod:`modclust.pipeline.provenance`):
  "matching", or what differs (package files, notebook, preset values, stages read, datasets);
  exit status 0 only when every stage matches.
- ``launch PRESET STAGE --chunk N --cluster slurm|local`` (added by ``python -m
  modclust.pipeline``, :class:`Command`): train a stage's models as a job array, then run the
  stage on them (:mod:`modclust.pipeline.launch`).
- ``check PRESET``: only the preset's check (keys, types and values, every problem listed);
  ``params PRESET STAGE``: the preset's values for one notebook's parameters, as YAML for
  ``papermill -f`` by hand; ``failed NOTEBOOK``: name an
  executed notebook's failed cell.

Layout of a build folder: ``<stage>.ipynb`` (executed, the marker) and ``<stage>/`` (its
outputs, with ``provenance.json``) per stage, ``paper/`` and ``figures/`` for LaTeX,
``paper.pdf``, ``report/``, ``.lock`` and ``.tmp/``.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

from modclust.core import paths
from modclust.core.io import atomic_dir, write_atomic
from modclust.core.progress import PROGRESS_ENV, read_progress
from modclust.paper.claims import write_claims
from modclust.paper.latex import Macros, number_word, write_text
from modclust.pipeline import provenance
from modclust.pipeline.presets import PIPELINE_PARAMS, PresetError, check_preset, notebook_values, parameters_of
from modclust.pipeline.report import ReportError, write_report
from modclust.pipeline.stage_table import STAGES, paper_inputs
from modclust.pipeline.studies import STUDIES

KERNEL_QUIET = ["--IPKernelApp.log_level=CRITICAL"]
"""The kernel's own log silenced: on a run that succeeds it prints only machinery noise (a
warning that a local kernel talks over TCP without encryption, and "KeyboardInterrupt caught in
kernel" when it is shut down). A notebook's errors still reach its cells, and a kernel that
dies still fails the stage."""

LOCKED_ENV = "MODCLUST_LOCKED_BUILD"
"""Set for the command ``run`` starts: the build folder whose lock that run holds."""


PAPER_STAGES = tuple(s.name for s in STAGES if s.paper)
"""The stages whose ``figures/`` and ``generated/`` the paper reads (declared in
:mod:`modclust.pipeline.stage_table`)."""


class PipelineError(RuntimeError):
    """A stage or a run that cannot go on; the message says why and what to do."""


class Interrupted(PipelineError):
    """Ctrl-C (SIGINT) stopped a stage."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies under it (shorter messages)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


@dataclass(frozen=True)
class Layout:
    """Where a pipeline lives: the checkout by default, a small copy in the tests."""

    root: Path = paths.REPO

    @property
    def build(self) -> Path:
        return self.root / "build"

    def build_dir(self, preset: str) -> Path:
        return _shown(self.build / preset)

    def notebooks(self) -> list[Path]:
        return sorted((self.root / "notebooks").glob("0*.ipynb"))

    def notebook(self, stage: str) -> Path:
        return self.root / "notebooks" / f"{stage}.ipynb"

    def preset_file(self, preset: str) -> Path:
        return _shown(self.root / "presets" / f"{preset}.yaml")

    def check(self, preset: str) -> dict:
        return check_preset(self.preset_file(preset), self.notebooks(), STUDIES)


# -- one run per build folder -----------------------------------------------------------------

@contextmanager
def build_lock(build_dir: Path, wait: bool = True, what: str = "") -> Iterator[int]:
    """Hold ``build_dir/.lock`` (an flock, released when every holder of it exits).

    A second run waits for the first (``wait``) or stops; either way it names the first. The
    lock's file descriptor is yielded so a child process can inherit it.
    """
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(build_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise PipelineError(f"cannot write the build folder {build_dir} ({err.strerror}): "
                            "make it writable, or remove it so the pipeline recreates it") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "another run"
            if not wait:
                raise PipelineError(f"{build_dir} is in use by {holder}: wait for it to finish, "
                                    "or stop it (kill its process id) and run again") from None
            say(f"==> {build_dir} is in use by {holder}: waiting for it to finish (Ctrl-C to stop)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"process {os.getpid()} ({what or ' '.join(sys.argv)}), started {stamp}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def clean_temporaries(build_dir: Path) -> None:
    """Remove what earlier runs left in ``.tmp/`` (call it holding the lock: nobody else writes there)."""
    shutil.rmtree(build_dir / ".tmp", ignore_errors=True)


def run_locked(preset: str, command: Sequence[str], layout: Layout = Layout()) -> int:
    """Check the preset, then run ``command`` holding the lock of ``build/<preset>``."""
    build_dir = layout.build_dir(preset)
    layout.check(preset)
    with build_lock(build_dir, what=f"{' '.join(command)}") as fd:
        clean_temporaries(build_dir)
        env = {**os.environ, LOCKED_ENV: str(build_dir.resolve())}
        proc = subprocess.Popen(list(command), env=env, pass_fds=(fd,))
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # the child got the same SIGINT; let it stop first
                continue


# -- one stage ---------------------------------------------------------------------------------

def failed_cell(notebook: str | os.PathLike[str]) -> str:
    """Name the cell where an executed notebook failed (papermill keeps the partial notebook)."""
    nb = nbformat.read(str(notebook), as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
                count = cell.get("execution_count")
                if out.get("ename") == "KeyboardInterrupt":
                    return f"{notebook}: interrupted in cell {i} (In [{count}]), which begins: {first}"
                return (f"{notebook}: cell {i} (In [{count}]) raised {out.get('ename')}: "
                        f"{out.get('evalue')}\n    the cell begins: {first}")
    return f"{notebook}: no cell holds an error (the kernel died, e.g. killed or out of memory)"


def stage_parameters(preset: str, stage: str, build_dir: Path, out_dir: Path, layout: Layout = Layout(),
                     trained_dir: Path | None = None) -> dict:
    """The preset's values for this notebook's parameters (a section's keys as ``<section>_<key>``,
    :func:`~modclust.pipeline.presets.notebook_values`), with the pipeline's own three, and
    ``trained_dir`` when given (the folder the launcher trained the stage's models into)."""
    values = notebook_values(layout.check(preset))
    declared = parameters_of(layout.notebook(stage))
    values = {**values, "build_dir": str(build_dir), "out_dir": str(out_dir), "preset": preset}
    if trained_dir is not None:
        if "trained_dir" not in declared:
            raise PipelineError(f"notebooks/{stage}.ipynb takes no trained_dir: its models cannot be trained elsewhere")
        values["trained_dir"] = str(trained_dir)
    return {k: v for k, v in values.items() if k in declared}


def notebook_parameters_yaml(preset: str, stage: str, layout: Layout = Layout()) -> str:
    """The preset's values for one notebook's parameters as YAML, for ``papermill -f`` by hand.

    The preset is checked and its ``extends`` chain resolved first; its sections' keys become
    the notebooks' ``<section>_<key>`` parameters (``cnn: {null_draws: 20}`` is
    ``cnn_null_draws: 20``); only the parameters the notebook declares are kept (papermill would
    pass every key, ``extends`` included), and not the pipeline's own ``build_dir``, ``out_dir``
    and ``preset``, which the caller chooses.
    """
    values = notebook_values(layout.check(preset))
    notebook = layout.notebook(stage)
    if not notebook.exists():
        stages = ", ".join(p.stem for p in layout.notebooks())
        raise PipelineError(f"no notebook {_shown(notebook)}: the stages are {stages}")
    declared = parameters_of(notebook)
    kept = {k: v for k, v in values.items() if k in declared and k not in PIPELINE_PARAMS}
    return f"# preset {preset}, the parameters of notebooks/{stage}.ipynb\n" + yaml.safe_dump(kept, sort_keys=False)


def commit_stage(work: Path, build_dir: Path, stage: str, record: dict | None = None) -> None:
    """Move a finished stage from ``work`` into ``build_dir``: outputs first, the marker last.

    ``record``, the stage's provenance (:mod:`modclust.pipeline.provenance`), is written into
    its outputs' folder first, so it moves into place with them. Every step is checked. The old
    outputs are moved aside, not deleted, until the new ones are in place; from the first step
    until the last the stage counts as unfinished (no marker).
    """
    new_out, new_nb = work / stage, work / f"{stage}.ipynb"
    if not new_out.is_dir() or not new_nb.is_file():
        raise PipelineError(f"stage {stage} finished but left no {new_out} or {new_nb}: "
                            f"notebooks/{stage}.ipynb must write its results under out_dir")
    out, marker = build_dir / stage, build_dir / f"{stage}.ipynb"
    previous = work / "previous"
    try:
        if record is not None:
            provenance.write(new_out, record)
        marker.unlink(missing_ok=True)
        if out.exists():
            os.replace(out, previous)
        try:
            os.replace(new_out, out)
        except OSError:
            if previous.exists() and not out.exists():
                os.replace(previous, out)
            raise
        os.replace(new_nb, marker)
    except OSError as err:
        raise PipelineError(f"could not put stage {stage}'s results into {build_dir} ({err}); "
                            f"they are in {work}. Make {build_dir} writable and run again") from err
    shutil.rmtree(work, ignore_errors=True)


def run_stage(preset: str, stage: str, index: int, total: int, layout: Layout = Layout(),
              trained_dir: Path | None = None) -> None:
    """Execute one stage's notebook on the preset and commit it (see the module docstring);
    ``trained_dir``: its models, trained elsewhere (:mod:`modclust.pipeline.launch`)."""
    build_rel = layout.build_dir(preset)
    tmp_root = build_rel / ".tmp"
    try:
        tmp_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{stage}.", dir=tmp_root))
    except OSError as err:
        raise PipelineError(f"cannot write the build folder {build_rel} ({err}): make it writable") from err
    executed = work / f"{stage}.ipynb"
    params = stage_parameters(preset, stage, build_rel, work / stage, layout, trained_dir)
    title = f"==> [{preset}] stage {index}/{total} {stage}"
    start = time.time()
    reads = next((s.reads for s in STAGES if s.name == stage), ())
    try:  # taken before the notebook runs: the code, preset and data it starts from
        record = provenance.stage_record(layout.root, stage, preset, params, reads, build_rel, start)
    except (OSError, SyntaxError, ValueError) as err:
        raise PipelineError(f"==> [{preset}] stage {stage}: its provenance record cannot be taken "
                            f"({type(err).__name__}: {err}); fix the file named and run again") from err
    os.environ[PROGRESS_ENV] = str(work / "progress")  # the kernel inherits it; its bars report there
    try:
        with stage_progress(title, work / "progress"):
            papermill.execute_notebook(str(layout.notebook(stage)), str(executed), parameters=params,
                                       cwd=os.getcwd(), kernel_name="python3", log_output=False,
                                       progress_bar=False, extra_arguments=KERNEL_QUIET)
    except KeyboardInterrupt:
        raise Interrupted(f"==> [{preset}] stage {stage} was interrupted; the stages before it are kept. "
                            "Run the same command again to redo it") from None
    except Exception as err:
        where = failed_cell(executed) if executed.exists() else f"{type(err).__name__}: {err}"
        if not isinstance(err, PapermillExecutionError) and executed.exists():
            where += f"\n    papermill: {type(err).__name__}: {err}"
        raise PipelineError(f"==> [{preset}] stage {stage} FAILED in notebook notebooks/{stage}.ipynb:\n    {where}\n"
                            f"    the partly executed notebook is {executed} (kept until the next run)") from err
    record["wall_s"] = round(time.time() - start, 1)
    commit_stage(work, build_rel, stage, record)
    say(f"{title}: done in {time.time() - start:.0f} s")


@contextmanager
def stage_progress(title: str, progress_file: Path, interval: float = 0.5) -> Iterator[None]:
    """On a terminal, one line that shows the stage's current inner loop (from the progress
    file its notebook's bars write, :mod:`modclust.core.progress`) and the time so far; it is
    erased when the stage ends, which then prints its one line. Nothing when stderr is a file."""
    if not sys.stderr.isatty():
        yield
        return
    stop = threading.Event()

    def show() -> None:
        start = time.time()
        while not stop.wait(interval):
            state = read_progress(progress_file)
            inner = f" · {state[0]} {state[1]:.0f}/{state[2]:.0f}" if state and state[2] else \
                f" · {state[0]}" if state else ""
            line = f"{title}{inner} · {time.time() - start:.0f} s"
            width = shutil.get_terminal_size().columns - 1
            sys.stderr.write("\r" + line[:width].ljust(width))
            sys.stderr.flush()
        sys.stderr.write("\r" + " " * (shutil.get_terminal_size().columns - 1) + "\r")
        sys.stderr.flush()

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def stage_lock(preset: str, layout: Layout = Layout()) -> Iterator[None]:
    """The build folder's lock, unless the ``run`` that started this stage holds it already."""
    build_dir = layout.build_dir(preset)
    if os.environ.get(LOCKED_ENV) == str(build_dir.resolve()):
        yield
    else:
        with build_lock(build_dir):
            yield


# -- the paper ---------------------------------------------------------------------------------

def _replace_dir(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source``, swapped in whole (a reader never sees a mix)."""
    with atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


def _gather(build_dir: Path, stages: Sequence[str], kind: str, pattern: str) -> Path:
    """The stages' ``figures/`` or ``generated/`` merged into a folder in ``build_dir/.tmp``."""
    merged = Path(tempfile.mkdtemp(prefix=f"{kind}.", dir=build_dir / ".tmp"))
    for stage in stages:
        if not (build_dir / f"{stage}.ipynb").exists():
            raise PipelineError(f"{build_dir} has no finished stage {stage}: run make results PRESET={build_dir.name}")
        for f in sorted((build_dir / stage / kind).glob(pattern)):
            shutil.copy2(f, merged / f.name)
    return merged


def compile_paper(preset: str, layout: Layout = Layout(),
                  latexmk: Sequence[str] = ("latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                                            "-quiet", "main.tex")) -> Path:
    """LaTeX in ``build/<preset>/paper/``; returns ``build/<preset>/paper.pdf``."""
    build_dir = layout.build_dir(preset)
    stages = list(PAPER_STAGES)
    (build_dir / ".tmp").mkdir(parents=True, exist_ok=True)
    figures = _gather(build_dir, stages, "figures", "*.pdf")
    generated = _gather(build_dir, stages, "generated", "*")
    write_claims(generated)  # the primary family, corrected over every stage's records
    build = Macros(source="modclust.pipeline.stages")
    build.add("NStagesText", number_word(len(STAGES)))
    build.write(generated / "build.tex")
    for name, tex in paper_inputs().items():  # the stages' macro files and sections, in their order
        write_text(generated / name, tex)
    tex_dir = build_dir / "paper"
    tex_dir.mkdir(exist_ok=True)
    paper = layout.root / "paper"
    for src in sorted(paper.glob("*.tex")) + sorted(paper.glob("*.bib")):
        shutil.copy2(src, tex_dir / src.name)
    _replace_dir(generated, tex_dir / "generated")
    _replace_dir(figures, build_dir / "figures")
    log = build_dir / "latexmk.log"
    with open(log, "w") as out:
        done = subprocess.run(list(latexmk), cwd=tex_dir, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        main_log = tex_dir / "main.log"
        errors = [ln for ln in main_log.read_text(errors="replace").splitlines() if ln.startswith("!")] \
            if main_log.exists() else []
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise PipelineError("\n".join(tail + errors) + f"\n==> [{preset}] LaTeX failed: see {main_log}")
    pdf = write_atomic(build_dir / "paper.pdf", lambda tmp: shutil.copyfile(tex_dir / "main.pdf", tmp))
    install_paper_inputs(build_dir, layout)
    shutil.rmtree(figures, ignore_errors=True)
    shutil.rmtree(generated, ignore_errors=True)
    return pdf


def install_paper_inputs(build_dir: Path, layout: Layout = Layout()) -> None:
    """Copy a compiled preset's figures and numbers into the checkout's ``figures/`` and
    ``paper/generated/``, where ``paper/main.tex`` reads them; one preset at a time."""
    figures = layout.root / "figures"
    with build_lock(layout.build, what=f"installing {build_dir}'s figures"):
        for old in figures.glob("*.pdf"):
            old.unlink()
        for f in sorted((build_dir / "figures").glob("*.pdf")):
            write_atomic(figures / f.name, lambda tmp, f=f: shutil.copyfile(f, tmp))
        _replace_dir(build_dir / "paper" / "generated", layout.root / "paper" / "generated")


# -- command line ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    """A command a module above this one adds to :func:`main` (``python -m modclust.pipeline`` adds
    :mod:`modclust.pipeline.launch`'s): its name and help, its arguments on its subparser, and
    what it runs (``run(args, layout)``)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Layout], int | None]


def main(argv: Sequence[str] | None = None, more: Sequence[Command] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m modclust.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=paths.REPO,
                        help="the folder holding notebooks/, presets/, paper/ and build/ (the checkout)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="check the preset, hold the build folder's lock, run COMMAND")
    run.add_argument("preset")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command (make ...)")
    stage = sub.add_parser("stage", help="execute one stage's notebook and commit its results")
    stage.add_argument("preset")
    stage.add_argument("stage")
    stage.add_argument("index", type=int)
    stage.add_argument("total", type=int)
    latex = sub.add_parser("latex", help="compile build/PRESET/paper.pdf")
    latex.add_argument("preset")
    check = sub.add_parser("check", help="check a preset against the notebooks' parameters")
    check.add_argument("preset")
    params = sub.add_parser("params", help="print a preset's values for one notebook's parameters as YAML "
                                           "(for papermill -f, by hand)")
    params.add_argument("preset")
    params.add_argument("stage", help="a notebook's name, e.g. 01_train")
    failed = sub.add_parser("failed", help="name the failed cell of an executed notebook")
    failed.add_argument("notebook")
    report = sub.add_parser("report", help="write build/PRESET/report/, the executed notebooks as HTML pages")
    report.add_argument("preset")
    report.add_argument("stages", nargs="*", metavar="STAGE",
                        help="the stages to include (default: every executed notebook in build/PRESET)")
    prov = sub.add_parser("provenance", help="check each stage of build/PRESET against this checkout (exit "
                                             "status 0 when every stage matches)")
    prov.add_argument("preset")
    for command in more:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    args = parser.parse_args(argv)
    layout = Layout(args.root.resolve())
    actions: dict[str, Callable[[], int | None]] = {
        "run": lambda: run_locked(args.preset, args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd, layout),
        "stage": lambda: _locked_stage(args, layout),
        "latex": lambda: _no_result(compile_paper(args.preset, layout)),
        "check": lambda: say(f"{layout.preset_file(args.preset)}: {len(notebook_values(layout.check(args.preset)))} "
                             "settings, all known, well-typed and valid"),
        "params": lambda: print(notebook_parameters_yaml(args.preset, args.stage, layout), end=""),
        "failed": lambda: print(failed_cell(args.notebook)),
        "report": lambda: say(f"==> [{args.preset}] report: "
                              f"{write_report(layout.build_dir(args.preset), args.preset, args.stages or None)}"),
        "provenance": lambda: check_provenance(args.preset, layout),
        **{command.name: functools.partial(command.run, args, layout) for command in more},
    }
    try:
        return actions[args.command]() or 0
    except (PipelineError, PresetError, ReportError) as err:
        say(f"error: {err}" if isinstance(err, PresetError) else str(err))
        return 130 if isinstance(err, Interrupted) else 1
    except KeyboardInterrupt:
        say("==> interrupted")
        return 130


def check_provenance(preset: str, layout: Layout = Layout()) -> int:
    """Print each stage's finding (:func:`modclust.pipeline.provenance.compare`); 0 when all match."""
    build_dir = layout.build_dir(preset)
    findings = provenance.compare(build_dir, preset, layout.root)
    print(f"==> [{preset}] {build_dir} against the checkout {layout.root}:")
    for finding in findings:
        print(finding)
    return 0 if all(f.matching for f in findings) else 1


def _no_result(_: object) -> None:
    """A command whose value is not an exit code (success is 0)."""


def _locked_stage(args: argparse.Namespace, layout: Layout) -> None:
    with stage_lock(args.preset, layout):
        run_stage(args.preset, args.stage, args.index, args.total, layout)


if __name__ == "__main__":
    raise SystemExit(main())
