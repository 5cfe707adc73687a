"""modclust: train neural networks to be modular, and measure whether that helps interpretability.

The names a user needs, from the two layers below the experiments: the model, its partitions
and clusterability, data, training, the optimizer and checkpoints (:mod:`modclust.core`), and
the measurements of a trained model (:mod:`modclust.analysis`). The experiment grid, the paper
and the pipeline (:mod:`modclust.experiments`, ``modclust.paper``, ``modclust.pipeline``) are
imported from their own modules; nothing here imports them.
"""

from modclust.analysis.any_model import (ablate_clusters, ablate_units, layer_selectivity, layer_semanticity,
                                         layer_spectral_null, masked_faithfulness, param_greedy_circuits,
                                         param_mask_circuits, unit_activations)
from modclust.analysis.ablation import ablate
from modclust.analysis.circuits import faithfulness, greedy_circuit, greedy_circuits_fast
from modclust.analysis.masks import mask_circuits
from modclust.analysis.selectivity import unit_selectivity
from modclust.analysis.semanticity import label_semanticity
from modclust.analysis.spectral import spectral_null
from modclust.core.checkpoint import load as load_run
from modclust.core.clusterability import clusterability, clusterability_and_grad, clusterability_grad
from modclust.core.data import DataCorruptError, Dataset, DataUnavailableError, balanced_indices, load
from modclust.core.model import MLP
from modclust.core.optim import Modularity
from modclust.core.partition import Partition
from modclust.core.units import UnitClusters
from modclust.core.train import TrainConfig, TrainingDivergedError, TrainResult, clusterability_loss, train, train_many

__all__ = [
    "DataCorruptError",
    "DataUnavailableError",
    "Dataset",
    "MLP",
    "Modularity",
    "Partition",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "UnitClusters",
    "ablate",
    "ablate_clusters",
    "ablate_units",
    "balanced_indices",
    "clusterability",
    "clusterability_and_grad",
    "clusterability_grad",
    "clusterability_loss",
    "faithfulness",
    "greedy_circuit",
    "greedy_circuits_fast",
    "label_semanticity",
    "layer_selectivity",
    "layer_semanticity",
    "layer_spectral_null",
    "load",
    "load_run",
    "mask_circuits",
    "masked_faithfulness",
    "param_greedy_circuits",
    "param_mask_circuits",
    "spectral_null",
    "train",
    "train_many",
    "unit_activations",
    "unit_selectivity",
]
