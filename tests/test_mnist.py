"""Integration on real MNIST: one short run of the seed configuration through every analysis."""

import pytest

from modclust import TrainConfig, train_many
from modclust.analysis.circuits import greedy_circuit, search_space_pruned
from modclust.analysis.any_model import ablate, label_semanticity

pytestmark = pytest.mark.mnist


@pytest.fixture(scope="module")
def trained(mnist):
    return train_many([TrainConfig(epochs=2, lam=15.0, seed=0), TrainConfig(epochs=2, lam=0.0, seed=0)], mnist,
                      progress=False)


def test_seed_configuration_learns_and_clusters(trained):
    clustered, plain = trained
    assert clustered.test_acc > 0.6 and plain.test_acc > 0.6
    assert clustered.final_clusterability > 0.95
    assert 0.2 < plain.final_clusterability < 0.35
    assert clustered.history["test_acc"][0] < 0.2  # from chance


def test_ablations_hurt_and_on_is_worse_than_off(trained, mnist):
    r = ablate(trained[0].model, trained[0].partitions["fc2"], "fc2", mnist.test_x, mnist.test_y)
    assert all(off < r.full_acc for off in r.off_acc)
    assert sum(r.on_acc) < sum(r.off_acc)


def test_semanticity_and_circuits_run_on_real_data(trained, mnist):
    s = label_semanticity(trained[0].model, "fc2", mnist.test_x, mnist.test_y, k=50)
    assert 0 <= s.score <= 0.9 and sum(s.histogram) == 64
    assert round(search_space_pruned((784, 64, 64, 10), trained[0].partitions["fc2"])[0], 4) == 0.7640
    x = mnist.test_x[mnist.test_y == 8]
    c = greedy_circuit(trained[0].model, x, 8, layers=["fc3"])
    assert 0 < c.size < 640
