"""Class selectivity and mutual information on planted units."""

import math

import pytest
import torch
from sklearn.metrics import mutual_info_score

from modclust.core.model import MLP
from modclust.analysis.any_model import unit_selectivity
from modclust.analysis.selectivity import (
    binary_entropy_bits,
    bin_activations,
    class_means,
    cluster_selectivity,
    cluster_top_examples,
    label_entropy,
    mutual_information,
    live_split,
    selectivity_index,
)


@pytest.fixture()
def planted() -> tuple[torch.Tensor, torch.Tensor]:
    """Units: 0 fires only for class 3; 1 fires equally for all; 2 never fires; 3 = class 3 or 7."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(50)  # 500 examples, balanced
    strength = torch.rand(500, generator=g) + 0.5
    acts = torch.stack([
        (y == 3).float() * strength,
        torch.full((500,), 2.0),
        torch.zeros(500),
        ((y == 3) | (y == 7)).float() * strength,
    ], 1)
    return acts, y


def test_selectivity_of_planted_units(planted) -> None:
    acts, y = planted
    sel = selectivity_index(acts, y)
    assert sel[0] == pytest.approx(1.0)
    assert sel[1] == pytest.approx(0.0)
    assert sel[2] == 0.0  # silent unit: defined as 0, not nan
    assert 0.5 < sel[3] < 1.0
    means = class_means(acts, y)
    assert means.shape == (10, 4) and means[3, 0] > 0 and means[:3, 0].abs().sum() == 0


def test_mi_of_planted_units(planted) -> None:
    acts, y = planted
    h3 = binary_entropy_bits(0.1)
    mi = mutual_information(acts, y)
    assert mi[0] == pytest.approx(h3, abs=1e-9)  # binning within class 3 adds nothing about y
    assert mi[1] == pytest.approx(0.0, abs=1e-12) and mi[2] == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(acts, y, method="threshold")[0] == pytest.approx(h3, abs=1e-9)
    assert mi[3] > mi[0]  # singles out two classes: more information
    assert label_entropy(y) == pytest.approx(math.log2(10))


def test_mi_agrees_with_sklearn() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (400,), generator=g)
    acts = torch.relu(torch.randn(400, 5, generator=g) + 0.3 * y[:, None])
    codes = bin_activations(acts, 6)
    ours = mutual_information(acts, y, n_bins=6)
    for u in range(5):
        ref = mutual_info_score(y.numpy(), codes[:, u].numpy()) / math.log(2)
        assert ours[u].item() == pytest.approx(ref, abs=1e-9)


def test_cluster_profile_and_top_examples(planted) -> None:
    acts, y = planted
    cs = cluster_selectivity(acts, y, [[0, 3], [1, 2]])
    assert cs.top_classes[0][:2] == [3, 7]
    assert sum(cs.profile[0]) == pytest.approx(1.0) and cs.profile[0][3] > cs.profile[0][7] > 0
    assert cs.profile[1] == pytest.approx([0.1] * 10)
    assert cs.selectivity[0] > 0.5 and cs.selectivity[1] == pytest.approx(0.0)
    assert cs.unit_selectivity[0] == pytest.approx(float(selectivity_index(acts, y)[[0, 3]].mean()))
    top = cluster_top_examples(acts, [[0], [3]], k=5)
    assert top.shape == (2, 5) and bool((y[top[0]] == 3).all())
    with pytest.raises(ValueError, match="outside"):
        cluster_selectivity(acts, y, [[0, 9]])


def test_unit_selectivity_on_a_model() -> None:
    model = MLP((6, 5, 3), seed=0)
    x = torch.randn(60, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(3).repeat(20)
    res = unit_selectivity(model, "fc1", x, y, n_classes=3)
    assert len(res.selectivity) == 5 and len(res.mi) == 5
    assert 0 <= res.mean_selectivity <= 1 and 0 <= res.mean_mi <= res.label_entropy + 1e-9


def test_dead_units_are_counted_and_left_out_of_the_live_mean() -> None:
    """A dead unit scores selectivity 0 and a rarely firing one nearly 1: the layer's mean mixes them,
    so the dead share and the live units' mean are reported beside it."""
    acts = torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.5]])  # (N, units)
    y = torch.tensor([0, 1, 0, 1])
    sel = selectivity_index(acts, y, 2)
    dead, live = live_split(acts, sel)
    assert dead == pytest.approx(1 / 3)
    assert live == pytest.approx(float(sel[1:].mean()))
    assert float(sel[0]) == 0.0 and float(sel[1]) > float(sel[2])
    assert math.isnan(live_split(torch.zeros(3, 2), torch.zeros(2))[1])  # no live unit: undefined
