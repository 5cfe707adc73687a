import pytest
import torch

from modclust import Partition


def seed_mask(shape, rows, cols):
    """The seed's cluster_goodness_fast mask, with its Python loops."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for r, c in zip(rows, cols):
        mask[torch.tensor(r).unsqueeze(1), torch.tensor(c)] = True
    return mask


def test_equal_blocks_are_the_seeds_blocks():
    p = Partition.equal_blocks((64, 64), 4)
    seed_u = {i: list(range(i * 16, (i + 1) * 16)) for i in range(4)}
    assert [list(r) for r in p.rows] == list(seed_u.values())
    assert [list(c) for c in p.cols] == list(seed_u.values())
    assert torch.equal(p.mask().bool(), seed_mask((64, 64), p.rows, p.cols))
    assert p.mask().sum() == 4 * 16 * 16


def test_unequal_blocks_cover_everything():
    p = Partition.equal_blocks((10, 64), 4)
    assert [len(r) for r in p.rows] == [3, 3, 2, 2]
    assert sorted(i for r in p.rows for i in r) == list(range(10))


def test_arbitrary_unequal_partition_and_labels():
    p = Partition.from_labels([0, 1, 1, -1, 0], [1, 0, 0])
    assert p.rows == ((0, 4), (1, 2))
    assert p.cols == ((1, 2), (0,))
    m = p.mask()
    assert m[0].tolist() == [0, 1, 1] and m[1].tolist() == [1, 0, 0] and m[3].sum() == 0


@pytest.mark.parametrize(
    "rows, cols, message",
    [
        (((0, 1), (1, 2)), ((0,), (1,)), "row 1 is in cluster 0 and cluster 1"),
        (((0,), (5,)), ((0,), (1,)), "row index 5 of cluster 1 is out of range"),
        (((0,), (1,)), ((0,), (-1,)), "column index -1"),
        (((0,),), ((0,), (1,)), "one row set and one column set per cluster"),
        (((0,), ()), ((0,), (1,)), "cluster 1 has no rows"),
    ],
)
def test_invalid_partitions_raise_clear_errors(rows, cols, message):
    with pytest.raises(ValueError, match=message):
        Partition((4, 3), rows, cols)


def test_shape_mismatch_and_too_many_blocks():
    p = Partition.equal_blocks((64, 64), 4)
    with pytest.raises(ValueError, match="does not match fc3"):
        p.check_fits(torch.zeros(10, 64), "fc3")
    with pytest.raises(ValueError, match="into 11 blocks"):
        Partition.equal_blocks((10, 64), 11)


def test_ablation_masks_match_the_seeds_loops():
    p = Partition.equal_blocks((8, 8), 2)
    w = torch.randn(8, 8)
    for c in range(2):
        off = w.clone()
        for i in p.rows[c]:
            off[i] = 0
        for j in p.cols[c]:
            off[:, j] = 0
        assert torch.equal(w * p.ablation_masks("off")[c], off)
        on = w.clone()
        for o in range(2):
            if o != c:
                for i in p.rows[o]:
                    on[i] = 0
                for j in p.cols[o]:
                    on[:, j] = 0
        assert torch.equal(w * p.ablation_masks("on")[c], on)
    with pytest.raises(ValueError, match="'off' or 'on'"):
        p.ablation_masks("sideways")


def test_dict_round_trip():
    p = Partition.from_labels([0, 1, 1, -1], [1, 0, 0])
    assert Partition.from_dict(p.to_dict()) == p
