"""Unit interpretability beyond counting distinct labels: class selectivity and mutual information.

The seed's label semanticity only looks at each unit's top-k inputs. Two standard measures
use every input instead:

- class selectivity (Morcos et al. 2018): (mu_max - mu_rest) / (mu_max + mu_rest), with mu_max
  the largest class-mean activation and mu_rest the mean of the other class means; 0 when the
  unit responds equally to every class, 1 when it responds to one class only (for ReLU units);
- mutual information I(A; Y) between the unit's activation, binned, and the label, in bits: how
  much knowing the activation tells about the class.

Per cluster the same questions become: does a cluster's activation single out some classes?
The cluster's class profile is its units' mean activation per class, normalised to sum to 1.
The public function for a layer of any model is :func:`modclust.analysis.any_model.unit_selectivity`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from modclust.core.checks import check_finite_array, check_fraction, check_int, check_labels
from modclust.analysis.semanticity import top_k_indices


def _check_inputs(acts: Tensor, y: Tensor, n_classes: int) -> int:
    """Activations (N, units), finite, with one label in 0 .. n_classes - 1 each; returns n_classes."""
    n_classes = check_int("n_classes", n_classes, 1)
    if acts.ndim != 2 or len(acts) != len(y):
        raise ValueError(f"acts must be (N, units) with one label per row, got acts of shape "
                         f"{tuple(acts.shape)} and {len(y)} labels")
    check_finite_array("acts", acts)
    check_labels("y", y, n_classes)
    return n_classes


def class_means(acts: Tensor, y: Tensor, n_classes: int = 10) -> Tensor:
    """(n_classes, units) mean activation per class; a class with no example gets 0."""
    n_classes = _check_inputs(acts, y, n_classes)
    onehot = torch.nn.functional.one_hot(y.long(), n_classes).to(torch.float64)  # (N, C)
    counts = onehot.sum(0).clamp(min=1)
    return (onehot.T @ acts.to(torch.float64)) / counts[:, None]


def selectivity_index(acts: Tensor, y: Tensor, n_classes: int = 10) -> Tensor:
    """(units,) class selectivity index; a unit silent on every input gets 0.

    Only classes present in ``y`` count. Meant for non-negative (post-ReLU) activations.
    """
    n_classes = _check_inputs(acts, y, n_classes)
    present = torch.bincount(y.long(), minlength=n_classes) > 0
    means = class_means(acts, y, n_classes)[present]  # (C', units)
    c = means.shape[0]
    if c < 2:
        raise ValueError("selectivity needs examples of at least two classes")
    top = means.max(0).values
    rest = (means.sum(0) - top) / (c - 1)
    denom = top + rest
    return torch.where(denom > 0, (top - rest) / torch.where(denom > 0, denom, 1), torch.zeros_like(top))


def bin_activations(acts: Tensor, n_bins: int = 10, method: str = "bins") -> Tensor:
    """(N, units) integer codes of each unit's activation.

    ``"bins"``: ``n_bins`` equal-width bins over the unit's own range, exact zeros (a silent
    ReLU) in a bin of their own; ``"threshold"``: 1 if active (> 0) else 0.
    """
    check_finite_array("acts", acts)
    if method == "threshold":
        return (acts > 0).long()
    if method != "bins":
        raise ValueError(f"method must be 'bins' or 'threshold', got {method!r}")
    n_bins = check_int("n_bins", n_bins, 1)
    a = acts.to(torch.float64)
    lo, hi = a.min(0).values, a.max(0).values
    width = torch.where(hi > lo, (hi - lo) / n_bins, torch.ones_like(hi))
    codes = ((a - lo) / width).floor().clamp(0, n_bins - 1).long() + 1
    return torch.where(a == 0, torch.zeros_like(codes), codes)


def _entropy_bits(counts: Tensor) -> Tensor:
    """Entropy in bits of count vectors along the last dim."""
    p = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    return -(torch.where(p > 0, p * torch.log2(p.clamp(min=1e-300)), torch.zeros_like(p))).sum(-1)


def mutual_information(acts: Tensor, y: Tensor, n_classes: int = 10, n_bins: int = 10,
                       method: str = "bins") -> Tensor:
    """(units,) I(binned activation; label) in bits, from the joint histogram (plug-in estimate).

    The plug-in estimate is biased upwards by about (bins - 1)(classes - 1) / (2 N ln 2) bits,
    small for a test set of 10,000 and 10 bins.
    """
    n_classes = _check_inputs(acts, y, n_classes)
    codes = bin_activations(acts, n_bins, method)  # (N, U)
    n_codes = int(codes.max()) + 1 if codes.numel() else 1
    n, units = codes.shape
    flat = (torch.arange(units)[None, :] * n_codes + codes) * n_classes + y.long()[:, None]
    joint = torch.bincount(flat.ravel(), minlength=units * n_codes * n_classes)
    joint = joint.view(units, n_codes, n_classes).to(torch.float64)
    h_y = _entropy_bits(joint.sum(1))
    h_a = _entropy_bits(joint.sum(2))
    h_ay = _entropy_bits(joint.view(units, -1))
    return (h_a + h_y - h_ay).clamp(min=0)


def label_entropy(y: Tensor, n_classes: int = 10) -> float:
    """H(Y) in bits: the most information any unit can carry about the label."""
    n_classes = check_int("n_classes", n_classes, 1)
    check_labels("y", y, n_classes)
    return float(_entropy_bits(torch.bincount(y.long(), minlength=n_classes).to(torch.float64)))


def _groups_of(groups: Sequence[Sequence[int]], units: int) -> list[list[int]]:
    out = [[check_int(f"unit index of cluster {k}", i) for i in g] for k, g in enumerate(groups)]
    for k, g in enumerate(out):
        if not g:
            raise ValueError(f"cluster {k} has no units")
        if min(g) < 0 or max(g) >= units:
            raise ValueError(f"cluster {k} has unit indices outside 0..{units - 1}")
    return out


@dataclass
class ClusterSelectivity:
    """Per cluster of units: class profile, and selectivity / MI of the cluster and its units.

    ``profile[k][c]`` is cluster k's mean activation on class c, normalised over classes;
    ``selectivity`` and ``mi`` treat the cluster's mean activation as one unit;
    ``unit_selectivity`` and ``unit_mi`` average its units' own scores; ``top_classes[k]`` lists
    classes by decreasing profile.
    """

    profile: list[list[float]]
    selectivity: list[float]
    mi: list[float]
    unit_selectivity: list[float]
    unit_mi: list[float]
    top_classes: list[list[int]]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cluster_selectivity(acts: Tensor, y: Tensor, groups: Sequence[Sequence[int]], n_classes: int = 10,
                        n_bins: int = 10) -> ClusterSelectivity:
    """Selectivity of clusters of units (e.g. a partition's ``rows`` for the layer's outputs)."""
    n_classes = _check_inputs(acts, y, n_classes)
    n_bins = check_int("n_bins", n_bins, 1)
    gs = _groups_of(groups, acts.shape[1])
    cluster_acts = torch.stack([acts[:, g].to(torch.float64).mean(1) for g in gs], 1)  # (N, k)
    means = class_means(cluster_acts, y, n_classes)  # (C, k)
    total = means.sum(0, keepdim=True)
    profile = torch.where(total > 0, means / torch.where(total > 0, total, 1), torch.full_like(means, 1 / n_classes))
    unit_sel = selectivity_index(acts, y, n_classes)
    unit_mi = mutual_information(acts, y, n_classes, n_bins)
    return ClusterSelectivity(
        profile=profile.T.tolist(),
        selectivity=selectivity_index(cluster_acts, y, n_classes).tolist(),
        mi=mutual_information(cluster_acts, y, n_classes, n_bins).tolist(),
        unit_selectivity=[float(unit_sel[g].mean()) for g in gs],
        unit_mi=[float(unit_mi[g].mean()) for g in gs],
        top_classes=torch.argsort(profile.T, dim=1, descending=True, stable=True).tolist(),
    )


@dataclass
class UnitSelectivity:
    """Selectivity index and MI (bits) of every unit of a layer, with their means."""

    layer: str
    selectivity: list[float]
    mi: list[float]
    mean_selectivity: float
    mean_mi: float
    label_entropy: float
    n_bins: int
    dead_share: float  # units that never fire on these inputs (activation never above 0)
    live_selectivity: float  # mean selectivity of the other units (nan when none fires)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def live_split(acts: Tensor, sel: Tensor) -> tuple[float, float]:
    """(share of dead units, mean selectivity of the live ones) for activations (N, units).

    Class selectivity rewards a unit that fires for few inputs, and a dead unit scores 0: a
    layer's mean mixes the two, so it is reported beside the share of dead units and on the
    live units alone (mutual information, which a silent unit cannot raise, beside both).
    """
    dead = acts.max(0).values <= 0  # (units,)
    live = sel[~dead]
    return float(dead.float().mean()), float(live.mean()) if live.numel() else math.nan


def cluster_top_examples(acts: Tensor, groups: Sequence[Sequence[int]], k: int = 16) -> Tensor:
    """(clusters, k) indices of the inputs that most activate each cluster (its mean activation).

    The max-activating image grid per cluster; ties go to the later example, as in
    :func:`modclust.analysis.semanticity.top_k_indices`.
    """
    gs = _groups_of(groups, acts.shape[1])
    cluster_acts = torch.stack([acts[:, g].mean(1) for g in gs], 1)
    return top_k_indices(cluster_acts, k)


def binary_entropy_bits(p: float) -> float:
    """H of a coin with P(heads) = p, in bits (the MI of a unit that fires for one class only)."""
    p = check_fraction("p", p, hint="a probability")
    if p <= 0 or p >= 1:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
