"""modclust: train neural networks to be modular, and measure whether that helps interpretability.

The names a user needs, from the two layers below the experiments: the model, its partitions
and clusterability, data, training, the optimizer and checkpoints (:mod:`modclust.core`), and
the measurements of a trained model (:mod:`modclust.analysis`): one function per analysis, for
any ``nn.Module`` (the seed's MLP runs on its fast kernels): :func:`ablate` (cluster OFF / ON),
:func:`label_semanticity`, :func:`unit_selectivity`, :func:`spectral_null` (clusters found after
training against shuffled weights), :func:`greedy_circuits` and :func:`mask_circuits` (per-label
circuits), :func:`faithfulness` (how a circuit behaves on held-out inputs), and
:func:`unit_activations`. The experiment grid, the paper and the pipeline
(:mod:`modclust.experiments`, ``modclust.paper``, ``modclust.pipeline``) are imported from their
own modules; nothing here imports them.
"""

from modclust.analysis.any_model import (ablate, faithfulness, greedy_circuits, label_semanticity, mask_circuits,
                                         spectral_null, unit_activations, unit_selectivity)
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
    "balanced_indices",
    "clusterability",
    "clusterability_and_grad",
    "clusterability_grad",
    "clusterability_loss",
    "faithfulness",
    "greedy_circuits",
    "label_semanticity",
    "load",
    "load_run",
    "mask_circuits",
    "spectral_null",
    "train",
    "train_many",
    "unit_activations",
    "unit_selectivity",
]
