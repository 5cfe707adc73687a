"""modclust.analysis.sparsity: which weights are live, and the chance levels of a circuit's
overlap and cluster share among them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from modclust.analysis.sparsity import (LIVE_CUTOFF, live_density, live_mask, mean_pairwise_iou,
                                        proportional_floor, random_subset_iou)
from modclust.core.partition import Partition


# --- sparsity measures -------------------------------------------------------------------------

def test_live_weights_are_those_above_a_share_of_the_largest():
    w = torch.tensor([[1.0, 0.005, -0.5], [0.0, -0.02, 0.011]])
    assert live_mask(w).tolist() == [[True, False, True], [False, True, True]]
    assert live_density(w) == pytest.approx(4 / 6)
    assert live_density(torch.zeros(3, 3)) == 0.0
    with pytest.raises(ValueError, match="cutoff"):
        live_mask(w, cutoff=2.0)


def test_random_subset_iou_matches_simulation():
    g = torch.Generator().manual_seed(0)
    pool, a, b = 400, 120, 80
    sims = []
    for _ in range(2000):
        x = torch.zeros(pool, dtype=torch.bool)
        y = torch.zeros(pool, dtype=torch.bool)
        x[torch.randperm(pool, generator=g)[:a]] = True
        y[torch.randperm(pool, generator=g)[:b]] = True
        sims.append(float((x & y).sum() / (x | y).sum()))
    assert random_subset_iou(a, b, pool) == pytest.approx(sum(sims) / len(sims), rel=0.03)
    assert random_subset_iou(pool, pool, pool) == 1.0
    with pytest.raises(ValueError):
        random_subset_iou(10, 5, 8)


def test_pairwise_iou_and_its_random_floor():
    pool = torch.ones(100, dtype=torch.bool)
    same = torch.zeros(100, dtype=torch.bool)
    same[:20] = True
    seen, chance = mean_pairwise_iou([same, same.clone()], pool)
    assert seen == 1.0 and chance == pytest.approx(random_subset_iou(20, 20, 100))
    assert all(math.isnan(v) for v in mean_pairwise_iou([same], pool))


def test_proportional_floor_is_a_quarter_for_four_equally_live_blocks():
    part = Partition.equal_blocks((8, 8), 4)
    assert proportional_floor(part.mask().bool(), part) == 0.25  # every live weight inside a block
    assert proportional_floor(torch.ones(8, 8, dtype=torch.bool), part) == pytest.approx(4 / 64)
    live = part.mask().bool().clone()
    live[:2, :2] = False  # block 0 emptied: three equal blocks remain
    assert proportional_floor(live, part) == pytest.approx(1 / 3)


# --- live weights: edges and mistakes -----------------------------------------------------------

def test_the_live_cutoff_is_strict_and_relative_to_the_largest_magnitude():
    w = torch.tensor([[-4.0, 0.039], [0.041, 2.0]])  # 1 % of max|w| = 0.04
    assert LIVE_CUTOFF == 0.01
    assert live_mask(w).tolist() == [[True, False], [True, True]]
    assert live_mask(torch.tensor([4.0, -1.0, 1.5]), cutoff=0.25).tolist() == [True, False, True]  # 1.0: not above
    assert live_mask(w * 1000).tolist() == live_mask(w).tolist()  # scale free
    assert live_mask(w, cutoff=0.5).tolist() == [[True, False], [False, False]]  # 2.0 is not > 0.5 * 4
    assert live_mask(w, cutoff=0.0).all() and not live_mask(w, cutoff=1.0).any()
    assert live_mask(torch.tensor([0.0, 0.0, 1e-3])).tolist() == [False, False, True]
    assert live_mask(torch.zeros(0)).shape == (0,) and live_mask(torch.zeros(0)).dtype == torch.bool


def test_live_mask_reads_a_weight_that_requires_grad_without_touching_it():
    w = torch.tensor([[1.0, -0.001]], requires_grad=True)
    m = live_mask(w)
    assert m.dtype == torch.bool and not m.requires_grad and m.tolist() == [[True, False]]
    assert live_density(w) == 0.5 and w.grad is None


@pytest.mark.parametrize("cutoff", [float("nan"), -0.1, 1.5, float("inf")])
def test_a_bad_cutoff_says_what_a_cutoff_is(cutoff):
    with pytest.raises(ValueError, match=r"cutoff must be a finite number in \[0, 1\], got .*"
                                         r"\(a fraction of the layer's largest \|w\|, e\.g\. 0\.01\)"):
        live_density(torch.ones(2, 2), cutoff)
    with pytest.raises(TypeError, match="cutoff must be a finite number"):
        live_mask(torch.ones(2, 2), "0.01")


def test_the_density_of_an_empty_weight_is_an_error():
    with pytest.raises(ValueError, match="live_density of an empty weight is undefined"):
        live_density(torch.zeros(0, 4))


def test_live_density_is_the_share_counted_by_hand():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        w = torch.randn(7, 5, generator=g) * torch.rand(7, 5, generator=g) ** 4
        top = max(abs(v) for v in w.flatten().tolist())
        expected = sum(abs(v) > 0.01 * top for v in w.flatten().tolist()) / w.numel()
        assert live_density(w) == pytest.approx(expected, abs=1e-7)


# --- chance overlap ------------------------------------------------------------------------------

def test_random_subset_iou_by_hand():
    assert random_subset_iou(2, 2, 4) == pytest.approx(1 / 3)  # E|A & B| = 1, union 2 + 2 - 1
    assert random_subset_iou(4, 1, 8) == pytest.approx(0.5 / 4.5)
    assert random_subset_iou(0, 5, 10) == 0.0
    assert math.isnan(random_subset_iou(0, 0, 3))
    assert random_subset_iou(3, 6, 9) == random_subset_iou(6, 3, 9)


@pytest.mark.parametrize("a, b, pool", [(10, 5, 8), (-1, 0, 3), (0, 0, 0), (1, 0, -2)])
def test_random_subset_iou_refuses_sizes_outside_the_pool(a, b, pool):
    with pytest.raises(ValueError, match=rf"subset sizes {a}, {b} must lie in \[0, pool\] with pool >= 1, "
                                         rf"got pool {pool}"):
        random_subset_iou(a, b, pool)


def _iou(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def test_pairwise_iou_by_hand_leaves_out_pairs_with_nothing_in_them():
    """Four masks over 8 items: {0, 1}, {1, 2}, {} and {}. The pair of empties is left out."""
    masks = [torch.zeros(2, 4, dtype=torch.bool) for _ in range(4)]
    masks[0][0, 0] = masks[0][0, 1] = True
    masks[1][0, 1] = masks[1][0, 2] = True
    seen, chance = mean_pairwise_iou(masks, torch.ones(2, 4, dtype=torch.bool))
    # pairs: (0, 1) IoU 1/3; (0, 2), (0, 3), (1, 2), (1, 3) IoU 0; (2, 3) left out
    assert seen == pytest.approx((1 / 3) / 5)
    # chance: random_subset_iou(2, 2, 8) = 0.5 / 3.5 for (0, 1), and 0 for a pair with an empty mask
    assert chance == pytest.approx((0.5 / 3.5) / 5)
    assert all(math.isnan(v) for v in mean_pairwise_iou(masks[2:], torch.ones(8, dtype=torch.bool)))
    assert all(math.isnan(v) for v in mean_pairwise_iou([], torch.ones(8, dtype=torch.bool)))


def test_pairwise_iou_matches_sets():
    g = torch.Generator().manual_seed(1)
    pool = torch.rand(6, 6, generator=g) < 0.7
    masks = [(torch.rand(6, 6, generator=g) < p) & pool for p in (0.2, 0.4, 0.6, 0.1)]
    sets = [{i for i, v in enumerate(m.flatten().tolist()) if v} for m in masks]
    n = int(pool.sum())
    pairs = [(a, b) for a, b in itertools.combinations(sets, 2) if a | b]
    seen, chance = mean_pairwise_iou(masks, pool)
    assert seen == pytest.approx(sum(_iou(a, b) for a, b in pairs) / len(pairs))
    assert chance == pytest.approx(sum(random_subset_iou(len(a), len(b), n) for a, b in pairs) / len(pairs))


def test_a_mask_larger_than_its_pool_stretches_the_pool():
    big = torch.ones(10, dtype=torch.bool)
    small = torch.zeros(10, dtype=torch.bool)
    small[:4] = True
    pool = torch.zeros(10, dtype=torch.bool)
    pool[:5] = True  # 5 live weights, but one mask holds 10
    seen, chance = mean_pairwise_iou([big, small], pool)
    assert seen == pytest.approx(0.4) and chance == pytest.approx(random_subset_iou(10, 4, 10)) == 0.4


# --- the proportional floor -----------------------------------------------------------------------

def test_proportional_floor_of_a_4x4_by_hand():
    """Two 2 x 2 blocks: 3 live weights in block 0, 1 in block 1, 2 outside both: 3 / 6."""
    part = Partition.equal_blocks((4, 4), 2)
    live = torch.tensor([[1, 1, 0, 1],
                         [1, 0, 0, 0],
                         [0, 0, 1, 0],
                         [1, 0, 0, 0]])
    assert proportional_floor(live, part) == 0.5
    assert proportional_floor(live.float(), part) == 0.5  # any dtype, read as bool
    assert math.isnan(proportional_floor(torch.zeros(4, 4), part))


def test_proportional_floor_counts_uneven_and_partial_clusters():
    part = Partition.from_labels([0, 0, 1, -1], [0, 1, 1, -1])  # unit 3 and input 3 in no cluster
    live = torch.ones(4, 4, dtype=torch.bool)
    # block 0: rows {0, 1} x cols {0} = 2; block 1: row {2} x cols {1, 2} = 2; of 16 live
    assert proportional_floor(live, part) == pytest.approx(2 / 16)


def test_proportional_floor_names_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"partition of shape \(4, 4\) does not match live mask of shape \(3, 4\): "
                                         r"build the partition for this layer"):
        proportional_floor(torch.ones(3, 4), Partition.equal_blocks((4, 4), 2))
