import copy

import pytest
import torch

from modclust import MLP, Partition
from modclust.analysis.ablation import accuracy, classwise_accuracy
from modclust.analysis.any_model import ablate


def seed_classwise(model, x, y):
    """The seed's classwise_accuracy, per example."""
    pred = model(x).argmax(1)
    correct, total = [0] * 10, [0] * 10
    for p, t in zip(pred.tolist(), y.tolist()):
        total[t] += 1
        correct[t] += int(p == t)
    return [c / t if t else 0 for c, t in zip(correct, total)]


def seed_ablated(model, part, clusters):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for c in clusters:
            for i in part.rows[c]:
                m.fc2.weight[i] = 0
            for j in part.cols[c]:
                m.fc2.weight[:, j] = 0
    return m


def test_ablation_matches_one_copy_per_cluster(tiny):
    model = MLP((784, 16, 16, 10), seed=0)
    part = Partition.equal_blocks((16, 16), 4)
    res = ablate(model, part, "fc2", tiny.test_x, tiny.test_y)
    assert res.full_acc == pytest.approx(accuracy(model, tiny.test_x, tiny.test_y))
    assert res.full_classwise == pytest.approx(seed_classwise(model, tiny.test_x, tiny.test_y))
    for c in range(4):
        off = seed_ablated(model, part, [c])
        on = seed_ablated(model, part, [o for o in range(4) if o != c])
        assert res.off_acc[c] == pytest.approx(accuracy(off, tiny.test_x, tiny.test_y))
        assert res.on_acc[c] == pytest.approx(accuracy(on, tiny.test_x, tiny.test_y))
        assert res.off_classwise[c] == pytest.approx(seed_classwise(off, tiny.test_x, tiny.test_y))
        assert res.on_classwise[c] == pytest.approx(classwise_accuracy(on, tiny.test_x, tiny.test_y))


def test_unequal_clusters_and_wrong_layer(tiny):
    model = MLP((784, 16, 16, 10), seed=0)
    part = Partition.from_labels([0] * 3 + [1] * 13, [1] * 10 + [0] * 6)
    res = ablate(model, part, "fc2", tiny.test_x, tiny.test_y)
    assert len(res.off_acc) == 2 and len(res.on_classwise[1]) == 10
    with pytest.raises(ValueError, match="does not match fc3"):
        ablate(model, part, "fc3", tiny.test_x, tiny.test_y)
