import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modclust import MLP, Partition, TrainConfig, clusterability_grad
from modclust import clusterability
from modclust import train
from modclust.core.clusterability import clusterability_and_grad, kernel_clusterability, kernel_clusterability_and_grad
from modclust.core.optim import Modularity, UnregularisedParameterWarning
from modclust.core.units import UnitClusters


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


def test_a_base_optimizer_that_is_not_a_class_is_a_clear_error():
    for base in ("sgd", torch.optim.SGD(MLP().parameters(), lr=1e-3)):
        with pytest.raises(TypeError, match="torch optimizer class, e.g. torch.optim.SGD"):
            Modularity(MLP().parameters(), base, lr=1e-3)


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


# convolutions, any module tree, UnitClusters -----------------------------------------------------

def _scrambled(shape, k, seed):
    """A partition of an (out, in) matrix with non-contiguous clusters."""
    g = torch.Generator().manual_seed(seed)
    rows = [int(v) for v in torch.randperm(shape[0], generator=g) % k]
    cols = [int(v) for v in torch.randperm(shape[1], generator=g) % k]
    return Partition.from_labels(rows, cols)


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1, 1), (6, 5, 3, 3), (2, 6, 5, 3, 3)])
def test_closed_form_gradient_equals_autograd(shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    mask = _scrambled(shape[-2:] if len(shape) == 2 else shape[-4:-2], 3, 1).mask(dtype=torch.float64)
    if len(shape) == 2:  # a Linear weight [out, in]
        c, dc = clusterability_and_grad(w, mask)
        assert torch.allclose(dc, clusterability_grad(w, mask))
        auto = torch.autograd.grad(clusterability(w, mask), w)[0]
    else:  # conv kernels [..., out, in, kh, kw]
        c, dc = kernel_clusterability_and_grad(w, mask)
        auto = torch.autograd.grad(kernel_clusterability(w, mask).sum(), w)[0]
        assert torch.allclose(c, kernel_clusterability(w, mask))
    assert dc.shape == w.shape
    assert torch.allclose(dc, auto, rtol=1e-10, atol=1e-12)


def test_a_1x1_kernel_is_its_matrix_and_zero_kernels_are_safe():
    w = torch.randn(8, 6, 1, 1)
    mask = Partition.equal_blocks((8, 6), 2).mask()
    assert torch.allclose(kernel_clusterability(w, mask), clusterability(w[:, :, 0, 0], mask))
    assert torch.allclose(kernel_clusterability_and_grad(w, mask)[1][:, :, 0, 0],
                          clusterability_grad(w[:, :, 0, 0], mask))
    c, dc = kernel_clusterability_and_grad(torch.zeros(8, 6, 3, 3), mask)
    assert float(c) == 0.0 and not dc.any()


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 12), nn.ReLU(),
                         nn.Linear(12, 4))


