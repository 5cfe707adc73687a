"""The pipeline's runner under faults: two runs at once, a failing or interrupted stage, a move
that fails, mistyped presets, LaTeX per preset. A tiny project (one or two notebooks that sleep
and write a file) stands in for the paper's, run by real processes as make runs them."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from modclust.core import paths
from modclust.paper import claims
from modclust.pipeline import stages as pipeline
from modclust.pipeline.stage_table import paper_inputs
from modclust.pipeline.stages import Layout, PipelineError
from modclust.pipeline.presets import (PresetError, check_preset, load_preset, notebook_values, parameter_name,
                                      parameters_of, pipeline_parameters, setting_types, type_error)
from modclust.pipeline.studies import STUDIES
from conftest import write_notebook

REPO = Path(__file__).resolve().parent.parent

STAGE_CODE = """\
import time
from pathlib import Path
if delay:  # a marker beside out_dir, in the stage's temporary folder: the kernel is in this cell
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    (Path(out_dir).parent / "sleeping").write_text("")
time.sleep(delay)
if fail:
    raise RuntimeError("the stage broke on purpose")
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "result.txt").write_text(f"{preset} {tag}")
"""


@pytest.fixture
def project(tmp_path: Path) -> Layout:
    """notebooks/01_work.ipynb (sleeps ``delay``, then writes out_dir/result.txt) and preset t."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "presets").mkdir()
    write_notebook(tmp_path / "notebooks" / "01_work.ipynb",
              'delay: float = 0.0  # seconds to sleep\nfail: bool = False  # raise instead of writing\n'
              'tag: str = "a"  # written into the result\nbuild_dir: str = "build/manual"  # build folder\n'
              'preset: str = "manual"  # preset name\nout_dir: str = "build/manual/01_work"  # outputs',
              STAGE_CODE)
    (tmp_path / "presets" / "t.yaml").write_text("delay: 0.0\ntag: a\n")
    return Layout(tmp_path)


