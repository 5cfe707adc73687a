"""modclust: train neural networks to be modular, and measure whether that helps interpretability."""

from modclust.clusterability import clusterability, clusterability_and_grad, clusterability_grad
from modclust.data import DataCorruptError, Dataset, DataUnavailableError, load
from modclust.model import MLP
from modclust.optim import Modularity
from modclust.partition import Partition
from modclust.train import TrainConfig, TrainingDivergedError, TrainResult, clusterability_loss, train, train_many

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
