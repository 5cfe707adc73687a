"""The top level: ``import modclust as mc`` gives the names a user needs, and no more than the
layers below the experiments (importing it loads neither the paper nor the pipeline)."""

import subprocess
import sys

import modclust as mc
from modclust.analysis import ablation, circuits, masks, selectivity, semanticity, spectral
from modclust.core import checkpoint, data, optim, train

EXPORTED = {
    "ablate": ablation.ablate,
    "label_semanticity": semanticity.label_semanticity,
    "unit_selectivity": selectivity.unit_selectivity,
    "greedy_circuit": circuits.greedy_circuit,
    "greedy_circuits_fast": circuits.greedy_circuits_fast,
    "faithfulness": circuits.faithfulness,
    "mask_circuits": masks.mask_circuits,
    "spectral_null": spectral.spectral_null,
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


def test_the_top_level_imports_no_upper_layer() -> None:
    code = ("import sys, modclust; "
            "print(sorted(m for m in sys.modules if m.startswith(('modclust.experiments', 'modclust.paper', "
            "'modclust.pipeline', 'modclust.seed'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