def _cli(layout: Layout, *args: str, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "modclust.pipeline", "--root", str(layout.root), *args]
    return subprocess.Popen(cmd, cwd=layout.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TQDM_DISABLE": "1"}, **kw)


def _stage_via_run(layout: Layout, preset: str = "t") -> list[str]:
    """The arguments make uses: ``run`` holding the lock, around the ``stage`` command."""
    return ["run", preset, "--", sys.executable, "-m", "modclust.pipeline", "--root", str(layout.root),
            "stage", preset, "01_work", "1", "1"]


def _finished(layout: Layout, preset: str = "t") -> str:
    build = layout.build / preset
    assert (build / "01_work.ipynb").is_file(), "the stage's marker is in place"
    return (build / "01_work" / "result.txt").read_text()


# -- two runs at once --------------------------------------------------------------------------

def test_a_second_run_waits_for_the_first_and_nothing_is_lost(project):
    (project.root / "presets" / "t.yaml").write_text("delay: 4.0\ntag: a\n")
    first = _cli(project, *_stage_via_run(project))
    time.sleep(1.5)  # the first holds the lock and is inside its stage
    second = _cli(project, *_stage_via_run(project))
    out1, _ = first.communicate(timeout=120)
    out2, _ = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, out1 + out2
    assert "is in use by process" in out2 and "waiting for it to finish" in out2, out2
    assert "IPKernelApp" not in out1 + out2, "no kernel machinery noise on a run that succeeds"
    assert _finished(project) == "t a"
    assert not list((project.build / "t" / ".tmp").glob("*")), "no run left temporaries"


def test_stages_run_directly_take_the_lock_too(project):
    """A stage target made by hand (make build/t/01_work.ipynb) still cannot trample a run."""
    (project.root / "presets" / "t.yaml").write_text("delay: 3.0\ntag: a\n")
    runs = [_cli(project, "stage", "t", "01_work", "1", "1") for _ in range(2)]
    outs = [r.communicate(timeout=120)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    assert any("waiting for it to finish" in o for o in outs), outs
    assert _finished(project) == "t a"


def test_the_lock_names_its_holder_and_can_refuse(project):
    build = project.build / "t"
    with pipeline.build_lock(build, what="make paper PRESET=t"):
        with pytest.raises(PipelineError, match=r"in use by process \d+ \(make paper PRESET=t\)"):
            with pipeline.build_lock(build, wait=False):
                pass
    with pipeline.build_lock(build, wait=False):  # released
        pass


# -- a stage that fails, is interrupted, or cannot be moved into place ------------------------

def _run_ok(project: Layout, tag: str) -> None:
    (project.root / "presets" / "t.yaml").write_text(f"tag: {tag}\n")
    done = _cli(project, *_stage_via_run(project))
    out, _ = done.communicate(timeout=120)
    assert done.returncode == 0, out


def test_a_failing_stage_names_its_cell_and_keeps_the_previous_results(project):
    _run_ok(project, "old")
    (project.root / "presets" / "t.yaml").write_text("tag: new\nfail: true\n")
    (project.root / "notebooks" / "01_work.ipynb").touch()
    done = _cli(project, *_stage_via_run(project))
    out, _ = done.communicate(timeout=120)
    assert done.returncode != 0
    assert "stage 01_work FAILED" in out and "RuntimeError: the stage broke on purpose" in out, out
    assert "the partly executed notebook is" in out
    assert _finished(project) == "t old"


def test_an_interrupt_is_reported_as_one_and_keeps_the_previous_results(project):
    _run_ok(project, "old")
    (project.root / "presets" / "t.yaml").write_text("tag: new\ndelay: 30.0\n")
    # A job started in the background by a non-interactive shell (nohup, `&`) inherits SIGINT as
    # ignored, and Python then never turns it into KeyboardInterrupt: give the child the terminal's default.
    run = _cli(project, *_stage_via_run(project), start_new_session=True,
               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not list((project.build / "t" / ".tmp").glob("01_work.*/sleeping")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # the kernel is in the sleeping cell (on a loaded machine it can take seconds to get there)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    out, _ = run.communicate(timeout=120)
    assert run.returncode != 0
    assert "interrupted" in out and "may have died" not in out, out
    assert _finished(project) == "t old"


def test_a_move_that_fails_fails_the_stage_and_keeps_the_old_outputs(project, monkeypatch):
    _run_ok(project, "old")
    build = project.build / "t"
    work = build / ".tmp" / "01_work.test"
    (work / "01_work").mkdir(parents=True)
    (work / "01_work" / "result.txt").write_text("t new")
    (work / "01_work.ipynb").write_text("{}")
    real_replace = os.replace

    def failing(src, dst):
        if Path(src) == work / "01_work":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(pipeline.os, "replace", failing)
    with pytest.raises(PipelineError, match="could not put stage 01_work's results"):
        pipeline.commit_stage(work, build, "01_work")
    assert (build / "01_work" / "result.txt").read_text() == "t old", "the old outputs are back"
    assert not (build / "01_work.ipynb").exists(), "the stage is not marked finished"


def test_a_stage_that_writes_nothing_is_not_finished(project):
    work = project.build / "t" / ".tmp" / "01_work.empty"
    work.mkdir(parents=True)
    (work / "01_work.ipynb").write_text("{}")
    with pytest.raises(PipelineError, match="must write its results under out_dir"):
        pipeline.commit_stage(work, project.build / "t", "01_work")


def test_a_new_run_removes_what_earlier_runs_left(project):
    stale = project.build / "t" / ".tmp" / "01_work.dead"
    stale.mkdir(parents=True)
    (stale / "big.tmp").write_bytes(b"x" * 1000)
    _run_ok(project, "a")
    assert not stale.exists()


def test_failed_cell_names_the_cell_or_the_interrupt(tmp_path):
    nb = nbformat.v4.new_notebook()
    ok = nbformat.v4.new_code_cell("x = 1")
    bad = nbformat.v4.new_code_cell("# load the data\ny = 1 / 0", execution_count=2)
    bad.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]
    nb.cells = [ok, bad]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    msg = pipeline.failed_cell(path)
    assert "cell 1 (In [2])" in msg and "ZeroDivisionError" in msg and "y = 1 / 0" in msg
    bad.outputs = [nbformat.v4.new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])]
    nbformat.write(nb, path)
    assert "interrupted in cell 1" in pipeline.failed_cell(path)
    bad.outputs = []
    nbformat.write(nb, path)
    assert "the kernel died" in pipeline.failed_cell(path)


# -- LaTeX in each preset's own folder ---------------------------------------------------------

FAKE_LATEXMK = """\
import sys, time
from pathlib import Path
time.sleep(float(sys.argv[1]))
numbers = Path("generated/numbers.tex").read_text()
Path("main.aux").write_text(numbers)
Path("main.pdf").write_text("PDF " + numbers)
"""


def _finished_stage5(layout: Layout, preset: str, text: str) -> None:
    """Finished paper stages (those whose figures and numbers the paper reads, from the table of stages)."""
    build = layout.build / preset
    for stage in pipeline.PAPER_STAGES:
        (build / stage / "figures").mkdir(parents=True)
        (build / stage / "generated").mkdir(parents=True)
        (build / f"{stage}.ipynb").write_text("{}")
    (build / "05_numbers" / "figures" / "fig.pdf").write_text(f"figure {text}")
    (build / "05_numbers" / "generated" / "numbers.tex").write_text(text)
    # the primary comparisons' records, here none measured (the paper is compiled with their verdicts)
    claims.write_records(build / "05_numbers" / "generated" / "claims_05_numbers.json",
                         [claims.not_measured(d.key, "a fake stage") for d in claims.PRIMARY])
    (layout.root / "presets" / f"{preset}.yaml").write_text("tag: a\n")


def test_two_presets_compile_at_once_without_sharing_latex_files(project):
    (project.root / "paper").mkdir()
    (project.root / "paper" / "main.tex").write_text("\\input{generated/numbers.tex}\n")
    (project.root / "figures").mkdir()
    fake = project.root / "fake_latexmk.py"
    fake.write_text(FAKE_LATEXMK)
    for preset in ("p1", "p2"):
        _finished_stage5(project, preset, f"numbers of {preset}")
    code = ("import sys; from pathlib import Path; from modclust.pipeline import stages as pipeline; "
            "pipeline.compile_paper(sys.argv[1], pipeline.Layout(Path(sys.argv[2])), "
            "latexmk=[sys.executable, sys.argv[3], sys.argv[4]])")
    runs = [subprocess.Popen([sys.executable, "-c", code, p, str(project.root), str(fake), d], cwd=project.root)
            for p, d in (("p1", "2.0"), ("p2", "0.5"))]
    assert [r.wait(timeout=120) for r in runs] == [0, 0]
    for preset in ("p1", "p2"):
        build = project.build / preset
        assert (build / "paper.pdf").read_text() == f"PDF numbers of {preset}"
        assert (build / "paper" / "main.aux").read_text() == f"numbers of {preset}"
        assert (build / "figures" / "fig.pdf").read_text() == f"figure numbers of {preset}"
        for name, tex in paper_inputs().items():  # the stages' \input lines, from the table
            assert (build / "paper" / "generated" / name).read_text() == tex
    assert not list((project.root / "paper").glob("*.aux")), "nothing is compiled in paper/"
    installed = (project.root / "paper" / "generated" / "numbers.tex").read_text()
    assert installed in ("numbers of p1", "numbers of p2")
    assert (project.root / "figures" / "fig.pdf").read_text() == f"figure {installed}", "one preset's set, whole"


def test_latex_errors_name_the_log(project):
    (project.root / "paper").mkdir()
    (project.root / "paper" / "main.tex").write_text("x")
    (project.root / "figures").mkdir()
    _finished_stage5(project, "p1", "n")
    with pytest.raises(PipelineError, match=r"LaTeX failed: see .*p1/paper/main.log"):
        pipeline.compile_paper("p1", project, latexmk=[sys.executable, "-c", "raise SystemExit(1)"])
    assert not (project.build / "p1" / "paper.pdf").exists()


# -- presets -----------------------------------------------------------------------------------

NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))


