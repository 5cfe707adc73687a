"""The pipeline's make dependencies against what the stages really import, and the table of
stages (modclust/pipeline/stage_table.py) against the notebooks, make and the paper.

The truth is measured, not read the way ``modclust/pipeline/deps.py`` reads it: each stage's
imports are executed in a fresh interpreter and its ``sys.modules`` listed, and the package is
checked to hold no import of its own modules inside a function (which ``sys.modules`` after
importing would miss). make's own database (``make -p``) then must list, for every stage, each
of those files among the stage's prerequisites at some depth; the smoke preset's chain too.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modclust.pipeline import stage_table
from modclust.pipeline.deps import DependencyError, import_closure, makefile, preset_chain
from modclust.pipeline.presets import PresetError, load_preset
from modclust.pipeline.stage_table import STAGES
from modclust.pipeline.stages import PAPER_STAGES

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))

PROBE = """
import sys
for line in sys.stdin.read().split("\\n\\x00\\n"):
    exec(line)
for name, mod in sorted(sys.modules.items()):
    if name.split(".")[0] == "modclust" and getattr(mod, "__file__", None):
        print(mod.__file__)
"""


def _imports_of_notebook(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return [ast.unparse(n) for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Import | ast.ImportFrom)]


def _loaded_files(path: Path) -> set[Path]:
    """The package files a fresh interpreter holds after running the notebook's imports."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-c", PROBE], input="\n\x00\n".join(_imports_of_notebook(path)),
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return {Path(f).resolve() for f in out.stdout.split()}


