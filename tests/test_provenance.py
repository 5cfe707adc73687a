"""Provenance records (modclust/pipeline/provenance.py) against a checkout that changes under them.

A small checkout stands in for the project's: a package of three modules, four notebooks that
import them, a table of stages (02_b reads 01_a, 03_c reads 02_b), two presets
and a fake dataset. Its stages' records are made with ``record`` as the runner makes them; the
last test runs a stage through the runner itself and checks the record is committed with it.
"""

from __future__ import annotations

import html
import json
import shutil
import time
from pathlib import Path

import pytest

from modclust.core.data import RAW_FILES
from modclust.core.progress import PROGRESS_ENV
from modclust.pipeline import provenance, report
from modclust.pipeline import stages as pipeline
from modclust.pipeline.presets import load_preset, notebook_values, parameters_of
from modclust.pipeline.stages import Layout, PipelineError
from conftest import write_notebook

REPO = Path(__file__).resolve().parent.parent

TABLE = ('\nSTAGES = (Stage("01_a"), Stage("02_b", reads=("01_a",)), Stage("03_c", reads=("02_b",)), '
         'Stage("04_d"))\n')
NOTEBOOKS = {  # stage: (parameters cell, code)
    "01_a": ('epochs: int = 1  # epochs\ndataset: str = "mnist"  # data', "import modclust.a"),
    "02_b": ("width: int = 1  # width\nout_dir: str = 'o'  # outputs", "from modclust import b"),
    "03_c": ("preset: str = 'x'  # preset", "import modclust.c"),
    "04_d": ("epochs: int = 1  # epochs", "import modclust.a"),
}


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "checkout"
    (root / "modclust" / "pipeline").mkdir(parents=True)
    for name in ("__init__", "a", "b", "c"):
        (root / "modclust" / f"{name}.py").write_text(f"X = '{name}'\n")
    table = (REPO / "modclust" / "pipeline" / "stage_table.py").read_text()
    (root / "modclust" / "pipeline" / "stage_table.py").write_text(table + TABLE)
    (root / "notebooks").mkdir()
    for stage, (params, code) in NOTEBOOKS.items():
        write_notebook(root / "notebooks" / f"{stage}.ipynb", params, code)
    (root / "presets").mkdir()
    (root / "presets" / "base.yaml").write_text("epochs: 1\ndataset: mnist\nwidth: 3\n")
    (root / "presets" / "t.yaml").write_text("extends: base\nepochs: 2\n")
    data = tmp_path / "data"
    (data / "MNIST" / "raw").mkdir(parents=True)
    for f in RAW_FILES:
        (data / "MNIST" / "raw" / f).write_bytes(f.encode())
    monkeypatch.setenv("MODCLUST_DATA", str(data))
    return root


def _build(root: Path, preset: str = "t") -> Path:
    """Every stage of the checkout built as the runner does it: a record, then the marker."""
    build = root / "build" / preset
    values = notebook_values(load_preset(root / "presets" / f"{preset}.yaml"))
    for stage, reads in provenance._stages(root):
        declared = parameters_of(root / "notebooks" / f"{stage}.ipynb")
        given = {**values, "build_dir": str(build), "out_dir": "somewhere/tmp", "preset": preset}
        rec = provenance.stage_record(root, stage, preset, {k: v for k, v in given.items() if k in declared},
                                reads, build, time.time(), wall_s=1.5)
        (build / stage).mkdir(parents=True)
        provenance.write(build / stage, rec)
        (build / f"{stage}.ipynb").write_text("{}")
    return build


def _findings(build: Path, root: Path, preset: str = "t") -> dict[str, provenance.Finding]:
    return {f.stage: f for f in provenance.compare(build, preset, root)}


def _statuses(findings: dict[str, provenance.Finding]) -> dict[str, str]:
    return {s: f.status for s, f in findings.items()}


MATCHING = {"01_a": "matching", "02_b": "matching", "03_c": "matching", "04_d": "matching"}


