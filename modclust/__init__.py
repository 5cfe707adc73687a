"""modclust: train neural networks to be modular, and measure whether that helps interpretability."""

from modclust.core.clusterability import clusterability, clusterability_and_grad, clusterability_grad
from modclust.core.data import DataCorruptError, Dataset, DataUnavailableError, load
from modclust.core.model import MLP
from modclust.core.optim import Modularity
from modclust.core.partition import Partition
from modclust.core.train import TrainConfig, TrainingDivergedError, TrainResult, clusterability_loss, train, train_many

__all__ = [
    "MLP",
    "DataCorruptError",
    "DataUnavailableError",
    "Dataset",
    "Modularity",
    "Partition",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "clusterability",
    "clusterability_and_grad",
    "clusterability_grad",
    "clusterability_loss",
    "load",
    "train",
    "train_many",
]
