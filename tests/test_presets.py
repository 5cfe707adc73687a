"""modclust.pipeline.presets: a preset's files and their chain, the rule for a value against its
type, and the two checks built on it (a preset before the pipeline runs, a notebook's parameters
in its kernel), against the project's notebooks and studies and against a small made-up pair."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from modclust.core.checks import Problems, check_int
from modclust.experiments import cnn_study as cs
from modclust.experiments.mlp_study import MlpSettings
from modclust.pipeline.presets import (Parameter, PresetError, check_kernel_parameters, check_parameters,
                                      check_preset, load_preset, merge, notebook_values, parameter_name,
                                      parameters_of, pipeline_parameters, preset_layers, setting_types,
                                      settings_from_parameters, settings_problems, type_error)
from modclust.pipeline.studies import STUDIES

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))


# -- presets against the project's notebooks and studies -------------------------------------------

def _preset(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("n_cluster: 8\n", r"n_cluster: no such setting \(did you mean 'n_clusters'\?\)"),
    ("lr: 1e-3\n", r"lr: must be float .*got the string '1e-3'.*write 1\.0e-3"),
    ("epochs: 1.5\n", r"epochs: must be int .*got float 1\.5"),
    ("epochs: true\n", r"epochs: must be int .*got bool True"),
    ("seeds: [0, '1']\n", r"seeds: must be list\[int\] .*item 1: got the string '1': remove the quotes"),
    ("widths: 784\n", r"widths: must be list\[int\] .*got int 784"),
    ("out_dir: x\n", r"out_dir: set by the pipeline"),
    ("[1, 2]\n", r"must be a mapping"),
    ("epochs: [1\n", r"is not valid YAML"),
])
def test_a_mistaken_preset_names_the_file_the_key_and_the_type(tmp_path, text, expected):
    with pytest.raises(PresetError, match=expected) as info:
        check_preset(_preset(tmp_path, text), NOTEBOOKS, STUDIES)
    assert "bad.yaml" in str(info.value)


def test_every_problem_of_a_preset_is_reported_at_once(tmp_path):
    with pytest.raises(PresetError) as info:
        check_preset(_preset(tmp_path, "n_cluster: 8\nlr: 1e-3\n"), NOTEBOOKS, STUDIES)
    assert "n_cluster" in str(info.value) and "lr" in str(info.value)


def _extends_paper(tmp_path: Path, text: str) -> Path:
    """A preset ``bad.yaml`` that extends a copy of the paper preset."""
    shutil.copy(REPO / "presets" / "paper.yaml", tmp_path / "paper.yaml")
    return _preset(tmp_path, "extends: paper\n" + text)


@pytest.mark.parametrize("text, expected", [
    ("cnn:\n  datasets: [cifar]\n",
     r"cnn\.datasets: CnnSettings\.datasets item must be one of \['mnist', 'fashion-mnist'\], got 'cifar'"),
    ("cnn:\n  channels: [0, 16]\n", r"cnn\.channels: CnnSettings\.channels\[0\] must be an int >= 1, got 0"),
    ("modadd:\n  train_frac: 1.5\n", r"modadd\.train_frac: modadd train_frac must be a finite number in \(0, 1\), "
                                     r"got 1\.5"),
    ("seeds: []\n", r"seeds: MlpSettings\.seeds is empty: give at least one seed"),
    ("seeds: [0, 0]\n", r"seeds: MlpSettings\.seeds lists 0 more than once, which would count a run twice"),
    ("main_lambda: 7.0\n", r"main_lambda: MlpSettings\.lambdas \[.*\] must hold 0 .* and main_lambda 7"),
    ("modadd:\n  moduli: [59]\n", r"modadd\.moduli: modadd moduli \[59\] repeat p = 59"),
    ("cnn:\n  n_clusters: 9\n", r"cnn\.n_clusters: n_clusters=9 does not fit conv2"),
    ("cnn_null_draws: 5\n", r"cnn_null_draws: no such setting \(a cnn setting goes in its section: "
                             r"'cnn: \{null_draws: \.\.\.\}'\)"),
    ("cnn:\n  null_draw: 5\n", r"cnn\.null_draw: no such setting \(did you mean 'null_draws'\?\)"),
    ("cnn:\n  null_draws: 2.5\n", r"cnn\.null_draws: must be int \(notebooks/07_cnn\.ipynb: .*\); got float 2\.5"),
    ("cnn: 5\n", r"cnn: must be a section of CnnSettings's settings"),
])
def test_a_preset_with_a_bad_value_fails_the_check_before_anything_runs(tmp_path, text, expected):
    """Values, not only types: each of these used to pass the check and fail (or count a run
    twice) only when its stage was reached."""
    with pytest.raises(PresetError, match=expected) as info:
        check_preset(_extends_paper(tmp_path, text), NOTEBOOKS, STUDIES)
    assert str(info.value).startswith(f"preset {tmp_path / 'bad.yaml'} cannot run:")


def test_every_bad_value_of_a_preset_is_listed_at_once(tmp_path):
    text = ("seeds: [0, 0]\nlambdas: [-1.0]\ncnn:\n  datasets: [cifar]\n  channels: [0, 16]\n"
            "modadd:\n  train_frac: 1.5\n")
    with pytest.raises(PresetError) as info:
        check_preset(_extends_paper(tmp_path, text), NOTEBOOKS, STUDIES)
    lines = str(info.value).splitlines()[1:]
    assert [ln.split(":")[0].strip() for ln in lines] == ["lambdas", "seeds", "cnn.datasets", "cnn.channels",
                                                          "modadd.train_frac"]


def test_a_bad_value_names_the_file_of_the_chain_that_sets_it(tmp_path):
    (tmp_path / "base.yaml").write_text("seeds: [1, 1]\ncnn:\n  seeds: [0]\n")
    (tmp_path / "child.yaml").write_text("extends: base\ncnn:\n  main_lambda: 7.0\n")
    with pytest.raises(PresetError) as info:
        check_preset(tmp_path / "child.yaml", NOTEBOOKS, STUDIES)
    msg = str(info.value)
    assert f"seeds (set in {tmp_path / 'base.yaml'}): MlpSettings.seeds lists 1 more than once" in msg
    assert "cnn.main_lambda: the lambda grid [0.0, 1.0, 5.0] must hold 0" in msg  # set in child.yaml itself


def test_a_notebook_run_by_hand_checks_its_values():
    ns = {"__annotations__": {"seeds": list[int], "circuit_layers": list[str], "cnn_channels": list[int]},
          "seeds": [0, 0], "circuit_layers": ["fc9"], "cnn_channels": [0, 16]}
    with pytest.raises(PresetError) as info:
        check_parameters(ns, STUDIES.values())
    msg = str(info.value)
    assert "seeds: MlpSettings.seeds lists 0 more than once" in msg and "cnn_channels: CnnSettings.channels[0]" in msg
    assert "fc9" not in msg  # circuit_layers reads widths, which this notebook does not declare: the preset checks it
    check_parameters({"__annotations__": {"seeds": list[int]}, "seeds": [3, 4]}, STUDIES.values())
    study = settings_from_parameters(cs.CnnSettings, {"cnn_seeds": [3], "cnn_null_draws": 2, "seeds": [0, 0]})
    assert study.seeds == (3,) and study.null_draws == 2 and study.lambdas == cs.CnnSettings().lambdas
    with pytest.raises(PresetError, match="cnn_seeds: CnnSettings.seeds is empty"):
        settings_from_parameters(cs.CnnSettings, {"cnn_seeds": []})


def test_a_missing_preset_lists_the_presets(tmp_path):
    (tmp_path / "one.yaml").write_text("")
    with pytest.raises(PresetError, match="no preset .*nope.yaml; the presets are: one"):
        load_preset(tmp_path / "nope.yaml")


def test_type_rule():
    assert type_error(3, "float") is None and type_error(3.0, "int") is not None
    assert type_error(True, "float") is not None and type_error(True, "bool") is None
    assert type_error([1, 2], "list[int]") is None and type_error([1, "x"], "list") is None
    assert "item 0" in type_error([1.5], "list[int]")


def test_a_notebook_run_by_hand_checks_its_parameters():
    ns = {"__annotations__": {"epochs": int, "widths": list[int]}, "epochs": 1.5, "widths": [784, "10"],
          "n_cluster": 8, "In": [], "np": json}
    with pytest.raises(PresetError) as info:
        check_parameters(ns, hidden={"In"}, known={"n_clusters"})
    msg = str(info.value)
    assert "epochs: must be int; got float 1.5" in msg and "widths: must be list[int]" in msg
    assert "n_cluster: no notebook has this parameter (did you mean 'n_clusters'?)" in msg
    assert "np" not in msg.replace("no notebook", "")  # an imported module is no parameter
    check_parameters({"__annotations__": {"epochs": int}, "epochs": 2, "tag": "x"}, hidden=set(), known={"tag"})


def test_presets_extend_one_another(tmp_path):
    notebooks = NOTEBOOKS
    (tmp_path / "base.yaml").write_text("epochs: 3\nlr: 0.01\n")
    (tmp_path / "child.yaml").write_text("extends: base\nlr: 0.1\n")
    assert load_preset(tmp_path / "child.yaml") == {"epochs": 3, "lr": 0.1}
    assert check_preset(tmp_path / "child.yaml", notebooks, STUDIES) == {"epochs": 3, "lr": 0.1}
    (tmp_path / "base.yaml").write_text("epochz: 3\n")
    with pytest.raises(PresetError, match=r"epochz \(set in .*base.yaml\): no such setting"):
        check_preset(tmp_path / "child.yaml", notebooks, STUDIES)


# -- a notebook's parameters cell --------------------------------------------------------------------

def _notebook(path: Path, *cells: tuple[list[str], str]) -> Path:
    """A notebook of code cells given as (tags, source)."""
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {"tags": tags}, "source": source}
                                          for tags, source in cells]}))
    return path


def test_parameters_of_reads_each_typed_line_with_its_help(tmp_path):
    nb = _notebook(tmp_path / "01_x.ipynb", ([], "import os\n"),
                   (["parameters"], 'epochs: int = 10  # training epochs\nname: str = "a#b"\n'
                                    'sizes: list[int] = [1, 2]  # sizes, # kept\nrate: float = 1e-3  #   spaced\n'))
    assert parameters_of(nb) == {
        "epochs": Parameter("epochs", "int", 10, "training epochs", "01_x"),
        "name": Parameter("name", "str", "a#b", "", "01_x"),  # a '#' inside the value is no comment
        "sizes": Parameter("sizes", "list[int]", [1, 2], "sizes, # kept", "01_x"),
        "rate": Parameter("rate", "float", 0.001, "spaced", "01_x"),
    }
    assert list(parameters_of(nb)) == ["epochs", "name", "sizes", "rate"]


def test_a_parameters_cell_that_cannot_be_read_says_what_it_must_be(tmp_path):
    with pytest.raises(PresetError, match=r"none\.ipynb must have exactly one cell tagged 'parameters' \(it has 0\)"):
        parameters_of(_notebook(tmp_path / "none.ipynb", ([], "x: int = 1\n")))
    with pytest.raises(PresetError, match=r"two\.ipynb must have exactly one cell tagged 'parameters' \(it has 2\)"):
        parameters_of(_notebook(tmp_path / "two.ipynb", (["parameters"], "x: int = 1\n"),
                                (["parameters", "other"], "y: int = 1\n")))
    for source in ("x = 1\n", "x: int\n", "import os\n"):
        with pytest.raises(PresetError, match=r"bad\.ipynb: every line of the parameters cell must read "
                                              r"'name: type = value  # help'"):
            parameters_of(_notebook(tmp_path / "bad.ipynb", (["parameters"], source)))


def test_pipeline_parameters_lists_every_notebook_that_declares_a_name(tmp_path):
    a = _notebook(tmp_path / "01_a.ipynb", (["parameters"], "epochs: int = 1  # e\ntag: str = 'x'  # t\n"))
    b = _notebook(tmp_path / "02_b.ipynb", (["parameters"], "epochs: int = 1  # e\n"))
    found = pipeline_parameters([a, b])
    assert list(found) == ["epochs", "tag"]
    assert [p.notebook for p in found["epochs"]] == ["01_a", "02_b"] and [p.notebook for p in found["tag"]] == ["01_a"]
    assert pipeline_parameters([]) == {}


# -- the rule for a value against its type -------------------------------------------------------------

@pytest.mark.parametrize("value, type_name, why", [
    ("3", "int", "got the string '3': remove the quotes"),
    (" -2.5 ", "float", "got the string ' -2.5 ': remove the quotes"),
    ("1e-3", "int", "got the string '1e-3': YAML reads a number with an exponent but no decimal point as text; "
                    "write 1.0e-3"),
    ("1.5e3", "float", "got the string '1.5e3': remove the quotes"),
    ("ten", "int", "got str 'ten'"),
    (3, "str", "got int 3"),
    (1, "bool", "got int 1"),
    (None, "float", "got NoneType None"),
    ((1, 2), "list", "got tuple (1, 2)"),
    ([[1]], "list[int]", "item 0: got list [1]"),
    (["a", 2], "list[str]", "item 1: got int 2"),
])
def test_type_error_says_what_was_given_and_how_to_write_it(value, type_name, why):
    assert type_error(value, type_name) == why


def test_type_error_passes_the_values_of_the_type():
    for value, type_name in ((3, "int"), (3, "float"), (2.5, "float"), ("x", "str"), (False, "bool"), ([], "list"),
                             ([1, "a"], "list"), ([], "list[int]"), ([1.5, 2], "list[float]")):
        assert type_error(value, type_name) is None, (value, type_name)


def test_an_unknown_parameter_type_names_the_types_there_are():
    with pytest.raises(PresetError, match=r"unsupported parameter type 'dict': "
                                          r"use int, float, str, bool or list\[\.\.\.\]"):
        type_error({}, "dict")


# -- settings classes and their sections ---------------------------------------------------------------

@dataclass(frozen=True)
class Top:
    """A made-up study at a preset's top level: one rule between two fields."""

    preset_section: ClassVar[str | None] = None
    epochs: int = 1
    lo: int = 1
    hi: int = 2
    unread: int = 0

    def __post_init__(self) -> None:
        problems = Problems()
        with problems.about("epochs"):
            check_int("Top.epochs", self.epochs, 1)
        if self.lo > self.hi:
            problems.add(f"Top.lo {self.lo} must not exceed Top.hi {self.hi}: lower lo or raise hi", "lo", "hi")
        problems.raise_any()