def test_sections_merge_key_by_key_through_extends(tmp_path, monkeypatch):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "base.yaml").write_text("epochs: 3\ncnn:\n  null_draws: 20\n  seeds: [0, 1]\n"
                                                    "modadd:\n  p: 23\n")
    (tmp_path / "presets" / "child.yaml").write_text("extends: base\ncnn:\n  null_draws: 2\n")
    merged = {"epochs": 3, "cnn": {"null_draws": 2, "seeds": [0, 1]}, "modadd": {"p": 23}}
    assert load_preset(tmp_path / "presets" / "child.yaml") == merged
    assert check_preset(tmp_path / "presets" / "child.yaml", NOTEBOOKS, STUDIES) == merged
    assert notebook_values(merged) == {"epochs": 3, "cnn_null_draws": 2, "cnn_seeds": [0, 1], "modadd_p": 23}
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    values = pipeline.stage_parameters("child", "07_cnn", Path("b"), Path("o"), pipeline.Layout(tmp_path))
    assert values == {"cnn_null_draws": 2, "cnn_seeds": [0, 1], "build_dir": "b", "out_dir": "o"}


STUDY_NOTEBOOKS = {None: [f"0{i}" for i in range(1, 7)], "cnn": ["07"], "modadd": ["08"]}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebooks_parameter_defaults_are_the_settings_defaults(path):
    """One home for every default: a notebook's parameter that is a study's setting has the
    dataclass field's default and type; notebooks 07 and 08 declare every field of theirs."""
    declared = parameters_of(path)
    for section, cls in STUDIES.items():
        types = setting_types(cls)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, default in defaults.items():
            p = declared.get(parameter_name(section, key))
            if p is None:
                assert section is None or path.stem[:2] not in STUDY_NOTEBOOKS[section], \
                    f"{path.stem} does not declare {parameter_name(section, key)}"
                continue
            expected = list(default) if isinstance(default, tuple) else default
            assert (p.type, p.default) == (types[key], expected), f"{path.stem}: {p.name}"
            assert type(p.default) is type(expected), f"{path.stem}: {p.name}: {p.default!r} vs {expected!r}"


