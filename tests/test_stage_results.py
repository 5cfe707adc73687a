"""The stage results (modclust.experiments.stage_results): each goes through its JSON file
unchanged, a file of other code is one clear error, and each class's fields are what its stage
writes: the notebooks (and the library functions that build stages 1's and 6's) name every
field and nothing else, and a smoke run's files, when there is one, read back."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from modclust.experiments import grid, mlp_train, per_run
from modclust.experiments.stage_results import (STAGE_RESULTS, AblationResults, BeyondResults, CircuitResults,
                                                InterpretResults, StageResults, TrainingResults)
from stage_results import stage5_results, stage6_results

REPO = Path(__file__).resolve().parent.parent


def fakes() -> dict[type[StageResults], StageResults]:
    """One made-up result of each class (tests/stage_results.py)."""
    return {type(r): r for r in (*stage5_results(), stage6_results())}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_every_stage_result_has_a_class_and_a_fake():
    assert [c.STAGE for c in STAGE_RESULTS] == ["01_train", "02_ablate", "03_interpret", "04_circuits", "06_beyond"]
    assert [c.FILE for c in STAGE_RESULTS] == ["train.json", "ablate.json", "interpret.json", "circuits.json",
                                               "beyond.json"]
    assert set(fakes()) == set(STAGE_RESULTS)
    for cls in STAGE_RESULTS:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        for name in field_names(cls):  # the docstring states the shape: every field is in it
            assert f"``{name}``" in cls.__doc__, (cls.__name__, name)


@pytest.mark.parametrize("cls", STAGE_RESULTS, ids=lambda c: c.__name__)
def test_a_result_goes_through_its_json_file_unchanged(cls, tmp_path):
    result = fakes()[cls]
    d = result.to_dict()
    assert list(d) == field_names(cls)  # the file's keys in the fields' order
    path = result.write(tmp_path / cls.STAGE / cls.FILE)
    assert list(json.loads(path.read_text())) == field_names(cls)
    back = cls.read(path)
    # compared as JSON text: a nan (an undefined value) read back is another object, unequal to itself
    assert type(back) is cls and json.dumps(back.to_dict()) == json.dumps(d)
    assert json.dumps(cls.from_dict(json.loads(json.dumps(d))).to_dict()) == json.dumps(d)
    assert path.read_text() == json.dumps(d, indent=2) + "\n"  # modclust.core.io.write_json's format


@pytest.mark.parametrize("cls", STAGE_RESULTS, ids=lambda c: c.__name__)
def test_a_file_lacking_a_field_says_which_stage_to_rerun(cls, tmp_path):
    d = fakes()[cls].to_dict()
    last = field_names(cls)[-1]
    del d[last]
    path = tmp_path / "build" / "paper" / cls.STAGE / cls.FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as err:
        cls.read(path)
    msg = str(err.value)
    assert msg == (f"{path} lacks '{last}': it was written by older code; rerun stage {cls.STAGE} "
                   "(make paper reruns it)")
    with pytest.raises(ValueError, match=f"^{cls.FILE} \\(stage {cls.STAGE}\\) lacks '{last}'"):
        cls.from_dict(d)


@pytest.mark.parametrize("cls", STAGE_RESULTS, ids=lambda c: c.__name__)
def test_a_file_with_an_unknown_field_says_which_stage_to_rerun(cls, tmp_path):
    d = {**fakes()[cls].to_dict(), "seconds": 1.5}
    path = tmp_path / cls.FILE
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=f"has unknown field 'seconds': it was written by other code; "
                                         f"rerun stage {cls.STAGE} \\(make paper reruns it\\)$"):
        cls.read(path)


def test_every_problem_of_a_file_is_in_one_error():
    d = {k: v for k, v in fakes()[CircuitResults].to_dict().items() if k not in ("rows", "seed_cell")}
    d.update({"extra": 1, "more": 2})
    with pytest.raises(ValueError) as err:
        CircuitResults.from_dict(d, source="build/paper/04_circuits/circuits.json")
    assert str(err.value) == ("build/paper/04_circuits/circuits.json lacks 'seed_cell', 'rows' and has unknown fields "
                              "'extra', 'more': it was written by other code; rerun stage 04_circuits "
                              "(make paper reruns it)")
    with pytest.raises(ValueError, match="is not a JSON object but list: .*rerun stage 02_ablate"):
        AblationResults.from_dict([1, 2])


def test_a_missing_file_says_which_notebook_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_interpret.ipynb \\(make paper runs it\\) first"):
        InterpretResults.read(tmp_path / "interpret.json")
    with pytest.raises(FileNotFoundError, match="01_train.ipynb"):
        grid.load_summary(tmp_path)


# --- the fields are what the stages write ------------------------------------------------------

def _constructor_keywords(tree: ast.AST, cls: type) -> list[list[str | None]]:
    """The keyword names of every call of ``cls`` (or ``<module>.cls``) in ``tree``; a ``**``
    argument shows as None, a positional one as '<positional>'."""
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == cls.__name__:
                calls.append(["<positional>"] * len(node.args) + [k.arg for k in node.keywords])
    return calls


def _notebook_code(stage: str) -> ast.AST:
    cells = json.loads((REPO / "notebooks" / f"{stage}.ipynb").read_text())["cells"]
    return ast.parse("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))


WRITERS = {TrainingResults: inspect.getsource(grid.save_runs), AblationResults: "02_ablate",
           InterpretResults: "03_interpret", CircuitResults: "04_circuits",
           BeyondResults: inspect.getsource(per_run.run_beyond)}
"""Where each stage builds its result: the notebook, or the library function it calls
(stage 1: grid.save_runs; stage 6: per_run.run_beyond)."""


@pytest.mark.parametrize("cls", STAGE_RESULTS, ids=lambda c: c.__name__)
def test_each_stage_builds_its_result_naming_every_field(cls):
    """The stage builds its result once, with every field by name (no positional or ``**``
    arguments, which could hide a field); the fields are what it writes, as there is no other way."""
    where = WRITERS[cls]
    tree = _notebook_code(where) if where.startswith("0") else ast.parse(where)
    calls = _constructor_keywords(tree, cls)
    assert len(calls) == 1, f"{cls.__name__} is built {len(calls)} times"
    assert calls[0] == field_names(cls)


def test_the_stage_notebooks_write_and_read_results_through_the_classes():
    """No stage of 01-06 writes or reads a result's JSON itself; 05 reads stages 1-4 with the
    classes, 06 stage 1's, and 01 writes through its training plan (mlp_train, which calls
    grid.save_runs)."""
    for stage in ("01_train", "02_ablate", "03_interpret", "04_circuits", "05_numbers", "06_beyond"):
        code = ast.unparse(_notebook_code(stage))
        assert "write_json" not in code and "read_json" not in code, stage
    five = ast.unparse(_notebook_code("05_numbers"))
    for cls in (TrainingResults, AblationResults, InterpretResults, CircuitResults):
        assert f"{cls.__name__}.read(" in five
    assert "TrainingResults.read(" in ast.unparse(_notebook_code("06_beyond"))
    assert ".save(ex.resolve(out_dir))" in ast.unparse(_notebook_code("01_train"))
    assert "save_runs(" in inspect.getsource(mlp_train.StageRuns.save)
    assert "beyond.write(" in ast.unparse(_notebook_code("06_beyond"))


SMOKE = REPO / "build" / "smoke"


@pytest.mark.skipif(not (SMOKE / "06_beyond" / "beyond.json").exists(),
                    reason="needs a smoke run (make results PRESET=smoke); the tests above check the same without one")
@pytest.mark.parametrize("cls", STAGE_RESULTS, ids=lambda c: c.__name__)
def test_a_smoke_runs_files_read_back(cls):
    """The files a real run wrote hold exactly the fields (read raises otherwise), in their order."""
    path = SMOKE / cls.STAGE / cls.FILE
    assert list(json.loads(path.read_text())) == field_names(cls)
    assert json.dumps(cls.read(path).to_dict(), indent=2) + "\n" == path.read_text()