@dataclass(frozen=True)
class Sec:
    """A made-up study in a preset's section ``sec``."""

    preset_section: ClassVar[str | None] = "sec"
    k: int = 2
    names: tuple[str, ...] = ("a",)
    rate: float = 0.5


MADE_UP = {None: Top, "sec": Sec}
MADE_UP_CELL = ('epochs: int = 1  # training epochs\nlo: int = 1  # low\nhi: int = 2  # high\n'
                'sec_k: int = 2  # blocks\nsec_names: list[str] = ["a"]  # names\nsec_rate: float = 0.5  # rate\n'
                'out_dir: str = "o"  # outputs')


def test_setting_types_and_parameter_names():
    assert setting_types(Top) == {"epochs": "int", "lo": "int", "hi": "int", "unread": "int"}
    assert setting_types(Sec) == {"k": "int", "names": "list[str]", "rate": "float"}
    assert parameter_name(None, "epochs") == "epochs" and parameter_name("sec", "k") == "sec_k"
    assert notebook_values({"epochs": 2, "seeds": [0, 1], "sec": {"k": 3, "names": []}}) == \
        {"epochs": 2, "seeds": [0, 1], "sec_k": 3, "sec_names": []}


def test_settings_problems_and_settings_from_parameters_build_the_settings():
    assert settings_problems(Top, {"epochs": 3}) == []
    assert settings_problems(Top, {"epochs": 0, "lo": 5}) == [
        (("epochs",), "Top.epochs must be an int >= 1, got 0"),
        (("lo", "hi"), "Top.lo 5 must not exceed Top.hi 2: lower lo or raise hi")]
    sec = settings_from_parameters(Sec, {"sec_k": 4, "sec_names": ["x", "y"], "k": 99, "epochs": 0})
    assert sec == Sec(k=4, names=("x", "y"))  # lists become the settings' tuples; other names are not read
    with pytest.raises(PresetError, match=r"this notebook's parameters cannot run:\n  lo: Top\.lo 3 must not exceed"):
        settings_from_parameters(Top, {"lo": 3})


