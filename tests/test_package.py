"""The top level: ``import modclust as mc`` gives the names a user needs, and no more than the
layers below the experiments (importing it loads neither the paper nor the pipeline)."""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import modclust as mc
from modclust.analysis import any_model
from modclust.core import checkpoint, data, optim, train

EXPORTED = {
    "ablate": any_model.ablate,
    "label_semanticity": any_model.label_semanticity,
    "unit_selectivity": any_model.unit_selectivity,
    "spectral_null": any_model.spectral_null,
    "greedy_circuits": any_model.greedy_circuits,
    "mask_circuits": any_model.mask_circuits,
    "faithfulness": any_model.faithfulness,
    "unit_activations": any_model.unit_activations,
    "Modularity": optim.Modularity,
    "train": train.train,
    "train_many": train.train_many,
    "TrainConfig": train.TrainConfig,
    "load": data.load,
    "balanced_indices": data.balanced_indices,
    "load_run": checkpoint.load,
}


def test_the_top_level_exposes_the_analyses_and_training() -> None:
    for name, obj in EXPORTED.items():
        assert getattr(mc, name) is obj, name
        assert name in mc.__all__, name
    assert all(hasattr(mc, name) for name in mc.__all__)


def test_one_public_function_per_analysis() -> None:
    """The MLP-only kernels and the old pairs are not at the top level: one name per analysis."""
    gone = ["ablate_units", "ablate_clusters", "layer_semanticity", "layer_selectivity", "layer_spectral_null",
            "greedy_circuit", "greedy_circuits_fast", "param_greedy_circuits", "param_mask_circuits",
            "masked_faithfulness"]
    assert not [name for name in gone if hasattr(mc, name) or name in mc.__all__]


def test_the_top_level_imports_no_upper_layer() -> None:
    code = ("import sys, modclust; "
            "print(sorted(m for m in sys.modules if m.startswith(('modclust.experiments', 'modclust.paper', "
            "'modclust.pipeline', 'modclust.seed'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


PACKAGE = Path(mc.__file__).resolve().parent

STEPS = "the same step of each experiment, on its own model, always called through its module"
SHARED_NAMES: dict[str, tuple[set[str], str]] = {
    # name: (the modules that define it, why two definitions do not mislead)
    "main": ({"core.distributed", "pipeline.deps", "pipeline.stages", "seed.reproduce"}, "each module's command line"),
    "load": ({"core.checkpoint", "core.data"}, "a saved run, a dataset: called as checkpoint.load and data.load; "
             "the top level exports them as load_run and load"),
    "save": ({"core.checkpoint", "paper.figures"}, "a run's checkpoint, a figure's PDF: called through their modules"),
    "seeded_init": ({"core.cnn", "core.transformer"}, "each model's own initialisation, beside its make_* function"),
    "ablation_analysis": ({"experiments.classifier", "experiments.modular_addition"}, STEPS),
    "circuit_analysis": ({"experiments.classifier", "experiments.per_run"}, STEPS),
    "primary_records": ({"paper.numbers", "paper.controls_numbers", "paper.classifier_numbers", "paper.modadd_numbers"},
                        "each stage's numbers module hands its primary comparisons to modclust.paper.claims"),
    "ablation_figure": ({"paper.classifier_figures", "paper.modadd_figures"},
                        "each study's ablation figure, in its figures module"),
}


def _module_level_names() -> dict[str, set[str]]:
    """Public function and class names defined at module level -> the modules (dotted, below
    modclust) that define them."""
    defined: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if not node.name.startswith("_"):
                    defined[node.name].add(module)
    return defined


def test_no_public_name_is_defined_in_two_modules() -> None:
    """One name, one meaning: a function or class defined in two modules (e.g. two
    ``layer_clusterability`` with different arguments) must be merged or renamed; the few names
    that are one role in parallel modules are listed in SHARED_NAMES, with why."""
    shared = {name: mods for name, mods in _module_level_names().items() if len(mods) > 1}
    unexplained = {name: sorted(mods) for name, mods in shared.items()
                   if name not in SHARED_NAMES or SHARED_NAMES[name][0] != mods}
    assert not unexplained, f"public names defined in more than one module of modclust: {unexplained}"
    stale = sorted(set(SHARED_NAMES) - set(shared))
    assert not stale, f"SHARED_NAMES lists names no longer shared: {stale}"
