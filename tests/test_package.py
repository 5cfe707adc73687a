"""The top level: ``import modclust as mc`` gives the names a user needs, and no more than the
layers below the experiments (importing it loads neither the paper nor the pipeline)."""

import subprocess
import sys

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