def _make_prerequisites(preset: str, *overrides: str) -> dict[str, set[str]]:
    """Each target's prerequisites in make's database for ``make _results PRESET=preset``
    (``overrides``: variable assignments for make's command line)."""
    out = subprocess.run(["make", "-pqR", "--no-print-directory", f"PRESET={preset}", *overrides, "_results"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    rules: dict[str, set[str]] = {}
    files = out.stdout.rsplit("\n# Files\n", 1)[-1]  # the last database: after the include was remade
    for line in files.splitlines():
        m = re.match(r"^([^#\s][^:=]*?):(?![=:])\s*(.*)$", line)
        if m:
            rules[m.group(1)] = set(m.group(2).replace("|", " ").split())
    return rules


def _closure(rules: dict[str, set[str]], target: str) -> set[str]:
    seen, todo = set(), [target]
    while todo:
        t = todo.pop()
        for p in rules.get(t, ()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def test_the_package_imports_its_modules_only_at_the_top_of_a_module():
    """So the modules loaded after the imports are all a stage can ever run (nothing is
    reached later through an import inside a function)."""
    inner = []
    for path in sorted((REPO / "modclust").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                mod = node.module if isinstance(node, ast.ImportFrom) else None
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [mod or ""]
                if isinstance(node, ast.Import | ast.ImportFrom) and any(n.split(".")[0] == "modclust" for n in names):
                    inner.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not inner, f"imports of modclust inside functions: {inner}"


@pytest.fixture(scope="module")
def smoke_rules() -> dict[str, set[str]]:
    return _make_prerequisites("smoke")


def _stale_misses(notebook: Path, rules: dict[str, set[str]]) -> list[str]:
    """The package files the stage loads whose change would leave its target up to date."""
    target = f"build/smoke/{notebook.stem}.ipynb"
    assert target in rules, f"pipeline.mk has no rule for {target}"
    deps = {(REPO / p).resolve() for p in _closure(rules, target)}
    loaded = _loaded_files(notebook)
    assert len(loaded) > 5, loaded  # the probe saw the package
    assert notebook.resolve() in deps and (REPO / "presets" / "smoke.yaml").resolve() in deps
    return sorted(str(p.relative_to(REPO)) for p in loaded - deps)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_editing_any_module_a_stage_loads_makes_the_stage_stale(notebook, smoke_rules):
    missing = _stale_misses(notebook, smoke_rules)
    assert not missing, f"build/smoke/{notebook.stem}.ipynb stays up to date when these change: {missing}"


def test_a_hand_kept_list_that_misses_a_module_is_caught(smoke_rules):  # smoke_rules: make wrote deps.mk
    """The bug this guards against: stage 3 reached selectivity, which the hand-kept list lacked.
    Stage 3's library and that of stage 1 (which it reads) without selectivity must be caught."""
    libraries = (REPO / "build" / "deps.mk").read_text()
    overrides = []
    for stage in ("01_train", "03_interpret"):
        files = re.search(rf"^STAGE_LIBRARY_{stage} := (.*)$", libraries, flags=re.M).group(1).split()
        overrides.append(f"STAGE_LIBRARY_{stage}=" + " ".join(f for f in files if not f.endswith("/selectivity.py")))
    rules = _make_prerequisites("smoke", *overrides)
    assert _stale_misses(REPO / "notebooks" / "03_interpret.ipynb", rules) == ["modclust/analysis/selectivity.py"]


def test_a_stage_depends_on_the_package_data_it_reads(smoke_rules):
    """The paper's matplotlib style is read by modclust.paper.figures, not imported."""
    assert "modclust/paper/modclust.mplstyle" in _closure(smoke_rules, "build/smoke/01_train.ipynb")


def test_a_preset_depends_on_the_presets_it_extends():
    rules = _make_prerequisites("fashion")
    chain = [str(p.relative_to(REPO)) for p in preset_chain(REPO / "presets" / "fashion.yaml")]
    assert len(chain) > 1, "fashion extends paper"
    assert set(chain) <= _closure(rules, "build/fashion/01_train.ipynb")


def test_imports_inside_functions_are_followed(tmp_path):
    pkg = tmp_path / "modclust"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from modclust.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import modclust.c\n")
    (pkg / "c.py").write_text("")
    (pkg / "sub" / "style.mplstyle").write_text("")
    found = {str(p.relative_to(tmp_path)) for p in import_closure("from modclust.sub.a import f", tmp_path)}
    assert found == {"modclust/__init__.py", "modclust/sub/__init__.py", "modclust/sub/a.py", "modclust/sub/b.py",
                     "modclust/c.py", "modclust/sub/style.mplstyle"}


def test_a_preset_chain_that_cannot_resolve_is_one_clear_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(DependencyError, match="cycle: a -> b -> a"):
        preset_chain(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: nowhere\n")
    with pytest.raises(PresetError, match=r"no preset .*nowhere.yaml \(extended by .*c.yaml\)"):
        load_preset(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("extends: [a]\n")
    with pytest.raises(PresetError, match="'extends' names one preset"):
        load_preset(tmp_path / "d.yaml")


# -- the table of stages -----------------------------------------------------------------------

def test_every_notebook_is_a_declared_stage_and_every_stage_a_notebook():
    """In the order of their numbers, which is the order they run and are numbered in."""
    assert [p.stem for p in NOTEBOOKS] == stage_table.names()
    assert [int(s.name.split("_")[0]) for s in STAGES] == list(range(1, len(STAGES) + 1))
    stage_table.check()


def _make_variables(preset: str) -> dict[str, str]:
    """The variables of make's database for ``make _results PRESET=preset`` (the last one)."""
    out = subprocess.run(["make", "-pqR", "--no-print-directory", f"PRESET={preset}", "_results"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    db = out.stdout.rsplit("\n# Variables\n", 1)[-1]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^(\w+) :?= ?(.*)$", db, flags=re.M)}


def test_make_takes_the_stages_and_what_they_read_from_the_table(smoke_rules):
    variables = _make_variables("smoke")
    assert variables["STAGES"].split() == stage_table.names()
    for i, stage in enumerate(STAGES, start=1):
        target = f"build/smoke/{stage.name}.ipynb"
        read = {p for p in smoke_rules[target] if re.fullmatch(r"build/smoke/\w+\.ipynb", p)}
        assert read == {f"build/smoke/{r}.ipynb" for r in stage.reads}, stage.name
        assert variables[f"STAGE_NUMBER_{stage.name}"] == str(i)
    assert smoke_rules["_results"] == {f"build/smoke/{s}.ipynb" for s in stage_table.names()}


def test_pipeline_mk_lists_no_stage_by_hand():
    text = (REPO / "pipeline.mk").read_text()
    named = sorted({s for s in stage_table.names() if s in text})
    assert not named, f"pipeline.mk names stages {named}: declare them in modclust/pipeline/stage_table.py only"
    assert not re.search(r"^\s*(STAGES|STAGE_INPUTS_\w+)\s*:?=", text, flags=re.M)


def test_deps_runs_as_a_script_before_the_package_can_be_imported(tmp_path):
    """As make runs it (plain python3): the table is read from its file; nothing of the package is imported."""
    out = tmp_path / "deps.mk"
    done = subprocess.run([sys.executable, "-I", str(REPO / "modclust" / "pipeline" / "deps.py"), str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^STAGES := (.*)$", out.read_text(), flags=re.M).group(1).split() == stage_table.names()


def test_a_stage_declared_without_its_notebook_is_one_clear_error(tmp_path):
    (tmp_path / "modclust" / "pipeline").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "presets").mkdir()
    table = (REPO / "modclust" / "pipeline" / "stage_table.py").read_text()
    (tmp_path / "modclust" / "pipeline" / "stage_table.py").write_text(
        table + '\nSTAGES = (Stage("01_a"), Stage("02_b", reads=("01_a",)))\n')
    (tmp_path / "notebooks" / "01_a.ipynb").write_text(json.dumps({"cells": []}))
    with pytest.raises(DependencyError, match=r"stage 02_b is declared .* but there is no notebooks/02_b.ipynb"):
        makefile(tmp_path)
    (tmp_path / "notebooks" / "02_b.ipynb").write_text(json.dumps({"cells": []}))
    assert "STAGE_INPUTS_02_b := 01_a\n" in makefile(tmp_path)


def _inputs(tex: str) -> list[str]:
    return re.findall(r"\\input\{([^}]*)\}", re.sub(r"(?<!\\)%.*", "", tex))


def test_the_paper_inputs_every_stage_s_macros_and_section_through_the_table():
    """main.tex inputs the generated list of macro files in its preamble and that of sections in
    its body, and none of them itself; every section of paper/ and every macro file the package or a
    notebook writes for a stage is declared (so a stage's part of the paper cannot be left out)."""
    main = (REPO / "paper" / "main.tex").read_text()
    preamble, body = main.split("\\begin{document}")
    assert "generated/" + stage_table.STAGE_MACROS in _inputs(preamble)
    assert "generated/" + stage_table.STAGE_SECTIONS in _inputs(body)
    macros = [m for s in STAGES for m in s.macros]
    sections = [s.section for s in STAGES if s.section]
    assert len(set(macros)) == len(macros) and len(set(sections)) == len(sections)
    assert not set(_inputs(main)) & ({f"generated/{m}" for m in macros} | set(sections)), "input twice"
    assert sorted(sections) == sorted(p.name for p in (REPO / "paper").glob("*_section.tex"))
    written = {m for p in [*(REPO / "modclust" / "paper").glob("*.py"), *(REPO / "notebooks").glob("*.ipynb")]
               for m in re.findall(r'/ \\?"(\w+\.tex)\\?"', p.read_text())}  # in a notebook's JSON: / \"cnn.tex\"
    direct = {Path(i).name for i in _inputs(main)}  # written at compile time (the claims), input by main.tex
    assert written - direct == set(macros)
    assert PAPER_STAGES == tuple(s.name for s in STAGES if s.paper)
    assert {s.name for s in STAGES if s.macros or s.section} <= set(PAPER_STAGES)


def test_a_stage_reads_only_its_own_studys_code(smoke_rules):
    """A notebook checks its parameters against its own study's settings, so a change to the CNN's or
    the transformer's code does not rerun the MLP's stages, and the other way round."""
    others = {"modclust/experiments/cnn_study.py", "modclust/experiments/modular_addition.py",
              "modclust/core/cnn.py", "modclust/core/transformer.py", "modclust/analysis/fourier.py"}
    for stage in ("01_train", "02_ablate", "03_interpret", "04_circuits", "05_numbers", "06_beyond"):
        assert not others & _closure(smoke_rules, f"build/smoke/{stage}.ipynb"), stage
    assert "modclust/experiments/modular_addition.py" not in _closure(smoke_rules, "build/smoke/07_cnn.ipynb")
    assert "modclust/experiments/cnn_study.py" not in _closure(smoke_rules, "build/smoke/08_modadd.ipynb")
