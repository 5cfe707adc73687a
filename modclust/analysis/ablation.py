"""Accuracy, class-wise accuracy and cluster ablations (OFF / ON) of the seed's MLP, batched.

An ablation zeroes rows U_c and columns V_c of the clustered matrix. All 2k ablated copies
(k OFF, k ON) are evaluated in one batched forward pass rather than one pass per copy
(:func:`ablate_mlp`, the fast kernel of the public :func:`modclust.analysis.any_model.ablate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from modclust.core.checks import check_int, check_labels
from modclust.core.model import MLP, forward
from modclust.core.partition import Partition


def classwise_correct(pred: Tensor, y: Tensor, n_classes: int) -> Tensor:
    """Per-class accuracy of predictions (..., N) against labels (N,): shape (..., n_classes).

    A class with no example in ``y`` scores 0.
    """
    n_classes = check_int("n_classes", n_classes, 1)
    check_labels("y", y, n_classes)
    onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)  # (N, C)
    correct = (pred == y).to(torch.float64)
    per_class = correct @ onehot
    counts = onehot.sum(0)
    return torch.where(counts > 0, per_class / counts.clamp(min=1), torch.zeros_like(per_class))


@torch.no_grad()
def accuracy(model: MLP, x: Tensor, y: Tensor) -> float:
    return (model(x).argmax(-1) == y).double().mean().item()


@torch.no_grad()
def classwise_accuracy(model: MLP, x: Tensor, y: Tensor, n_classes: int = 10) -> list[float]:
    return classwise_correct(model(x).argmax(-1), y, n_classes).tolist()


@dataclass
class AblationResult:
    """Test accuracy (overall and per class) of the full model and with each cluster OFF / ON."""

    layer: str
    full_acc: float
    full_classwise: list[float]
    off_acc: list[float]  # [k]: cluster c zeroed
    off_classwise: list[list[float]]  # [k][n_classes]
    on_acc: list[float]  # [k]: every cluster but c zeroed
    on_classwise: list[list[float]]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@torch.no_grad()
def ablate_mlp(model: MLP, partition: Partition, x: Tensor, y: Tensor, layer: str = "fc2",
               n_classes: int = 10) -> AblationResult:
    """Turn each cluster of ``layer`` OFF and ON; one batched forward for all 2k copies.

    The seed's MLP's fast kernel behind :func:`modclust.analysis.any_model.ablate` (the public
    function, for any model), which calls it for an MLP and a partition of one of its layers.
    """
    idx = model.layer_index(layer)
    weights = [w.detach() for w in model.weights()]
    partition.check_fits(weights[idx], layer)
    k = partition.k
    masks = torch.cat([partition.ablation_masks("off"), partition.ablation_masks("on")]).to(weights[idx])
    stacked = weights.copy()
    stacked[idx] = torch.cat([weights[idx].unsqueeze(0), weights[idx] * masks])  # (1 + 2k, out, in)
    pred = forward(stacked, x.flatten(1)).argmax(-1)  # (1 + 2k, N)
    acc = (pred == y).double().mean(-1).tolist()
    cw = classwise_correct(pred, y, n_classes).tolist()
    return AblationResult(layer, acc[0], cw[0], acc[1:1 + k], cw[1:1 + k], acc[1 + k:], cw[1 + k:])


def order_by_importance(off_acc: Sequence[float]) -> list[int]:
    """Clusters sorted by how much turning them OFF hurts (lowest OFF accuracy first; ties keep
    cluster order, an undefined (nan) accuracy goes last).

    Cluster indices mean nothing across seeds (cluster 0 of one seed has no relation to
    cluster 0 of another), so per-cluster results (``AblationResult.off_acc``, ``on_acc``, ...)
    are averaged over seeds by this rank.
    """
    acc = [float(a) for a in off_acc]
    return sorted(range(len(acc)), key=lambda i: (acc[i] != acc[i], acc[i]))
