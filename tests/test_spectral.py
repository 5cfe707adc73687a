"""Spectral co-clustering, n-cut and the shuffled-weights null, on tiny planted matrices."""

import numpy as np
import pytest
import torch

from modclust.core.partition import Partition
from modclust.analysis.spectral import (
    ncut,
    shuffle_weights,
    matrix_spectral_null,
    spectral_partition,
    weight_clusterability,
)


def planted(n: int = 32, k: int = 4, noise: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k hidden blocks with rows and columns shuffled; returns W and the true row/col labels."""
    rng = np.random.default_rng(seed)
    size = n // k
    labels = np.repeat(np.arange(k), size)
    w = rng.normal(size=(n, n)) * noise
    strong = rng.uniform(0.5, 1.5, size=(n, n)) * rng.choice([-1.0, 1.0], size=(n, n))
    w += (labels[:, None] == labels[None, :]) * strong
    pr, pc = rng.permutation(n), rng.permutation(n)
    return w[pr][:, pc], labels[pr], labels[pc]


def test_planted_blocks_are_recovered() -> None:
    w, true_r, true_c = planted()
    part = spectral_partition(w, 4, seed=0)
    assert part.k == 4
    # each found cluster is exactly one planted block: the same rows and the same columns
    for rows, cols in zip(part.rows, part.cols):
        assert len(set(true_r[list(rows)])) == 1
        assert set(true_r[list(rows)]) == set(true_c[list(cols)])
    assert weight_clusterability(w, part) > 0.99
    assert ncut(w, part) < 0.3


def test_planted_blocks_beat_the_null_and_random_does_not() -> None:
    w, _, _ = planted()
    res = matrix_spectral_null(w, 4, n_draws=10, seed=0)
    assert res.c > 0.99 and res.z_c > 3 and res.z_ncut < -3
    assert res.p_c == pytest.approx(1 / 11)
    rnd = np.random.default_rng(1).normal(size=(32, 32))
    null = matrix_spectral_null(rnd, 4, n_draws=10, seed=0)
    assert abs(null.z_c) < 3 and abs(null.z_ncut) < 3


def test_deterministic_under_a_seed() -> None:
    w = np.random.default_rng(2).normal(size=(20, 24))
    a, b = matrix_spectral_null(w, 3, n_draws=4, seed=5), matrix_spectral_null(torch.tensor(w), 3, n_draws=4, seed=5)
    assert a.to_dict() == b.to_dict()
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    s = shuffle_weights(w, g1)
    assert np.array_equal(s, shuffle_weights(w, g2))
    assert sorted(s.ravel()) == sorted(w.ravel()) and not np.array_equal(s, w)


def test_ncut_extremes() -> None:
    blocks = np.kron(np.eye(4), np.ones((4, 4)))
    assert ncut(blocks, Partition.equal_blocks((16, 16), 4)) == 0.0
    assert ncut(blocks, Partition.equal_blocks((16, 16), 1)) == 0.0
    # all weight between clusters: every cluster's edges leave it
    anti = np.ones((4, 4)) - np.eye(4)
    assert ncut(anti, Partition.equal_blocks((4, 4), 4)) == pytest.approx(4.0)


def test_k_is_checked_and_zero_units_left_out() -> None:
    w = np.random.default_rng(3).normal(size=(8, 6))
    with pytest.raises(ValueError, match="need 1 <= k <= 6"):
        spectral_partition(w, 7)
    with pytest.raises(ValueError, match="need 1 <= k"):
        spectral_partition(w, 0)
    w[2] = 0
    w[:, 4] = 0
    part = spectral_partition(w, 2, seed=0)
    assert 2 not in sum(part.rows, ()) and 4 not in sum(part.cols, ())
    one = spectral_partition(w, 1)
    assert one.k == 1 and weight_clusterability(w, one) == pytest.approx(1.0)


def test_one_sided_clusters_are_merged_with_a_warning() -> None:
    w = np.random.default_rng(4).normal(size=(32, 32))
    with pytest.warns(UserWarning, match="rows but no"):
        part = spectral_partition(w, 32, seed=0)
    assert part.k < 32
    # every unit is still in some cluster
    assert sorted(sum(part.rows, ())) == list(range(32))
    assert sorted(sum(part.cols, ())) == list(range(32))
