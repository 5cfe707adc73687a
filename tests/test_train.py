import pytest
import torch

import modclust
from modclust import TrainConfig, train_many
from modclust import train


def cfg(**kw):
    base = dict(widths=(784, 16, 16, 10), n_clusters=4, lam=15.0, lr=0.05, batch_size=32, epochs=2, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("lam", [0.0, 15.0])
def test_fast_path_equals_autograd(tiny, lam):
    c = cfg(lam=lam)
    fast = train(c, tiny, method="fast")
    slow = train(c, tiny, method="autograd")
    for a, b in zip(fast.model.weights(), slow.model.weights()):
        assert torch.allclose(a, b, atol=1e-5)
    assert fast.history["ce"] == pytest.approx(slow.history["ce"], abs=1e-5)
    assert fast.history["clusterability"] == pytest.approx(slow.history["clusterability"], abs=1e-5)
    assert fast.history["test_acc"] == pytest.approx(slow.history["test_acc"], abs=1e-9)


def test_fast_path_equals_autograd_on_every_layer_and_other_widths(tiny):
    c = cfg(widths=(784, 24, 12, 8, 10), clustered_layers=("fc1", "fc2", "fc3"), n_clusters=3, lam=5.0)
    fast, slow = train(c, tiny), train(c, tiny, method="autograd")
    for a, b in zip(fast.model.weights(), slow.model.weights()):
        assert torch.allclose(a, b, atol=1e-5)


def test_same_seed_same_numbers_other_seed_other_numbers(tiny):
    a, b, c = train(cfg(), tiny), train(cfg(), tiny), train(cfg(seed=4), tiny)
    assert all(torch.equal(x, y) for x, y in zip(a.model.weights(), b.model.weights()))
    assert a.history == b.history
    assert not torch.equal(a.model.fc1.weight, c.model.fc1.weight)


def test_history_shapes(tiny):
    r = train(cfg(), tiny)
    steps = 2 * -(-200 // 32)
    assert len(r.history["ce"]) == len(r.history["clusterability"]) == steps
    assert len(r.history["test_acc"]) == 3
    assert r.test_acc == r.history["test_acc"][-1]
    once = train(cfg(), tiny, test_every_epoch=False)  # the same run, tested once at the end
    assert once.history["test_acc"] == [r.test_acc]
    assert once.history["ce"] == r.history["ce"]
    assert train(cfg(epochs=0), tiny, test_every_epoch=False).history["test_acc"] == r.history["test_acc"][:1]


def test_clusterability_rises_with_lambda(tiny):
    lo, hi = train_many([cfg(lam=0.0, lr=0.1, epochs=5), cfg(lam=50.0, lr=0.1, epochs=5)], tiny)
    assert hi.final_clusterability > 0.9 > lo.final_clusterability


def test_configs_that_cannot_share_a_batch_are_refused(tiny):
    with pytest.raises(ValueError, match="must share epochs"):
        train_many([cfg(), cfg(epochs=1)], tiny)
    with pytest.raises(ValueError, match="dataset"):
        train(cfg(dataset="fashion-mnist"), tiny)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="not layers of this MLP"):
        TrainConfig(clustered_layers=("fc9",))
    c = cfg(clustered_layers=("fc1", "fc2"))
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"lamda": 1})


def test_unknown_method(tiny):
    with pytest.raises(ValueError, match="'fast' or 'autograd'"):
        train(cfg(), tiny, method="magic")


def test_clusterability_loss_is_the_seeds_term():
    model = modclust.MLP(seed=0)
    parts = TrainConfig().partitions()
    loss = modclust.clusterability_loss(model, parts)
    assert loss.requires_grad
    assert loss.item() == pytest.approx(modclust.clusterability(model.fc2.weight, parts["fc2"].mask()).item())