def test_the_mlp_study_s_settings_from_a_notebook_s_parameters():
    s = settings_from_parameters(MlpSettings, {"epochs": 3, "widths": [784, 8, 10], "n_clusters": 2,
                                              "layers": ["fc1"], "circuit_layers": ["fc2"], "layer_sets": ["fc1"],
                                              "cnn_seeds": [1, 1]})  # another study's parameter: not read
    assert s.epochs == 3 and s.widths == (784, 8, 10) and s.layers == ("fc1",)
    assert s.seeds == MlpSettings().seeds


# -- presets: files, chains and merging ----------------------------------------------------------------

def test_merge_updates_a_section_key_by_key_and_leaves_its_inputs_alone():
    base = {"epochs": 3, "sec": {"k": 1, "rate": 0.5}, "seeds": [0, 1]}
    values = {"sec": {"k": 2}, "seeds": [5], "lo": 1}
    assert merge(base, values) == {"epochs": 3, "sec": {"k": 2, "rate": 0.5}, "seeds": [5], "lo": 1}
    assert base == {"epochs": 3, "sec": {"k": 1, "rate": 0.5}, "seeds": [0, 1]}  # not changed
    assert merge(base, {"sec": 7})["sec"] == 7  # a section replaced by a value: the check then names it
    assert merge({}, {}) == {}