def test_every_setting_is_some_notebooks_parameter_and_the_paper_preset_states_the_defaults():
    declared = pipeline_parameters(NOTEBOOKS)
    for section, cls in STUDIES.items():
        for key in setting_types(cls):
            assert parameter_name(section, key) in declared, f"no notebook reads {section or ''} {key}"
    paper = load_preset(REPO / "presets" / "paper.yaml")
    for section, cls in STUDIES.items():
        values = paper if section is None else paper[section]
        defaults = cls().to_dict()
        assert {k: v for k, v in values.items() if k not in STUDIES} == {k: defaults[k] for k in values
                                                                           if k not in STUDIES}


@pytest.mark.parametrize("preset", sorted((REPO / "presets").glob("*.yaml")), ids=lambda p: p.stem)
def test_the_committed_presets_pass(preset):
    assert check_preset(preset, NOTEBOOKS, STUDIES)


def test_a_mistaken_preset_stops_make_before_anything_runs(tmp_path):
    """``make results`` with a typo stops at once with the preset check, building nothing."""
    preset = REPO / "presets" / "zz_typo_test.yaml"
    preset.write_text("n_cluster: 8\n")
    # this interpreter, and a set-up marker of its own: make must not set up (pip install) an environment
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    try:
        done = subprocess.run(["make", "--no-print-directory", "results", "PRESET=zz_typo_test", f"VENV={venv}",
                               f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        preset.unlink()
    assert done.returncode != 0
    assert "presets/zz_typo_test.yaml" in done.stderr and "did you mean 'n_clusters'" in done.stderr
    assert not (REPO / "build" / "zz_typo_test").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_checks_its_parameters_right_after_them(path):
    cells = json.loads(path.read_text())["cells"]
    i = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    assert "check_kernel_parameters(globals(), MlpSettings" in "".join(cells[i + 1]["source"])
    assert parameters_of(path)


def test_params_gives_a_notebooks_preset_values_for_papermill_by_hand(capsys) -> None:
    """papermill -f with a preset file would pass `extends` and every other notebook's keys; the
    params command passes the resolved chain's values for one notebook's parameters only."""
    assert pipeline.main(["params", "smoke", "06_beyond"]) == 0
    values = yaml.safe_load(capsys.readouterr().out)
    declared = parameters_of(paths.REPO / "notebooks" / "06_beyond.ipynb")
    assert "extends" not in values and set(values) <= set(declared)
    assert not {"build_dir", "out_dir", "preset"} & set(values)
    assert values["null_draws"] == 2 and values["mask_steps"] == 20  # smoke's own
    assert values["selectivity_bins"] == 10 and values["faithful_objective"] == "margin"  # paper's, inherited
    assert all(type_error(v, declared[k].type) is None for k, v in values.items())  # each of its declared type
    assert pipeline.main(["params", "smoke", "09_nothing"]) == 1
    assert "the stages are 01_train" in capsys.readouterr().err


@pytest.mark.parametrize("stem, name, cls", [("07_cnn", "study", "CnnSettings"), ("08_modadd", "config", "ModAddSettings")])
def test_notebooks_07_and_08_build_their_settings_right_after_the_parameters(stem, name, cls):
    """The parameters cell, a preset's values as papermill injects them, then the cell after:
    the settings object holds the preset's values, and a bad one stops there."""
    cells = json.loads((REPO / "notebooks" / f"{stem}.ipynb").read_text())["cells"]
    i = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    smoke = pipeline.stage_parameters("smoke", stem, Path("b"), Path("o"))

    def run(values: dict) -> dict:
        ns: dict = {}
        exec("".join(cells[i]["source"]), ns)
        ns.update(values)
        exec("".join(cells[i + 1]["source"]), ns)
        return ns

    settings = run(smoke)[name]
    assert type(settings).__name__ == cls
    section = stem[3:]
    for key, value in smoke.items():
        if key.startswith(f"{section}_"):
            got = getattr(settings, key[len(section) + 1:])
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    with pytest.raises(PresetError, match=f"{section}_seeds: .*seeds lists 1 more than once"):
        run({**smoke, f"{section}_seeds": [1, 1]})
