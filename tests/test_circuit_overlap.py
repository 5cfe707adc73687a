"""Circuit overlap (IoU) between labels and the share of a circuit inside one cluster."""

import math

import pytest
import torch

from modclust.analysis.circuits import Circuit, circuit_iou, cluster_share, mask_iou
from modclust.core.partition import Partition


def circ(label: int, **kept: torch.Tensor) -> Circuit:
    return Circuit(label, "current", 1e-4, list(kept), kept, 0.0, 0.0)


def test_mask_iou_extremes() -> None:
    a = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[0, 0, 1], [1, 0, 0]], dtype=torch.bool)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, b) == 0.0
    assert mask_iou(a, a | b) == pytest.approx(2 / 4)
    assert math.isnan(mask_iou(torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match="cannot be compared"):
        mask_iou(a, a.T)


def test_circuit_iou_matrix_over_layers() -> None:
    one = torch.eye(4, dtype=torch.bool)
    none = torch.zeros(4, 4, dtype=torch.bool)
    anti = ~one
    c0, c1, c2 = circ(0, fc1=one, fc2=one), circ(1, fc1=one, fc2=one), circ(2, fc1=anti, fc2=none)
    m = circuit_iou([c0, c1, c2])
    assert m.shape == (3, 3) and torch.equal(m, m.T)
    assert m[0, 1] == 1.0 and m[0, 2] == 0.0 and m.diagonal().tolist() == [1.0, 1.0, 1.0]
    # restricted to fc2 only: c2 keeps nothing there
    m2 = circuit_iou([c0, c2], layers=["fc2"])
    assert m2[0, 1] == 0.0 and math.isnan(m2[1, 1])
    with pytest.raises(ValueError, match="missing"):
        circuit_iou([c0, circ(3, fc3=one)], layers=["fc1"])
    assert circuit_iou([]).shape == (0, 0)


def test_cluster_share() -> None:
    part = Partition.equal_blocks((4, 4), 2)  # blocks rows {0,1} x cols {0,1} and {2,3} x {2,3}
    kept = torch.zeros(4, 4, dtype=torch.bool)
    kept[2:, 2:] = True  # 4 weights in block 1
    kept[0, 0] = True  # 1 in block 0
    kept[0, 3] = True  # 1 between blocks
    s = cluster_share(circ(5, fc2=kept), part, "fc2")
    assert (s.label, s.cluster, s.n_kept) == (5, 1, 6)
    assert s.share == pytest.approx(4 / 6) and s.inside_any == pytest.approx(5 / 6)
    assert s.chance == pytest.approx(0.25)
    empty = cluster_share(circ(1, fc2=torch.zeros(4, 4, dtype=torch.bool)), part)
    assert empty.cluster == -1 and math.isnan(empty.share)
    with pytest.raises(ValueError, match="not pruned on 'fc1'"):
        cluster_share(circ(0, fc2=kept), part, "fc1")
    with pytest.raises(ValueError, match="does not match"):
        cluster_share(circ(0, fc2=kept), Partition.equal_blocks((4, 5), 2), "fc2")
