"""Sparsity: which weights are live, and what a circuit's structure would be by chance among them.

The clusterability loss drives about three quarters of a layer's weight to nearly zero, so a
claim that its circuits are smaller *because of the blocks* must be set against a network that
is equally sparse without blocks. These are the measures that comparison needs:

- :func:`live_mask` / :func:`live_density`: a weight is *live* when ``|w| > cutoff * max|W|``
  (:data:`LIVE_CUTOFF`, 1 % of the layer's largest weight). The blocks' off-block weights
  (median |w| about 6e-4 against 0.14 inside, for the seed's setting) fall below it; almost no
  weight of an unclustered layer does.
- :func:`random_subset_iou`: the IoU two random subsets of a pool would have, given their
  sizes: the floor against which the overlap of two labels' circuits means something.
- :func:`proportional_floor`: the share of a circuit's weights in its dominant cluster if the
  circuit were spread over the clusters in proportion to their live weights (0.25 for four
  equally live blocks, not the 1/k^2 of a dense layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from modclust.core.checks import check_float
from modclust.core.partition import Partition

LIVE_CUTOFF = 0.01
"""A weight is live when its magnitude exceeds this fraction of the layer's largest magnitude."""


def live_mask(weight: Tensor, cutoff: float = LIVE_CUTOFF) -> Tensor:
    """Bool mask of ``weight``'s live entries: ``|w| > cutoff * max|w|`` (none for an all-zero weight)."""
    cutoff = check_float("cutoff", cutoff, 0.0, 1.0, hint="a fraction of the layer's largest |w|, e.g. 0.01")
    a = weight.detach().abs()
    top = float(a.max()) if a.numel() else 0.0
    return a > cutoff * top if top > 0 else torch.zeros_like(a, dtype=torch.bool)


def live_density(weight: Tensor, cutoff: float = LIVE_CUTOFF) -> float:
    """The share of ``weight``'s entries that are live (:func:`live_mask`)."""
    if weight.numel() == 0:
        raise ValueError("live_density of an empty weight is undefined")
    return float(live_mask(weight, cutoff).float().mean())


def random_subset_iou(size_a: int, size_b: int, pool: int) -> float:
    """The expected IoU of two independent uniformly random subsets of sizes ``size_a`` and ``size_b``
    of a pool of ``pool`` items: E|A & B| = ab / pool, so IoU is about that over a + b - ab / pool.

    (The ratio of expectations: exact enough for pools of hundreds; nan when both are empty.)
    """
    if min(size_a, size_b) < 0 or pool < max(size_a, size_b, 1):
        raise ValueError(f"subset sizes {size_a}, {size_b} must lie in [0, pool] with pool >= 1, got pool {pool}")
    inter = size_a * size_b / pool
    union = size_a + size_b - inter
    return float("nan") if union == 0 else inter / union


def mean_pairwise_iou(masks: Sequence[Tensor], pool: Tensor) -> tuple[float, float]:
    """Mean IoU over pairs of ``masks`` (bool, one shape), and the mean the same sizes would give as
    random subsets of ``pool`` (the live weights they were drawn from; see :func:`random_subset_iou`).

    Pairs whose union is empty are left out; (nan, nan) with fewer than two masks.
    """
    flat = [m.flatten().bool() for m in masks]
    n_pool = int(pool.sum())
    seen, chance = [], []
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            union = int((flat[i] | flat[j]).sum())
            if union == 0:
                continue
            seen.append(int((flat[i] & flat[j]).sum()) / union)
            a, b = int(flat[i].sum()), int(flat[j].sum())
            chance.append(random_subset_iou(a, b, max(n_pool, a, b)))
    if not seen:
        return float("nan"), float("nan")
    return sum(seen) / len(seen), sum(chance) / len(chance)


def proportional_floor(live: Tensor, partition: Partition) -> float:
    """The dominant-cluster share of a circuit spread over ``partition``'s blocks in proportion to
    their live weights: max_k (live weights in block k) / (all live weights of the layer).

    Weights outside every block count in no cluster, as in
    :func:`modclust.analysis.circuits.cluster_share`. nan for a layer with no live weight.
    """
    live = live.bool().cpu()
    partition.check_fits(live, "live mask")
    total = int(live.sum())
    if total == 0:
        return float("nan")
    inside = [int(live[list(r)][:, list(c)].sum()) for r, c in zip(partition.rows, partition.cols)]
    return max(inside) / total