def test_the_record_holds_the_stages_inputs(checkout):
    build = _build(checkout)
    rec = provenance.read(build / "02_b")
    assert rec["library"].keys() == {"modclust/__init__.py", "modclust/b.py"}
    assert rec["notebook"].keys() == {"notebooks/02_b.ipynb"}
    assert list(rec["preset_files"]) == ["presets/t.yaml", "presets/base.yaml"]
    assert rec["parameters"] == {"width": 3}, "the preset's values it received, not out_dir"
    assert rec["upstream"] == {"01_a": provenance._digest(build / "01_a" / provenance.FILE)}
    assert set(rec["datasets"]) == {"mnist"} and len(rec["datasets"]["mnist"]) == 4, "01_a's, which it reads"
    assert provenance.read(build / "03_c")["parameters"] == {}, "preset is the pipeline's own"
    assert {"python", "torch", "device", "git", "started", "wall_s"} <= rec.keys()
    rows = provenance.summary_rows(rec)
    assert all(isinstance(label, str) and isinstance(value, str) for label, value in rows)
    assert dict(rows)["Stages read"].startswith("01_a (record sha256 ")
    assert provenance.read(checkout / "nowhere") is None


def test_a_changed_module_makes_the_stages_importing_it_and_those_downstream_stale(checkout):
    build = _build(checkout)
    assert _statuses(_findings(build, checkout)) == MATCHING
    (checkout / "modclust" / "b.py").write_text("X = 'b, edited'\n")
    found = _findings(build, checkout)
    assert _statuses(found) == {**MATCHING, "02_b": "stale", "03_c": "stale"}
    assert found["02_b"].differences == ("package file changed: modclust/b.py",)
    assert found["03_c"].differences == ("upstream 02_b is stale",)
    (checkout / "modclust" / "a.py").write_text("import modclust.c\n")  # 01_a and 04_d now import c too
    found = _findings(build, checkout)
    assert set(found["04_d"].differences) == {"package file changed: modclust/a.py",
                                              "package file now imported: modclust/c.py"}
    assert "upstream 01_a is stale" in found["02_b"].differences


def test_a_copied_build_on_an_unchanged_checkout_matches(checkout, tmp_path):
    build = _build(checkout)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(checkout, elsewhere / "checkout")  # another machine: other absolute paths
    shutil.copytree(build, elsewhere / "results" / "t")
    assert _statuses(_findings(elsewhere / "results" / "t", elsewhere / "checkout")) == MATCHING


def test_a_changed_preset_value_is_named_and_a_comment_is_not(checkout):
    build = _build(checkout)
    base = checkout / "presets" / "base.yaml"
    base.write_text("# a comment\n" + base.read_text())
    assert _statuses(_findings(build, checkout)) == MATCHING
    base.write_text(base.read_text().replace("width: 3", "width: 4"))
    found = _findings(build, checkout)
    assert _statuses(found) == {**MATCHING, "02_b": "stale", "03_c": "stale"}
    assert found["02_b"].differences == ("preset value width: 3 recorded, 4 now",)


def test_a_stage_without_a_record_a_rebuilt_one_and_changed_data_are_reported(checkout):
    build = _build(checkout)
    (build / "02_b" / provenance.FILE).unlink()
    (build / "04_d.ipynb").unlink()
    found = _findings(build, checkout)
    assert _statuses(found) == {"01_a": "matching", "02_b": "no record", "03_c": "stale", "04_d": "not built"}
    assert found["02_b"].differences == ("built before provenance records were kept",)
    assert found["03_c"].differences == ("upstream 02_b has no record",)
    rec = provenance.stage_record(checkout, "01_a", "t", {"epochs": 2, "dataset": "mnist"}, (), build, time.time())
    provenance.write(build / "01_a", rec)  # 01_a built again, from the same code
    (build / "02_b" / provenance.FILE).write_text("{not json")
    found = _findings(build, checkout)
    assert found["01_a"].matching
    assert found["02_b"].differences == ("its provenance.json cannot be read",)
    archive = Path(provenance.paths.data_root()) / "MNIST" / "raw" / RAW_FILES[0]
    archive.write_bytes(b"other bytes")
    found = _findings(build, checkout)
    assert found["01_a"].status == "stale"
    assert found["01_a"].differences[0].startswith(f"dataset file changed: MNIST/raw/{RAW_FILES[0]} (md5 ")


