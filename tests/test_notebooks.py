"""The paper pipeline's notebooks: clean, documented parameters, presets that fit them, and an
nbval check that fails when a checked output changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from modclust.pipeline.presets import check_preset
from modclust.pipeline.studies import STUDIES

REPO = Path(__file__).resolve().parent.parent
PIPELINE = ["01_train", "02_ablate", "03_interpret", "04_circuits", "05_numbers"]
NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))  # the paper's stages and any later ones
PRESETS = sorted((REPO / "presets").glob("*.yaml"))
SANITIZE = REPO / "notebooks" / "nbval_sanitize.cfg"


def test_the_pipeline_has_notebooks_and_presets():
    assert [p.stem for p in NOTEBOOKS][:len(PIPELINE)] == PIPELINE
    assert {"smoke", "paper"} <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean_with_one_typed_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "committed notebooks hold no outputs"
    params = papermill.inspect_notebook(str(path))
    assert params, "papermill finds the parameters"
    n_lines = sum(1 for ln in tagged[0].source.splitlines() if ln.strip() and not ln.startswith("#"))
    assert len(params) == n_lines, "every parameter line is understood by papermill --help-notebook"
    for name, p in params.items():
        assert p["inferred_type_name"] != "None", f"{path.stem}: parameter {name} has no type"
        assert p["help"], f"{path.stem}: parameter {name} has no comment"


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_fits_the_notebooks(preset):
    """Keys and types are checked by modclust.pipeline.presets (tests/test_presets.py); this is the one
    rule between keys: the compared lambdas are trained."""
    values = check_preset(preset, NOTEBOOKS, STUDIES)
    assert values["main_lambda"] in values["lambdas"] and 0 in values["lambdas"]


def test_paper_preset_meets_the_brief():
    values = yaml.safe_load((REPO / "presets" / "paper.yaml").read_text())
    assert len(values["seeds"]) >= 5 and values["epochs"] == 10 and values["main_lambda"] == 15


# --- nbval: a changed checked output must fail --------------------------------------------------

CHECKED = "# NBVAL_CHECK_OUTPUT\n"


def _nbval(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLOTLY_RENDERER": "plotly_mimetype", "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE), str(path)],
        capture_output=True, text=True, env=env, cwd=path.parent, timeout=600)


def _executed_search_space_notebook(tmp_path: Path) -> Path:
    """A small executed notebook with the pipeline's own checked cell (notebook 04's search-space
    pruning, which needs no training), executed by papermill like a pipeline stage."""
    src = nbformat.read(REPO / "notebooks" / "04_circuits.ipynb", as_version=4)
    checked = next(c for c in src.cells if c.source.startswith(CHECKED) and "search_space_pruned" in c.source)
    nb = nbformat.v4.new_notebook(metadata=src.metadata)
    nb.cells = [
        nbformat.v4.new_code_cell("from modclust.analysis.circuits import search_space_pruned\n"
                                  "from modclust.core.train import TrainConfig"),
        nbformat.v4.new_code_cell("cfg = TrainConfig()\nlayer = 'fc2'\n"
                                  "runs = [type('Run', (), {'partitions': cfg.partitions()})]"),
        nbformat.v4.new_code_cell(checked.source),
    ]
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"
    raw, executed = tmp_path / "raw.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(nb, raw)
    papermill.execute_notebook(str(raw), str(executed), kernel_name="python3", progress_bar=False)
    return executed


def test_nbval_passes_on_an_unchanged_notebook_and_fails_on_a_changed_checked_output(tmp_path):
    executed = _executed_search_space_notebook(tmp_path)
    nb = nbformat.read(executed, as_version=4)
    cell = nb.cells[-1]
    assert cell.outputs[0]["text"].startswith("search space pruned per cluster: 76.40 %")

    ok = _nbval(executed)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("76.40", "76.41", 1)
    changed = tmp_path / "changed.ipynb"
    nbformat.write(nb, changed)
    bad = _nbval(changed)
    assert bad.returncode != 0, "nbval must fail when a checked output changes"
    assert "76.41" in bad.stdout or "76.40" in bad.stdout


def test_every_pipeline_notebook_checks_some_output():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert any(c.source.startswith(CHECKED) for c in nb.cells if c.cell_type == "code"), path.stem


SMOKE_EXECUTED = REPO / "build" / "smoke" / "02_ablate.ipynb"


# Outside CI it waits for a smoke run; in CI (make test runs the smoke pipeline first) it must run.
@pytest.mark.skipif(not SMOKE_EXECUTED.exists() and not os.environ.get("CI"),
                    reason="needs the smoke pipeline: make results PRESET=smoke")
def test_nbval_fails_on_a_changed_number_in_an_executed_smoke_notebook(tmp_path):
    """The same on a real stage: a copy of the smoke run's executed 02_ablate with one checked
    number changed fails nbval (its re-execution reads build/smoke/01_train)."""
    nb = json.loads(SMOKE_EXECUTED.read_text())
    cell = next(c for c in nb["cells"] if "".join(c["source"]).startswith(CHECKED))
    text = "".join(cell["outputs"][0]["text"])
    head, _, rest = text.partition("full ")
    cell["outputs"][0]["text"] = head + "full 0.999" + rest[5:]
    changed = tmp_path / "02_ablate_changed.ipynb"
    changed.write_text(json.dumps(nb))
    bad = _nbval(changed)
    assert bad.returncode != 0, bad.stdout