def test_preset_layers_give_each_file_of_the_chain_its_own_keys_base_first(tmp_path):
    (tmp_path / "a.yaml").write_text("epochs: 3\n")
    (tmp_path / "b.yaml").write_text("extends: a\nlo: 1\n")
    (tmp_path / "c.yaml").write_text("# nothing of its own\nextends: b\n")
    assert preset_layers(tmp_path / "c.yaml") == [(tmp_path / "a.yaml", {"epochs": 3}),
                                                  (tmp_path / "b.yaml", {"lo": 1}), (tmp_path / "c.yaml", {})]
    (tmp_path / "empty.yaml").write_text("")
    assert load_preset(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize("text", ["- epochs\n", "7\n", "1: 2\n", "'epochs'\n"])
def test_a_preset_that_is_not_a_mapping_of_names_says_what_it_must_be(tmp_path, text):
    (tmp_path / "odd.yaml").write_text(text)
    with pytest.raises(PresetError, match=r"odd\.yaml must be a mapping of parameter names to values, "
                                          r"like 'epochs: 10'"):
        load_preset(tmp_path / "odd.yaml")


# -- check_preset on a made-up pair of studies ---------------------------------------------------------

@pytest.fixture
def made_up(tmp_path):
    """One notebook declaring Top's and Sec's fields (not Top.unread), and a folder for presets."""
    nb = _notebook(tmp_path / "01_made.ipynb", (["parameters"], MADE_UP_CELL))
    (tmp_path / "presets").mkdir()
    return [nb], tmp_path / "presets"


def _check(made_up, **files: str):
    """Write the preset files (the last one is checked) and check it against the made-up studies."""
    notebooks, folder = made_up
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return check_preset(folder / f"{name}.yaml", notebooks, MADE_UP)


def test_a_good_preset_comes_back_merged(made_up):
    assert _check(made_up, base="epochs: 3\nsec:\n  k: 4\n  names: [b]\n",
                  child="extends: base\nlo: 2\nsec:\n  rate: 1\n") == \
        {"epochs": 3, "lo": 2, "sec": {"k": 4, "names": ["b"], "rate": 1}}


@pytest.mark.parametrize("text, line", [
    ("unread: 1\n", "unread: no notebook has the parameter unread; add it to the notebook that reads it"),
    ("epoch: 1\n", "epoch: no such setting (did you mean 'epochs'?)"),
    ("sec_k: 3\n", "sec_k: no such setting (a sec setting goes in its section: 'sec: {k: ...}')"),
    ("sec:\n  kk: 3\n", "sec.kk: no such setting (did you mean 'k'?)"),
    ("sec:\n  names: [a, 1]\n", "sec.names: must be list[str] (notebooks/01_made.ipynb: names); item 1: got int 1"),
    ("sec: [k]\n", "sec: must be a section of Sec's settings, one 'name: value' per line indented below 'sec:', "
                   "got ['k']"),
    ("epochs: 0\n", "epochs: Top.epochs must be an int >= 1, got 0"),
    ("lo: 5\n", "lo: Top.lo 5 must not exceed Top.hi 2: lower lo or raise hi"),
    ("hi: 0\n", "hi: Top.lo 1 must not exceed Top.hi 0: lower lo or raise hi"),
    ("out_dir: x\n", "out_dir: set by the pipeline for each stage, not by a preset; remove it"),
])
def test_each_problem_is_one_line_naming_the_key(made_up, text, line):
    with pytest.raises(PresetError) as info:
        _check(made_up, p=text)
    assert str(info.value).splitlines()[1:] == [f"  {line}"]


def test_a_rule_between_two_files_names_the_key_of_the_later_file(made_up):
    _, folder = made_up
    with pytest.raises(PresetError) as info:
        _check(made_up, base="hi: 3\n", child="extends: base\nlo: 5\n")
    assert str(info.value).splitlines()[1:] == ["  lo: Top.lo 5 must not exceed Top.hi 3: lower lo or raise hi"]
    with pytest.raises(PresetError) as info:
        _check(made_up, base="lo: 5\n", child="extends: base\nepochs: 2\n")
    assert str(info.value).splitlines()[1:] == [f"  lo (set in {folder / 'base.yaml'}): Top.lo 5 must not exceed "
                                                "Top.hi 2: lower lo or raise hi"]


def test_a_value_of_the_wrong_type_is_not_also_reported_by_the_settings(made_up):
    with pytest.raises(PresetError) as info:
        _check(made_up, p="epochs: x\nlo: 5\n")
    assert str(info.value).splitlines()[1:] == ["  epochs: must be int (notebooks/01_made.ipynb: training epochs); "
                                                "got str 'x'"]


# -- in the notebook's kernel ----------------------------------------------------------------------------

def test_check_parameters_names_a_value_that_breaks_a_rule_between_declared_fields():
    ns = {"__annotations__": {"lo": int, "hi": int}, "lo": 4, "hi": 3}
    with pytest.raises(PresetError, match=r"lo: Top\.lo 4 must not exceed Top\.hi 3"):
        check_parameters(ns, [Top])
    check_parameters({"__annotations__": {"lo": int}, "lo": 4}, [Top])  # hi is not this notebook's: the preset's rule
    check_parameters({"__annotations__": {"lo": "int"}, "lo": 1}, [Top])  # an annotation as text


def test_check_kernel_parameters_outside_a_kernel_checks_the_values_against_the_study():
    with pytest.raises(PresetError, match=r"this notebook's parameters cannot run:\n  "
                                          r"epochs: must be int; got float 1\.5"):
        check_kernel_parameters({"__annotations__": {"epochs": int}, "epochs": 1.5}, MlpSettings)
    with pytest.raises(PresetError, match="seeds: MlpSettings.seeds lists 2 more than once"):
        check_kernel_parameters({"__annotations__": {"seeds": list[int]}, "seeds": [2, 2]}, MlpSettings)
    check_kernel_parameters({"__annotations__": {"seeds": list[int]}, "seeds": [2], "stray": 1}, MlpSettings)
