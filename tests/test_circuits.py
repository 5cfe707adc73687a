import copy

import pytest
import torch
import torch.nn.functional as F

from modclust import MLP, Partition, TrainConfig
from modclust import train
from modclust.analysis.circuits import greedy_circuit, search_space_pruned
from modclust.seed.pruning_cell import seed_cell_prune


def test_search_space_pruning_of_the_seed_is_76_40_percent():
    out = search_space_pruned((784, 64, 64, 10), Partition.equal_blocks((64, 64), 4))
    assert out == pytest.approx([(54912 - (784 * 16 + 16 * 16 + 16 * 10)) / 54912] * 4)
    assert round(out[0] * 100, 2) == 76.40


def test_search_space_with_unequal_clusters():
    p = Partition.from_labels([0] * 10 + [1] * 54, [0] * 60 + [1] * 4)
    out = search_space_pruned((784, 64, 64, 10), p)
    assert out[0] == pytest.approx((54912 - (784 * 60 + 10 * 60 + 10 * 10)) / 54912)
    assert out[1] == pytest.approx((54912 - (784 * 4 + 54 * 4 + 10 * 54)) / 54912)


def seed_greedy(model, x, label, layers, threshold, baseline):
    """The seed's loop: full forward per candidate, layers in order, row-major."""
    m = copy.deepcopy(model)
    target = torch.full((len(x),), label)
    def loss():
        with torch.no_grad():
            return F.cross_entropy(m(x), target).item()
    full = cur = loss()
    for name in layers:
        w = getattr(m, name).weight.data
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                tmp = w[i, j].item()
                w[i, j] = 0
                new = loss()
                if new - (cur if baseline == "current" else full) < threshold:
                    cur = new
                else:
                    w[i, j] = tmp
    return {name: getattr(m, name).weight.data != 0 for name in layers}


@pytest.mark.parametrize("baseline", ["current", "full"])
def test_greedy_matches_the_seeds_loop(tiny, baseline):
    model = MLP((784, 6, 5, 10), seed=0)
    x = tiny.test_x[tiny.test_y == 3]
    c = greedy_circuit(model, x, 3, layers=["fc2", "fc3"], threshold=1e-3, baseline=baseline)
    ref = seed_greedy(model, x, 3, ["fc2", "fc3"], 1e-3, baseline)
    for name in ["fc2", "fc3"]:
        assert torch.equal(c.kept[name], ref[name])
    assert 0 < c.size < 6 * 5 + 5 * 10
    assert c.size == sum(c.size_per_layer.values())


def test_the_seeds_cell_as_written_zeroes_every_weight_it_visits(tiny):
    """The seed's ``temp = w.data[i, j]`` is a view: its restore writes back zero."""
    model = train(TrainConfig(widths=(784, 6, 5, 10), lam=0.0, lr=0.1, epochs=5), tiny).model
    x = tiny.test_x[tiny.test_y == 3]
    cell = seed_cell_prune(model, x, 3, "fc3", threshold=1e-3)
    assert cell.decided_kept > 0 and cell.decided_pruned + cell.decided_kept == 50
    assert cell.nonzero_after == 0 and not bool(cell.pruned.fc3.weight.any())
    assert torch.equal(cell.pruned.fc2.weight, model.fc2.weight)  # the other layers untouched
    assert bool((cell.pruned(tiny.test_x).argmax(-1) == 0).all())  # equal logits: argmax 0, as printed
    ours = greedy_circuit(model, x, 3, layers=["fc3"], threshold=1e-3)
    assert ours.size > 0  # the loop that restores values keeps a circuit
    with pytest.raises(ValueError, match="unknown layer"):
        seed_cell_prune(model, x, 3, "fc9")


def test_loss_bounds_of_both_baselines(tiny):
    model = train(TrainConfig(widths=(784, 6, 5, 10), lam=0.0, lr=0.1, epochs=5), tiny).model
    x = tiny.test_x[tiny.test_y == 3]
    full = greedy_circuit(model, x, 3, layers=["fc2", "fc3"], threshold=1e-2, baseline="full")
    cur = greedy_circuit(model, x, 3, layers=["fc2", "fc3"], threshold=1e-2, baseline="current")
    # The state changes only on acceptance, so the final loss is the last accepted one:
    # within one threshold of the full loss, or of the previous accepted loss per pruned weight.
    assert full.final_loss < full.full_loss + 1e-2
    assert cur.final_loss < cur.full_loss + 1e-2 * (80 - cur.size)
    assert full.size < 80 and cur.size < 80


def test_bad_baseline():
    with pytest.raises(ValueError, match="'current'"):
        greedy_circuit(MLP((784, 4, 10), seed=0), torch.zeros(3, 784), 0, baseline="best")
