"""The generic ensemble (modclust.core.ensemble): member i of a vectorised ensemble of any
nn.Module is the lone run with seed i, for a CNN, an MLP and a token model, with and without
the clusterability term, with per-member lambdas; bad input stops with one clear message."""

import dataclasses

import pytest
import torch
from torch import nn

from modclust.core.clusterability import clusterability
from modclust.core.clusterability import layer_clusterability
from modclust.core.ensemble import ModuleConfig, train_ensemble, train_module
from modclust.core.partition import Partition

N_CLASSES = 4


class TinyCNN(nn.Module):
    """(B, 1, 8, 8) -> conv 1->4 (3x3) -> ReLU -> conv 4->4 (3x3) -> ReLU -> flatten -> Linear(64, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class TinyTokens(nn.Module):
    """Token ids (B, 2) -> embedding 6 x 8 -> flatten -> Linear(16, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(6, 8)
        self.out = nn.Linear(16, N_CLASSES)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids).flatten(1))


class WithDropout(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(super().forward(x), 0.5, self.training)


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, N_CLASSES))


def seeded(build):
    """make_model(seed): seed the global RNG, then build (a user's usual way)."""
    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build()
    return make


def images(n_train: int = 100, n_test: int = 40, seed: int = 0):
    """Random (N, 1, 8, 8) images whose label depends on them; 100 = 3 batches of 32 and one of 4."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(64, N_CLASSES, generator=g)
    def split(n):
        x = torch.randn(n, 1, 8, 8, generator=g)
        return x, (x.flatten(1) @ proj).argmax(1)
    return (*split(n_train), *split(n_test))


def tokens(n_train: int = 100, n_test: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    def split(n):
        ids = torch.randint(0, 6, (n, 2), generator=g)
        return ids, (ids[:, 0] + 2 * ids[:, 1]) % N_CLASSES
    return (*split(n_train), *split(n_test))


CASES = {
    "cnn": (seeded(TinyCNN), images, {"conv2.weight": Partition.equal_blocks((4, 4), 2),
                                      "fc.weight": Partition.equal_blocks((4, 64), 4)}),
    "mlp": (seeded(tiny_mlp), images, ("1.weight", "3.weight")),
    "tokens": (seeded(TinyTokens), tokens, ("out.weight",)),
}


def config(clustered, lam: float, **kw) -> ModuleConfig:
    return ModuleConfig(**{"epochs": 2, "lr": 0.05, "batch_size": 32, "lam": lam, "clustered": clustered,
                           "n_clusters": 4, **kw})


def assert_same_run(member, alone) -> None:
    """The member's weights, buffers and history are the lone run's.

    Not bit for bit: vmap runs the members' convolutions as one grouped convolution and their
    Linear layers as a batched matmul (bmm) plus a separate bias add, where the lone run calls
    conv2d and addmm (the bias folded into the GEMM), so sums round in another order. Here the
    losses differ from the first step on by about one float32 ulp (up to 7e-7) and the weights
    after 8 steps by at most 2.4e-7, SGD and Adam alike; the tolerances (1e-5 relative, 1e-6
    absolute) allow that rounding and its growth over these few steps, and no real difference.
    """
    assert (member.seed, member.lam, member.config) == (alone.seed, alone.lam, alone.config)
    assert type(member.model) is type(alone.model)
    a, b = member.model.state_dict(), alone.model.state_dict()
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    assert set(member.history) == set(alone.history) == {"loss", "ce", "clusterability", "test_acc"}
    for key in ("loss", "ce", "clusterability"):
        assert member.history[key] == pytest.approx(alone.history[key], rel=1e-5, abs=1e-6), key
    assert member.history["test_acc"] == alone.history["test_acc"]
    assert member.partitions == alone.partitions


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("lam", [0.0, 5.0])
def test_member_equals_the_lone_run(case, lam):
    make, data_fn, clustered = CASES[case]
    data, cfg = data_fn(), config(clustered, lam)
    seeds = [0, 1, 2]
    members = train_ensemble(make, seeds, data, cfg)
    assert [r.seed for r in members] == seeds
    for seed, member in zip(seeds, members):
        alone = train_module(make, seed, data, cfg)
        assert len(alone.history["loss"]) == 2 * 4 and len(alone.history["test_acc"]) == 2
        assert_same_run(member, alone)
    # the members are different runs (their own init and data order)
    assert members[0].history["loss"] != members[1].history["loss"]


def test_adam_member_equals_the_lone_run():
    make, data_fn, clustered = CASES["cnn"]
    data, cfg = data_fn(), config(clustered, 5.0, optimizer="adam", lr=1e-2)
    for member in train_ensemble(make, [3, 4], data, cfg):
        assert_same_run(member, train_module(make, member.seed, data, cfg))


def test_per_member_lambdas_equal_their_lone_runs_and_act():
    make, data_fn, clustered = CASES["cnn"]
    data, cfg = data_fn(), config(clustered, 0.0, epochs=3)
    lams = [0.0, 40.0, 5.0]
    members = train_ensemble(make, [0, 0, 1], data, cfg, lams=lams)
    for member, lam in zip(members, lams):
        assert member.lam == lam and member.config.lam == lam
        assert_same_run(member, train_module(make, member.seed, data, dataclasses.replace(cfg, lam=lam)))
    # same seed, same init: the clusterability term alone makes them differ, towards higher C
    assert members[0].history["clusterability"][0] == pytest.approx(members[1].history["clusterability"][0])
    assert members[1].final_clusterability > members[0].final_clusterability + 0.05


def test_a_member_does_not_depend_on_the_others():
    make, data_fn, clustered = CASES["mlp"]
    data, cfg = data_fn(), config(clustered, 5.0)
    alone_in_ensemble = train_ensemble(make, [1], data, cfg)[0]
    among_others = train_ensemble(make, [0, 1, 2], data, cfg)[1]
    assert_same_run(alone_in_ensemble, among_others)


def test_members_are_plain_modules_with_their_test_accuracy():
    make, data_fn, clustered = CASES["cnn"]
    data, cfg = data_fn(), config(clustered, 5.0, epochs=1)
    runs = train_ensemble(make, [0, 1], data, cfg)
    for run in runs:
        assert type(run.model) is TinyCNN
        assert all(p.shape == q.shape for p, q in zip(run.model.parameters(), TinyCNN().parameters()))
        assert all(p.is_leaf and p.grad is None for p in run.model.parameters())
        with torch.no_grad():
            acc = (run.model(data[2]).argmax(1) == data[3]).float().mean().item()
        assert run.test_acc == pytest.approx(acc)
    assert not torch.equal(runs[0].model.fc.weight, runs[1].model.fc.weight)


def test_no_epochs_and_nothing_clustered():
    make, data_fn, _ = CASES["mlp"]
    data = data_fn()
    cfg = ModuleConfig(epochs=0)
    member, alone = train_ensemble(make, [5], data, cfg)[0], train_module(make, 5, data, cfg)
    assert member.history == alone.history
    assert member.history["loss"] == [] and member.history["clusterability"] == []
    assert len(member.history["test_acc"]) == 1
    torch.testing.assert_close(member.model.state_dict(), seeded(tiny_mlp)(5).state_dict(), rtol=0, atol=0)
    plain = ModuleConfig(epochs=1, batch_size=32, lr=0.05)
    member, alone = train_ensemble(make, [5], data, plain)[0], train_module(make, 5, data, plain)
    assert member.history["clusterability"] == [] and member.history["ce"] == pytest.approx(alone.history["ce"])
    assert member.final_clusterability != member.final_clusterability  # nan: nothing clustered


def test_a_layer_clusterability_counts_conv_kernels_by_their_squared_norm():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, 3, 3, generator=g)
    mask = Partition.equal_blocks((6, 4), 2).mask()
    s = (w ** 2).sum((2, 3))
    torch.testing.assert_close(layer_clusterability(w, mask), clusterability(s.sqrt(), mask))
    m2 = torch.randn(6, 4, generator=g)
    assert torch.equal(layer_clusterability(m2, mask), clusterability(m2, mask))
    assert layer_clusterability(torch.zeros(6, 4, 3, 3), mask).item() == 0.0
    all_inside = w * mask[:, :, None, None]
    assert layer_clusterability(all_inside, mask).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="Linear weight"):
        layer_clusterability(torch.ones(3), mask)


def _bad_cases():
    cnn, mlp = seeded(TinyCNN), seeded(tiny_mlp)
    x, y, vx, vy = images()
    ok = ModuleConfig(epochs=1, batch_size=32)
    def other_width(seed):
        torch.manual_seed(seed)
        return TinyCNN() if seed == 0 else nn.Sequential(nn.Conv2d(1, 5, 3), nn.Flatten(), nn.Linear(180, 4))
    return {
        # name: (make_model, seeds, data, cfg or a function building it, lams, error, message)
        "no seeds": (cnn, [], (x, y, vx, vy), ok, None, ValueError, "seeds must have at least 1"),
        "negative seed": (cnn, [-1], (x, y, vx, vy), ok, None, ValueError, r"seeds\[0\] must be an int"),
        "lams per seed": (cnn, [0, 1], (x, y, vx, vy), config(("fc.weight",), 0.0), [1.0], ValueError,
                          "one lambda per seed: 2 seeds, got 1"),
        "negative lam": (cnn, [0, 1], (x, y, vx, vy), config(("fc.weight",), 0.0), [1.0, -1.0], ValueError,
                         r"lams\[1\] must be a finite number >= 0"),
        "nan lam": (cnn, [0], (x, y, vx, vy), config(("fc.weight",), 0.0), [float("nan")], ValueError,
                    "lams must hold finite numbers"),
        "lams without weights": (cnn, [0], (x, y, vx, vy), ok, [2.0], ValueError, "no weight is clustered"),
        "unknown weight": (cnn, [0], (x, y, vx, vy), config(("conv3.weight",), 1.0), None, ValueError,
                           "'conv3.weight', which is not a parameter of the TinyCNN"),
        "a bias": (cnn, [0], (x, y, vx, vy), config(("fc.bias",), 1.0), None, ValueError,
                   r"'fc.bias' of shape \(4,\): only weights with at least 2 dims"),
        "partition shape": (cnn, [0], (x, y, vx, vy), config({"conv2.weight": Partition.equal_blocks((4, 3), 2)},
                                                             1.0), None, ValueError,
                            r"has shape \(4, 3\) but the weight's \(out, in\) is \(4, 4\)"),
        "too many blocks": (cnn, [0], (x, y, vx, vy), config(("conv1.weight",), 1.0), None, ValueError,
                            r"cannot cut 'conv1.weight' \(\(out, in\) = \(4, 1\)\) into ModuleConfig.n_clusters=4"),
        "labels per example": (cnn, [0], (x, y[:50], vx, vy), ok, None, ValueError, "one label per example"),
        "float labels": (cnn, [0], (x, y.float(), vx, vy), ok, None, TypeError, "integer class labels"),
        "labels beyond outputs": (cnn, [0], (x, y + 3, vx, vy), ok, None, ValueError,
                                  r"labels run from \d+ to \d+ but make_model\(0\)'s model has 4 outputs: "
                                  r"labels must lie in 0 .. 3"),
        "input shape": (cnn, [0], (x.expand(-1, 3, -1, -1), y, vx.expand(-1, 3, -1, -1), vy), ok, None, ValueError,
                        r"does not take data of example shape \(3, 8, 8\)"),
        "train and test shapes": (mlp, [0], (x, y, vx.flatten(1), vy), ok, None, ValueError,
                                  "the same example shape"),
        "three tensors": (cnn, [0], (x, y, vx), ok, None, TypeError, "data must be four tensors"),
        "not a module": (lambda seed: "net", [0], (x, y, vx, vy), ok, None, TypeError,
                         r"make_model\(0\) must return an nn.Module, got str"),
        "architectures": (other_width, [0, 1], (x, y, vx, vy), ok, None, ValueError,
                          r"make_model\(1\) builds a different architecture from make_model\(0\)"),
        "dropout": (seeded(WithDropout), [0, 1], (x, y, vx, vy), ok, None, ValueError,
                    r"draws random numbers \(dropout\?\)"),
        "not a config": (cnn, [0], (x, y, vx, vy), {"epochs": 1}, None, TypeError, "cfg must be a ModuleConfig"),
    }


@pytest.mark.parametrize("name", sorted(_bad_cases()))
def test_bad_input_stops_with_one_clear_message(name):
    make, seeds, data, cfg, lams, error, message = _bad_cases()[name]
    with pytest.raises(error, match=message):
        train_ensemble(make, seeds, data, cfg, lams=lams)
    lone_too = lams is None and len(seeds) == 1 and seeds[0] >= 0
    if lone_too:  # the lone loop checks the same things with the same words
        with pytest.raises(error, match=message):
            train_module(make, seeds[0], data, cfg)


@pytest.mark.parametrize("kw, error, message", [
    ({"lam": 1.0}, ValueError, "lam is 1 but no weight is clustered"),
    ({"lam": float("inf"), "clustered": ("fc.weight",)}, ValueError, "ModuleConfig.lam must be a finite number"),
    ({"optimizer": "rmsprop"}, ValueError, r"ModuleConfig.optimizer must be one of \['sgd', 'adam'\]"),
    ({"lr": 0.0}, ValueError, "ModuleConfig.lr must be a finite number > 0"),
    ({"batch_size": 0}, ValueError, "ModuleConfig.batch_size must be an int >= 1"),
    ({"clustered": "fc.weight"}, TypeError, r"got the string 'fc.weight' \(write \('fc.weight',\)\)"),
    ({"clustered": {"fc.weight": 4}}, TypeError, r"got the entry \('fc.weight', 4\)"),
    ({"clustered": ("fc.weight", "fc.weight")}, ValueError, "names 'fc.weight' twice"),
])
def test_bad_config_stops_where_it_is_made(kw, error, message):
    with pytest.raises(error, match=message):
        ModuleConfig(**kw)


def test_config_normalises_and_survives_replace():
    part = Partition.equal_blocks((4, 4), 2)
    cfg = ModuleConfig(clustered={"conv2.weight": part, "fc.weight": None}, lam=1.0)
    assert cfg.clustered == (("conv2.weight", part), ("fc.weight", None))
    assert cfg.clustered_names == ("conv2.weight", "fc.weight")
    assert dataclasses.replace(cfg, lam=2.0).clustered == cfg.clustered
    assert hash(cfg) == hash(ModuleConfig(clustered=[("conv2.weight", part), "fc.weight"], lam=1.0))
