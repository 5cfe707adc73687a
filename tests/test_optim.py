import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modclust import MLP, Partition, TrainConfig, clusterability_grad
from modclust import clusterability
from modclust import train
from modclust.core.optim import Modularity


def _loop(model, opt, data, steps=12, bs=32, loss_extra=None):
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(data.train_x), (bs,), generator=g)
        loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        if loss_extra is not None:
            loss = loss - loss_extra(model)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("base, kw", [(torch.optim.SGD, {"lr": 0.05}), (torch.optim.Adam, {"lr": 1e-3})])
def test_equals_adding_minus_alpha_c_to_the_loss(tiny, base, kw):
    a, b = MLP((784, 16, 16, 10), seed=1), MLP((784, 16, 16, 10), seed=1)
    mask = Partition.equal_blocks((16, 16), 4).mask()
    groups = [{"params": [a.fc2.weight]}, {"params": [a.fc1.weight, a.fc3.weight], "alpha": 0.0}]
    _loop(a, Modularity(groups, base, n_clusters=4, alpha=20.0, **kw), tiny)
    _loop(b, base(b.parameters(), **kw), tiny, loss_extra=lambda m: 20.0 * clusterability(m.fc2.weight, mask))
    for x, y in zip(a.weights(), b.weights()):
        assert torch.allclose(x, y, atol=1e-5)


def test_seed_usage_on_every_layer_raises_clusterability(tiny):
    model = MLP((784, 32, 32, 10), seed=0)
    opt = Modularity(model.parameters(), torch.optim.SGD, n_clusters=4, alpha=20, lr=0.05)
    before = opt.clusterability()
    _loop(model, opt, tiny, steps=100)
    assert opt.clusterability() > before + 0.3


def test_matches_the_trainer_on_fc2(tiny):
    c = TrainConfig(widths=(784, 16, 16, 10), lam=15.0, lr=0.05, batch_size=200, epochs=1, seed=2)
    ref = train(c, tiny)
    model = MLP(c.widths, seed=c.seed)  # the trainer's init for this seed
    opt = Modularity([{"params": [model.fc2.weight]}, {"params": [model.fc1.weight, model.fc3.weight], "alpha": 0}],
                     torch.optim.SGD, alpha=15.0, lr=0.05)
    loss = F.cross_entropy(model(tiny.train_x), tiny.train_y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.allclose(model.fc2.weight, ref.model.fc2.weight, atol=1e-6)


def test_any_module_eight_clusters_biases_and_explicit_partitions(tiny):
    net = nn.Sequential(nn.Linear(784, 40), nn.ReLU(), nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 10))
    custom = Partition.from_labels([0] * 5 + [1] * 5, [0] * 12 + [1] * 12)
    opt = Modularity(net.parameters(), torch.optim.SGD, n_clusters=8, alpha=20, lr=0.05,
                     partitions={net[4].weight: custom})
    assert opt.partition(net[4].weight) == custom
    assert opt.partition(net[2].weight).k == 8
    bias_before = net[0].bias.detach().clone()
    _loop(net, opt, tiny, steps=60)
    assert opt.clusterability() > 0.5
    assert not torch.equal(bias_before, net[0].bias)  # biases still train, unregularised


def test_too_many_clusters_is_a_clear_error():
    with pytest.raises(ValueError, match="n_clusters=16"):
        Modularity(MLP().parameters(), torch.optim.SGD, n_clusters=16, lr=1e-3)


def test_decoupled_moves_weights_by_lr_alpha_grad():
    w = nn.Parameter(torch.randn(8, 8))
    w.grad = torch.zeros(8, 8)
    start = w.detach().clone()
    opt = Modularity([w], torch.optim.Adam, n_clusters=2, alpha=3.0, decoupled=True, lr=0.1)
    opt.step()
    expected = start + 0.1 * 3.0 * clusterability_grad(start, Partition.equal_blocks((8, 8), 2).mask())
    assert torch.allclose(w.detach(), expected, atol=1e-6)  # Adam saw a zero gradient


def test_state_dict_round_trip(tiny):
    def make():
        m = MLP((784, 16, 16, 10), seed=5)
        custom = Partition.from_labels([0] * 8 + [1] * 8, [1] * 8 + [0] * 8)
        return m, Modularity(m.parameters(), torch.optim.Adam, n_clusters=2, alpha=5, lr=1e-3,
                             partitions={m.fc2.weight: custom})
    a, opt_a = make()
    _loop(a, opt_a, tiny, steps=5)
    b = MLP((784, 16, 16, 10))
    b.load_state_dict(a.state_dict())
    # deepcopy, as saving to disk would: torch shares state tensors on load otherwise
    sd = copy.deepcopy(opt_a.state_dict())
    opt_b = Modularity(b.parameters(), torch.optim.Adam, n_clusters=2, alpha=5, lr=1e-3)
    opt_b.load_state_dict(sd)
    assert opt_b.partition(b.fc2.weight) == opt_a.partition(a.fc2.weight)
    _loop(a, opt_a, tiny, steps=5)
    _loop(b, opt_b, tiny, steps=5)
    for x, y in zip(a.weights(), b.weights()):
        assert torch.allclose(x, y, atol=1e-6)


def test_the_optimizer_is_importable_from_the_top_level():
    import modclust as mc

    assert mc.Modularity is Modularity and "Modularity" in mc.__all__