@pytest.mark.parametrize("decoupled", [False, True])
def test_conv_step_equals_adding_minus_alpha_c_to_the_loss(decoupled):
    a, b = _cnn().double(), _cnn().double()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    kw = {"alpha": 3.0, "lr": 0.1, "n_clusters": 2}
    opt = Modularity(a.parameters(), torch.optim.SGD, decoupled=decoupled, **kw)
    assert opt.partition(a[0].weight) == Partition.equal_blocks((8, 3), 2)  # out x in channels
    loss = F.cross_entropy(a(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    masks = [opt.partition(a[i].weight).mask(dtype=torch.float64) for i in (0, 4, 7, 9)]
    reg = sum(kernel_clusterability(b[i].weight, m) for i, m in zip((0, 4), masks[:2]))
    reg = reg + sum(clusterability(b[i].weight, m) for i, m in zip((7, 9), masks[2:]))
    ref = torch.optim.SGD(b.parameters(), lr=0.1)
    ce = F.cross_entropy(b(x), y)
    ref.zero_grad()
    ce.backward()
    terms = torch.autograd.grad(-3.0 * reg, [m.weight for m in (b[0], b[4], b[7], b[9])])
    ref.step()
    with torch.no_grad():
        for m, t in zip((b[0], b[4], b[7], b[9]), terms):
            m.weight.sub_(0.1 * t)  # SGD's step on the -alpha * C term, either way for plain SGD
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-12)


def test_for_model_takes_unit_clusters_and_leaves_the_rest_alone():
    net = _cnn()
    x = torch.randn(16, 3, 8, 8)
    y = torch.randint(0, 4, (16,))
    clusters = UnitClusters.equal(net, ["4", "7"], 4, x[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to report: every other parameter is in an alpha=0 group
        opt = Modularity.for_model(net, clusters, torch.optim.SGD, alpha=50.0, lr=0.05)
    parts = clusters.partitions(net)
    assert opt.partition(net[4].weight) == parts["4"] and opt.partition(net[7].weight) == parts["7"]
    assert [g["alpha"] for g in opt.param_groups] == [50.0, 0.0]
    assert len(opt.param_groups[1]["params"]) == len(list(net.parameters())) - 2
    before = opt.clusterability()
    untouched = {n: p.detach().clone() for n, p in net.named_parameters() if n not in ("4.weight", "7.weight")}
    opt.zero_grad()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # no loss: only the regulariser moves anything
    opt.step()
    for n, p in net.named_parameters():
        if n in untouched:
            assert torch.equal(p, untouched[n]), n  # biases, BN, unclustered layers
    for _ in range(30):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert opt.clusterability() > before + 0.2
    with pytest.raises(TypeError, match="clusters must be a UnitClusters"):
        Modularity.for_model(net, parts, torch.optim.SGD, lr=0.1)


def test_grouped_convolutions_are_refused():
    net = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Conv2d(8, 8, 1))
    with pytest.raises(TypeError, match="grouped convolution"):
        UnitClusters.equal(net, ["0"], 2, torch.randn(1, 4, 5, 5))


def test_parameters_it_cannot_regularise_are_reported_not_skipped():
    net = nn.Sequential(nn.Conv1d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3, 4))
    with pytest.warns(UnregularisedParameterWarning, match=r"#0 of shape \(6, 4, 3\).*alpha=0"):
        opt = Modularity(net.parameters(), torch.optim.SGD, n_clusters=2, lr=0.1)
    assert opt.partition(net[3].weight).k == 2  # the 2-D weight is still regularised
    with pytest.warns(UnregularisedParameterWarning, match=r"'0.weight' of shape \(6, 4, 3\)"):
        Modularity(net.named_parameters(), torch.optim.SGD, n_clusters=2, lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = Modularity([{"params": [net[0].weight], "alpha": 0.0},
                            {"params": [net[0].bias, net[3].weight, net[3].bias]}], torch.optim.SGD,
                           n_clusters=2, lr=0.1)
    quiet.param_groups[0]["alpha"] = 1.0  # raised later: reported at the next step
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.warns(UnregularisedParameterWarning, match=r"shape \(6, 4, 3\)"):
        quiet.step()


def test_conv_partitions_are_checked_and_saved():
    conv = nn.Conv2d(4, 6, 3)
    with pytest.raises(ValueError, match=r"\(a conv kernel: 6 out- x 4 in-channels\) into n_clusters=5"):
        Modularity([conv.weight], torch.optim.SGD, n_clusters=5, lr=0.1)
    with pytest.raises(ValueError, match=r"partition of shape \(4, 6\) does not match the conv weight"):
        Modularity([conv.weight], torch.optim.SGD, lr=0.1, partitions={conv.weight: Partition.equal_blocks((4, 6), 2)})
    custom = _scrambled((6, 4), 2, 3)
    opt = Modularity([conv.weight], torch.optim.Adam, lr=0.1, partitions={conv.weight: custom})
    other = nn.Conv2d(4, 6, 3)
    opt_b = Modularity([other.weight], torch.optim.Adam, n_clusters=3, lr=0.1)
    opt_b.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt_b.partition(other.weight) == custom


def test_two_d_steps_are_the_closed_form_bit_for_bit():
    w = nn.Parameter(torch.randn(8, 6))
    g = torch.randn(8, 6)
    w.grad = g.clone()
    start = w.detach().clone()
    opt = Modularity([w], torch.optim.SGD, n_clusters=2, alpha=7.0, lr=0.1)
    opt.step()
    _, dc = clusterability_and_grad(start, Partition.equal_blocks((8, 6), 2).mask())
    assert torch.equal(w.grad, g.clone().add_(dc, alpha=-7.0))
    assert torch.equal(w.detach(), start.add(w.grad, alpha=-0.1))
