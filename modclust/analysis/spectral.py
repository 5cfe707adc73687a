"""Clusters found after training, and whether they beat chance.

Training with the loss fixes the clusters in advance (equal blocks). The fair baseline asks
what clusters an already-trained layer has by itself: bipartite spectral co-clustering
(Dhillon 2001; scikit-learn's ``SpectralCoclustering``) of |W| groups output units (rows) with
the input units (columns) they are most strongly connected to. Whether the clusters it finds
mean anything is judged against a null, as Filan et al. (2021) do: shuffle the matrix's
entries (which keeps its weight distribution and destroys its structure), recluster each
shuffled copy the same way, and express the real C and n-cut as z-scores against those draws.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from modclust.core.checks import check_finite_array, check_int
from modclust.core.clusterability import clusterability
from modclust.core.partition import Partition

SEED_MAX = 2**32 - 1  # scikit-learn's largest random_state


def _as_numpy(weight: Tensor | np.ndarray) -> np.ndarray:
    w = weight.detach().cpu().numpy() if isinstance(weight, Tensor) else np.asarray(weight)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix (out x in), got shape {tuple(w.shape)}")
    w = w.astype(np.float64)
    check_finite_array("weight", w)
    return w


def _reassign_orphans(a: np.ndarray, row_labels: np.ndarray, col_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Give the units of clusters that lack rows or columns to the cluster they connect to most.

    Co-clustering may return a cluster with rows but no columns (or the reverse); a Partition
    needs both. Such a cluster's units join the surviving cluster whose opposite side carries
    most of their |W| mass, so the partition still covers every unit that was clustered.
    Returns the new labels (renumbered 0..k'-1) and the dropped cluster ids.
    """
    ids = sorted(set(row_labels[row_labels >= 0]) | set(col_labels[col_labels >= 0]))
    alive = [c for c in ids if (row_labels == c).any() and (col_labels == c).any()]
    dropped = [int(c) for c in ids if c not in alive]
    if not alive:
        raise ValueError("spectral co-clustering found no cluster with both rows and columns")
    if dropped:
        rows, cols = row_labels.copy(), col_labels.copy()
        for i in np.flatnonzero(np.isin(row_labels, dropped)):
            mass = [a[i, col_labels == c].sum() for c in alive]
            rows[i] = alive[int(np.argmax(mass))]
        for j in np.flatnonzero(np.isin(col_labels, dropped)):
            mass = [a[row_labels == c, j].sum() for c in alive]
            cols[j] = alive[int(np.argmax(mass))]
        row_labels, col_labels = rows, cols
    remap = {c: n for n, c in enumerate(alive)}
    remap[-1] = -1
    return (np.array([remap[int(v)] for v in row_labels]), np.array([remap[int(v)] for v in col_labels]), dropped)