def test_the_command_prints_each_stage_and_fails_unless_all_match(checkout, capsys):
    _build(checkout)
    assert pipeline.main(["--root", str(checkout), "provenance", "t"]) == 0
    out = capsys.readouterr().out
    assert "01_a: matching" in out and "04_d: matching" in out
    (checkout / "notebooks" / "04_d.ipynb").write_text((checkout / "notebooks" / "04_d.ipynb").read_text() + " ")
    assert pipeline.main(["--root", str(checkout), "provenance", "t"]) == 1
    assert "04_d: stale\n    notebook changed: notebooks/04_d.ipynb\n" in capsys.readouterr().out


# -- the record is committed with its stage ---------------------------------------------------

STAGE_CODE = """\
from pathlib import Path
if fail:
    raise RuntimeError("the stage broke on purpose")
Path(out_dir).mkdir(parents=True, exist_ok=True)
(Path(out_dir) / "result.txt").write_text(tag)
"""


def test_the_record_is_written_inside_the_stage_when_it_commits_and_a_failure_leaves_none(tmp_path, monkeypatch):
    """A real stage run by the runner (papermill): its record arrives with its outputs; a run
    that fails writes none and leaves the previous stage, record and all."""
    monkeypatch.setenv(PROGRESS_ENV, "")  # run_stage sets it for its kernel; restored after the test
    monkeypatch.setenv("MODCLUST_DATA", str(tmp_path / "no-data"))
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "presets").mkdir()
    write_notebook(tmp_path / "notebooks" / "01_work.ipynb",
              'fail: bool = False  # raise\ntag: str = "a"  # written\nout_dir: str = "o"  # outputs', STAGE_CODE)
    (tmp_path / "presets" / "t.yaml").write_text("tag: first\n")
    layout = Layout(tmp_path)
    pipeline.run_stage("t", "01_work", 1, 1, layout)
    build = layout.build / "t"
    rec = provenance.read(build / "01_work")
    assert rec is not None and (build / "01_work" / "result.txt").read_text() == "first"
    assert rec["stage"] == "01_work" and rec["parameters"] == {"tag": "first"} and rec["wall_s"] > 0
    assert rec["notebook"] == {"notebooks/01_work.ipynb": provenance._digest(layout.notebook("01_work"))}
    assert _statuses(_findings(build, tmp_path)) == {"01_work": "matching"}
    before = (build / "01_work" / provenance.FILE).read_text()
    (tmp_path / "presets" / "t.yaml").write_text("tag: second\nfail: true\n")
    with pytest.raises(PipelineError, match="the stage broke on purpose"):
        pipeline.run_stage("t", "01_work", 1, 1, layout)
    assert (build / "01_work" / provenance.FILE).read_text() == before
    assert not list((build / ".tmp").rglob(provenance.FILE)), "the failed run wrote no record"
    found = _findings(build, tmp_path)["01_work"]
    assert set(found.differences) == {'preset value tag: "first" recorded, "second" now',
                                      "preset value fail now given: true"}
    work = build / ".tmp" / "01_work.empty"  # a stage that wrote no outputs: no record is made for it
    work.mkdir(parents=True)
    (work / "01_work.ipynb").write_text("{}")
    with pytest.raises(PipelineError, match="must write its results under out_dir"):
        pipeline.commit_stage(work, build, "01_work", rec)
    assert not (work / "01_work").exists()
    assert json.loads((build / "01_work" / provenance.FILE).read_text()) == json.loads(before)


def test_the_report_shows_the_record_on_the_stage_page(checkout):
    build = _build(checkout)
    block = report.provenance_html(build / "02_b")
    assert block.startswith('<details class="modclust-provenance">')
    for label, value in provenance.summary_rows(provenance.read(build / "02_b")):
        assert f"<th>{html.escape(label)}</th><td>{html.escape(value)}</td>" in block
    assert "No provenance record" in report.provenance_html(build / "05_missing")
