"""Unit-level interpretability: max-activating inputs and label semanticity.

The math of :func:`modclust.analysis.any_model.label_semanticity` (the public function, for
any model): the seed's MLP's activations (:func:`layer_activations`), each unit's top-k inputs
(:func:`top_k_indices`) and the score from them (:func:`semanticity_from_top_k`).

Every unit's top-k inputs come from one forward pass over the data and one sort, not one
pass per unit. Ties are broken deterministically: among equal activations the later example
ranks higher, which is what a stable ascending sort followed by "take the last k" gives
(the seed's ``np.argsort(a)[-k:]`` with a stable sort).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from modclust.core.checks import check_int, check_labels
from modclust.core.model import MLP


@torch.no_grad()
def layer_activations(model: MLP, x: Tensor, layer: str) -> Tensor:
    """(N, units) outputs of ``layer``: post-ReLU for hidden layers, logits for the last."""
    model.layer_index(layer)  # validates the name
    return model.activations(x)[layer]


def top_k_indices(acts: Tensor, k: int) -> Tensor:
    """(units, k) example indices with the highest activation per unit, highest first."""
    n = acts.shape[0]
    k = check_int("k", k, hint=f"the number of top examples per unit, 1 .. {n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of examples ({n}), got {k}")
    order = torch.sort(acts, dim=0, stable=True).indices  # ascending; ties keep index order
    return order[-k:].flip(0).T.contiguous()


@dataclass
class Semanticity:
    """Label semanticity of a layer: ``score = 1 - mean_u(u / n_classes)``.

    ``distinct[i]`` is the number u of distinct labels among unit i's top-k examples;
    ``histogram[u - 1]`` counts units with u distinct labels; ``reverse_cumulative[i]`` counts
    units with u >= i + 1 (the seed's curve); ``label_counts[i, c]`` counts label c among unit
    i's top-k.
    """

    layer: str
    k: int
    score: float
    distinct: list[int]
    histogram: list[int]
    reverse_cumulative: list[int]
    label_counts: list[list[int]]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def semanticity_from_top_k(top: Tensor, y: Tensor, n_classes: int = 10, layer: str = "") -> Semanticity:
    """Label semanticity from (units, k) top-k example indices and labels (N,)."""
    n_classes = check_int("n_classes", n_classes, 1)
    labels = y[top]
    check_labels("y", labels, n_classes)  # (units, k)
    counts = torch.nn.functional.one_hot(labels, n_classes).sum(1)  # (units, C)
    distinct = (counts > 0).sum(1)
    hist = torch.bincount(distinct - 1, minlength=n_classes)[:n_classes]
    rev = hist.flip(0).cumsum(0).flip(0)
    score = 1.0 - (distinct.double() / n_classes).mean().item()
    return Semanticity(layer, top.shape[1], score, distinct.tolist(), hist.tolist(), rev.tolist(), counts.tolist())