def spectral_partition(weight: Tensor | np.ndarray, k: int, seed: int = 0) -> Partition:
    """Bipartite spectral co-clustering of |W| into (at most) k clusters, as a Partition.

    Rows or columns that are entirely zero have no edges, so they are left out of every cluster
    (the co-clustering's normalisation would divide by zero on them). A cluster that comes back
    without rows or without columns is merged away (with a warning), so the result may have
    fewer than k clusters; ``Partition.k`` says how many.
    """
    from sklearn.cluster import SpectralCoclustering  # imported here: sklearn is slow to import

    k = check_int("k", k, hint="the number of clusters")
    seed = check_int("seed", seed, 0, SEED_MAX)
    a = np.abs(_as_numpy(weight))
    live_r = np.flatnonzero(a.sum(1) > 0)
    live_c = np.flatnonzero(a.sum(0) > 0)
    n = min(len(live_r), len(live_c))
    if not 1 <= k <= n:
        raise ValueError(
            f"cannot co-cluster a {a.shape[0]} x {a.shape[1]} matrix ({len(live_r)} nonzero rows, "
            f"{len(live_c)} nonzero columns) into k={k} clusters: need 1 <= k <= {n}"
        )
    row_labels = np.full(a.shape[0], -1)
    col_labels = np.full(a.shape[1], -1)
    if k == 1:
        row_labels[live_r], col_labels[live_c] = 0, 0
    else:
        sub = a[np.ix_(live_r, live_c)]
        model = SpectralCoclustering(n_clusters=k, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # k-means on tiny inputs
            model.fit(sub)
        row_labels[live_r] = model.row_labels_
        col_labels[live_c] = model.column_labels_
    row_labels, col_labels, dropped = _reassign_orphans(a, row_labels, col_labels)
    if dropped:
        warnings.warn(
            f"spectral co-clustering returned {len(dropped)} of {k} clusters with rows but no "
            f"columns (or the reverse); their units joined the clusters they connect to most, "
            f"leaving {k - len(dropped)} clusters",
            stacklevel=2,
        )
    return Partition.from_labels(row_labels, col_labels)


def _labels(part: Partition) -> tuple[np.ndarray, np.ndarray]:
    rows = np.full(part.shape[0], -1)
    cols = np.full(part.shape[1], -1)
    for c, (r, v) in enumerate(zip(part.rows, part.cols)):
        rows[list(r)] = c
        cols[list(v)] = c
    return rows, cols


def ncut(weight: Tensor | np.ndarray, partition: Partition) -> float:
    """Normalised cut of the bipartite graph of |W| under a partition (lower = more modular).

    Nodes are the rows and columns of W, edge (i, j) weighs |W_ij|. Cluster c is the node set
    U_c + V_c; n-cut = sum_c cut(c) / vol(c), where cut(c) is the edge weight leaving the set
    and vol(c) the sum of its nodes' degrees. Units in no cluster count as outside every one.
    A cluster with no edges contributes 0. Ranges from 0 (no edge between clusters) to k.
    """
    a = np.abs(_as_numpy(weight))
    partition.check_fits(torch.empty(a.shape), "weight")
    rows, cols = _labels(partition)
    total = 0.0
    for c in range(partition.k):
        r, v = rows == c, cols == c
        vol = a[r].sum() + a[:, v].sum()
        if vol == 0:
            continue
        inside = a[np.ix_(r, v)].sum()
        cut = vol - 2 * inside  # edges of U_c or V_c that do not join U_c to V_c
        total += cut / vol
    return float(total)


def weight_clusterability(weight: Tensor | np.ndarray, partition: Partition) -> float:
    """C(W) of a matrix under a partition (squared weight inside the blocks over all)."""
    w = torch.as_tensor(_as_numpy(weight))
    partition.check_fits(w, "weight")
    return float(clusterability(w, partition.mask(dtype=w.dtype)))


def shuffle_weights(weight: Tensor | np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """The matrix with its entries permuted at random: same values, no structure."""
    w = _as_numpy(weight)
    return generator.permutation(w.ravel()).reshape(w.shape)


@dataclass
class SpectralNull:
    """Found clusters of a matrix scored against reclustered shuffled copies of it.

    ``z_c`` > 0 and ``z_ncut`` < 0 mean more clusterable than chance. ``p_c`` / ``p_ncut`` are
    one-sided empirical p-values with the +1 correction ((1 + #null at least as extreme) /
    (1 + draws)).
    """

    k: int
    n_draws: int
    seed: int
    c: float
    ncut: float
    null_c: list[float]
    null_ncut: list[float]
    z_c: float
    z_ncut: float
    p_c: float
    p_ncut: float
    partition: dict

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _z(x: float, null: np.ndarray) -> float:
    sd = null.std(ddof=1) if len(null) > 1 else 0.0
    if sd == 0:
        return 0.0 if x == null.mean() else math.copysign(math.inf, x - null.mean())
    return float((x - null.mean()) / sd)


def matrix_spectral_null(weight: Tensor | np.ndarray, k: int, n_draws: int = 20, seed: int = 0) -> SpectralNull:
    """Co-cluster W, then recluster ``n_draws`` entry-shuffled copies: z-scores of C and n-cut.

    The null of one matrix; :func:`modclust.analysis.any_model.spectral_null` gives it for a
    layer of any model (a Linear's weight itself, a conv's kernel norms).

    The same seed gives the same clusters, draws and scores.
    """
    n_draws = check_int("n_draws", n_draws, 2, hint="at least 2 shuffled copies to estimate the null's spread")
    k = check_int("k", k, hint="the number of clusters")
    seed = check_int("seed", seed, 0, SEED_MAX - 1 - n_draws, hint="draw d reclusters with seed + 1 + d")
    w = _as_numpy(weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # merged clusters: expected in nulls
        part = spectral_partition(w, k, seed)
        c, nc = weight_clusterability(w, part), ncut(w, part)
        rng = np.random.default_rng(seed)
        null_c, null_n = [], []
        for d in range(n_draws):
            s = shuffle_weights(w, rng)
            ps = spectral_partition(s, k, seed + 1 + d)
            null_c.append(weight_clusterability(s, ps))
            null_n.append(ncut(s, ps))
    nc_arr, nn_arr = np.array(null_c), np.array(null_n)
    return SpectralNull(
        k=part.k, n_draws=n_draws, seed=seed, c=c, ncut=nc, null_c=null_c, null_ncut=null_n,
        z_c=_z(c, nc_arr), z_ncut=_z(nc, nn_arr),
        p_c=float((1 + (nc_arr >= c).sum()) / (1 + n_draws)),
        p_ncut=float((1 + (nn_arr <= nc).sum()) / (1 + n_draws)),
        partition=part.to_dict(),
    )
