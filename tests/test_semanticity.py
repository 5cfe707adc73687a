import numpy as np
import pytest
import torch

from modclust import MLP
from modclust.analysis.any_model import label_semanticity
from modclust.analysis.semanticity import layer_activations, top_k_indices


def seed_semanticity(model, x, y, k):
    """The seed's per-unit loop, with a stable argsort (the library's tie rule)."""
    acts = torch.relu(model.fc2(torch.relu(model.fc1(x)))).detach().numpy()
    fractions, hist = [], [0] * 10
    for unit in range(acts.shape[1]):
        top = np.argsort(acts[:, unit], kind="stable")[-k:]
        u = len(set(y[top].tolist()))
        fractions.append(u / 10)
        hist[u - 1] += 1
    return 1 - sum(fractions) / len(fractions), hist


def test_matches_the_seeds_definition(tiny):
    model = MLP((784, 32, 32, 10), seed=1)
    res = label_semanticity(model, "fc2", tiny.test_x, tiny.test_y, k=20)
    score, hist = seed_semanticity(model, tiny.test_x, tiny.test_y, 20)
    assert res.score == pytest.approx(score)
    assert res.histogram == hist
    assert res.reverse_cumulative == [sum(hist[i:]) for i in range(10)]
    assert [sum(c) for c in res.label_counts] == [20] * 32


def test_ties_are_broken_deterministically_later_example_first():
    acts = torch.tensor([[0.0], [5.0], [0.0], [0.0], [5.0]])
    assert top_k_indices(acts, 3).tolist() == [[4, 1, 3]]


def test_dead_unit_has_fixed_top_k():
    acts = torch.zeros(10, 2)
    assert top_k_indices(acts, 4).tolist() == [[9, 8, 7, 6]] * 2


def test_bad_arguments(tiny):
    model = MLP((784, 8, 10), seed=0)
    with pytest.raises(ValueError, match="unknown layer 'fc5'"):
        layer_activations(model, tiny.test_x, "fc5")
    with pytest.raises(ValueError, match="k must be between 1"):
        top_k_indices(torch.zeros(5, 2), 6)
