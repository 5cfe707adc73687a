"""Numbers that are not numbers: every numeric input is checked where it enters the library.

Each bad value raises one TypeError (wrong kind) or ValueError (wrong value) whose message
names the parameter; all-zero weights have C = 0 with gradient 0; a diverging run stops with
an error that names the step and the configuration. Everything runs on tiny random data.
"""

import math
import re
import sys

import numpy as np
import pytest
import torch

from modclust import MLP, TrainConfig, clusterability_and_grad, clusterability_grad, train_many
from modclust import clusterability
from modclust import train
from modclust.analysis.circuits import greedy_circuit, greedy_circuit_fast, greedy_circuits_fast
from modclust.seed.pruning_cell import seed_cell_prune
from modclust.analysis.ablation import classwise_correct
from modclust.analysis.any_model import label_semanticity, unit_selectivity
from modclust.analysis.semanticity import top_k_indices
from modclust.analysis.masks import mask_circuit_mlp, mask_circuits_mlp
from modclust.core.optim import Modularity
from modclust.core.partition import Partition
from modclust.analysis.selectivity import (binary_entropy_bits, bin_activations, class_means, cluster_selectivity,
                                  mutual_information, selectivity_index)
from modclust.analysis.spectral import matrix_spectral_null, spectral_partition, weight_clusterability
from modclust.core.stats import pareto_front
from modclust.core.train import TrainingDivergedError

from conftest import make_tiny

NAN, INF = float("nan"), float("inf")
SMALL = dict(widths=(784, 16, 16, 10), n_clusters=4, lam=15.0, lr=0.05, batch_size=64, epochs=2, seed=3)


def small(**kw):
    return TrainConfig(**{**SMALL, **kw})


# --- TrainConfig --------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, err, match", [
    (dict(lam=NAN), ValueError, r"TrainConfig\.lam must be a finite number >= 0, got nan"),
    (dict(lam=INF), ValueError, r"TrainConfig\.lam must be a finite number >= 0, got inf"),
    (dict(lam=-1.0), ValueError, r"TrainConfig\.lam must be a finite number >= 0, got -1\.0"),
    (dict(lam="15"), TypeError, r"TrainConfig\.lam must be a finite number"),
    (dict(lr=NAN), ValueError, r"TrainConfig\.lr must be a finite number > 0, got nan"),
    (dict(lr=0.0), ValueError, r"TrainConfig\.lr must be a finite number > 0, got 0\.0"),
    (dict(lr=-INF), ValueError, r"TrainConfig\.lr .* got -inf"),
    (dict(epochs=1.5), ValueError, r"TrainConfig\.epochs must be an int >= 0, got 1\.5"),
    (dict(epochs=True), TypeError, r"TrainConfig\.epochs must be an int >= 0, got True"),
    (dict(epochs=-1), ValueError, r"TrainConfig\.epochs must be an int >= 0, got -1"),
    (dict(batch_size=0), ValueError, r"TrainConfig\.batch_size must be an int >= 1, got 0"),
    (dict(batch_size=32.5), ValueError, r"TrainConfig\.batch_size must be an int >= 1, got 32\.5"),
    (dict(seed=1.5), ValueError, r"TrainConfig\.seed must be an int"),
    (dict(seed=-1), ValueError, r"TrainConfig\.seed must be an int in \[0, "),
    (dict(seed=None), TypeError, r"TrainConfig\.seed must be an int"),
    (dict(n_clusters=0), ValueError, r"TrainConfig\.n_clusters must be an int >= 1, got 0"),
    (dict(n_clusters=2.5), ValueError, r"TrainConfig\.n_clusters must be an int >= 1, got 2\.5"),
    (dict(n_clusters=17), ValueError, r"TrainConfig\.n_clusters must be an int in \[1, 16\] .*fc2 \(16 x 16\).*got 17"),
    (dict(dataset="cifar"), ValueError,
     r"TrainConfig\.dataset must be one of \[.*'mnist'.*\], got 'cifar'"),
    (dict(widths=(784, 0, 10)), ValueError, r"TrainConfig\.widths\[1\] must be an int >= 1, got 0"),
    (dict(widths="784"), TypeError, r"TrainConfig\.widths must be a sequence of ints, got '784'"),
    (dict(widths=784), TypeError, r"TrainConfig\.widths must be a sequence of ints, got 784"),
    (dict(widths=(784, 16.5, 10)), ValueError, r"TrainConfig\.widths\[1\] must be an int >= 1, got 16\.5"),
    (dict(widths=(784, True, 10)), TypeError, r"TrainConfig\.widths\[1\] must be an int >= 1, got True"),
    (dict(widths=(784, "16", 10)), TypeError, r"TrainConfig\.widths\[1\] must be an int"),
    (dict(widths=(784,), clustered_layers=()), ValueError, r"TrainConfig\.widths must have at least 2 entries"),
    (dict(widths=(784, 64, 64, 12)), ValueError, r"TrainConfig\.widths must end in at most 10 outputs"),
    (dict(clustered_layers="fc2"), TypeError, r"TrainConfig\.clustered_layers must be a sequence of layer names"),
])
def test_train_config_rejects_bad_fields(kw, err, match):
    with pytest.raises(err, match=match):
        small(**kw)


def test_train_config_keeps_valid_values_and_round_trips():
    c = small(widths=[784.0, np.int64(16), 16, 10], epochs=2.0, lam=0, lr=np.float64(0.05), seed=np.int64(3))
    assert c.widths == (784, 16, 16, 10) and all(type(w) is int for w in c.widths)
    assert type(c.epochs) is int and type(c.lam) is float and type(c.lr) is float and type(c.seed) is int
    assert c == small(lam=0.0)
    assert TrainConfig.from_dict(c.to_dict()) == c
    d = {**c.to_dict(), "widths": [784, 16, 10], "clustered_layers": ["fc1"]}
    assert TrainConfig.from_dict(d).widths == (784, 16, 10)
    with pytest.raises(ValueError, match=r"TrainConfig\.lam"):
        TrainConfig.from_dict({**c.to_dict(), "lam": NAN})
    TrainConfig(clustered_layers=(), n_clusters=64)  # no clustered layer: nothing to cut


@pytest.mark.parametrize("widths", [(784, 64, 64, 5), (784, 16, 3)])
@pytest.mark.parametrize("method", ["fast", "autograd"])
def test_too_few_outputs_for_the_labels_fail_before_training(tiny, widths, method):
    cfg = small(widths=widths, n_clusters=2, clustered_layers=())
    with pytest.raises(ValueError, match=rf"TrainConfig\.widths end in {widths[-1]} outputs but the data has labels "
                                         r"from 0 to 9"):
        train(cfg, tiny, method=method, progress=False)
    with pytest.raises(ValueError, match=r"TrainConfig\.widths start at 784 inputs but the data has \(20,\) features"):
        train(small(), make_tiny(n_in=20), method=method, progress=False)


# --- Modularity ---------------------------------------------------------------------------------


def _mlp():
    return MLP((784, 16, 16, 10), seed=0)


@pytest.mark.parametrize("kw, err, match", [
    (dict(alpha=NAN), ValueError, r"Modularity alpha must be a finite number >= 0, got nan"),
    (dict(alpha=-1.0), ValueError, r"Modularity alpha must be a finite number >= 0, got -1\.0"),
    (dict(alpha=INF), ValueError, r"Modularity alpha must be a finite number >= 0, got inf"),
    (dict(n_clusters=0), ValueError, r"Modularity n_clusters must be an int >= 1, got 0"),
    (dict(n_clusters=2.5), ValueError, r"Modularity n_clusters must be an int >= 1, got 2\.5"),
    (dict(n_clusters="4"), TypeError, r"Modularity n_clusters must be an int"),
])
def test_modularity_rejects_bad_defaults(kw, err, match):
    with pytest.raises(err, match=match):
        Modularity(_mlp().parameters(), torch.optim.SGD, lr=0.1, **kw)


@pytest.mark.parametrize("group, err, match", [
    (dict(alpha=-5.0), ValueError, r"Modularity param group 1: alpha must be a finite number >= 0, got -5\.0"),
    (dict(alpha=NAN), ValueError, r"Modularity param group 1: alpha must be a finite number >= 0, got nan"),
    (dict(n_clusters=0), ValueError, r"Modularity param group 1: n_clusters must be an int >= 1, got 0"),
    (dict(n_clusters=1.5), ValueError, r"Modularity param group 1: n_clusters must be an int >= 1, got 1\.5"),
])
def test_modularity_rejects_bad_param_groups(group, err, match):
    m = _mlp()
    groups = [{"params": [m.fc1.weight]}, {"params": [m.fc2.weight], **group}]
    with pytest.raises(err, match=match):
        Modularity(groups, torch.optim.SGD, lr=0.1)
    opt = Modularity([{"params": [m.fc1.weight]}], torch.optim.SGD, lr=0.1)  # and when added later
    with pytest.raises(err, match=match):
        opt.add_param_group({"params": [m.fc2.weight], **group})
    assert len(opt.param_groups) == 1 and len(opt.base.param_groups) == 1  # nothing half-added


def test_modularity_add_param_group_after_construction_works():
    m = _mlp()
    opt = Modularity([{"params": [m.fc1.weight]}], torch.optim.SGD, n_clusters=4, alpha=2.0, lr=0.1)
    opt.add_param_group({"params": [m.fc2.weight], "alpha": 3})
    g = opt.param_groups[1]
    assert g["alpha"] == 3.0 and g["n_clusters"] == 4 and g["lr"] == 0.1 and opt.base.param_groups is opt.param_groups
    assert opt.partition(m.fc2.weight).k == 4
    with pytest.raises(ValueError, match="n_clusters=20"):
        opt.add_param_group({"params": [m.fc3.weight], "n_clusters": 20})
    m(torch.randn(8, 784)).sum().backward()
    opt.step()
    assert all(torch.isfinite(w).all() for w in m.weights())


# --- all-zero weights ---------------------------------------------------------------------------


def test_all_zero_weight_has_zero_clusterability_and_gradient():
    mask = Partition.equal_blocks((6, 8), 2).mask()
    zero = torch.zeros(6, 8)
    assert clusterability(zero, mask).item() == 0.0
    c, g = clusterability_and_grad(zero, mask)
    assert c.item() == 0.0 and torch.equal(g, torch.zeros_like(g))
    assert torch.equal(clusterability_grad(zero, mask), torch.zeros(6, 8))
    w = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    stacked = torch.stack([zero, w, zero])  # leading batch dims: only the zero members are special
    cs, gs = clusterability_and_grad(stacked, mask)
    assert cs.tolist() == [0.0, pytest.approx(clusterability(w, mask).item()), 0.0]
    assert torch.equal(gs[0], zero) and torch.allclose(gs[1], clusterability_grad(w, mask))
    assert torch.equal(clusterability(stacked, mask), cs)
    z = zero.clone().requires_grad_()  # the autograd path (the seed's loss) agrees
    clusterability(z, mask).backward()
    assert torch.equal(z.grad, torch.zeros(6, 8))
    nan_w = w.clone()
    nan_w[0, 0] = NAN  # a nan weight is not hidden: its C stays nan
    assert math.isnan(clusterability(nan_w, mask).item())


@pytest.mark.parametrize("decoupled", [False, True])
def test_modularity_step_on_an_all_zero_layer_leaves_no_nan(decoupled):
    m = _mlp()
    with torch.no_grad():
        m.fc2.weight.zero_()
    opt = Modularity(m.parameters(), torch.optim.SGD, n_clusters=4, alpha=20.0, decoupled=decoupled, lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        m(torch.randn(16, 784)).logsumexp(-1).mean().backward()
        opt.step()
    assert all(torch.isfinite(w).all() for w in m.weights())
    assert math.isfinite(opt.clusterability())


@pytest.mark.parametrize("how", ["single", "batched", "static", "autograd"])
def test_training_from_an_all_zero_layer_leaves_no_nan(tiny, monkeypatch, how):
    module = sys.modules["modclust.core.train"]  # modclust.core.train, the attribute, is the function
    real = module.init_weights

    def zero_fc2(widths, gen):
        ws = real(widths, gen)
        ws[1].zero_()
        return ws

    monkeypatch.setattr(module, "init_weights", zero_fc2)
    cfgs = [small(epochs=1), small(epochs=1, seed=4)]
    if how == "single":
        results = [train(cfgs[0], tiny, progress=False)]
    elif how == "autograd":
        results = [train(cfgs[0], tiny, method="autograd", progress=False)]
    else:
        results = train_many(cfgs, tiny, progress=False, cuda_graph=how == "static")
    for r in results:
        assert r.history["clusterability"][0] == 0.0  # C of the all-zero fc2 before the first step
        assert all(math.isfinite(v) for v in r.history["ce"] + r.history["clusterability"])
        assert all(torch.isfinite(w).all() for w in r.model.weights())


# --- diverging training -------------------------------------------------------------------------

STEP = r"at epoch 1, step \d+ of 4 \(global step \d+ of 12"


@pytest.mark.parametrize("method", ["fast", "autograd"])
def test_diverging_run_names_the_step_and_the_config(tiny, method):
    cfg = small(lr=1e6, epochs=3)
    with pytest.raises(TrainingDivergedError, match=STEP) as err:
        train(cfg, tiny, method=method, progress=False)
    msg = str(err.value)
    assert "loss is not finite" in msg and repr(cfg) in msg and "Lower TrainConfig.lr" in msg
    assert isinstance(err.value, FloatingPointError)


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_diverging_member_of_a_batch_is_named(tiny, cuda_graph):
    cfgs = [small(epochs=3), small(lr=1e6, epochs=3, seed=5), small(epochs=3, seed=6)]
    with pytest.raises(TrainingDivergedError, match=STEP + r".* of member 1 of the 3 trained together") as err:
        train_many(cfgs, tiny, progress=False, cuda_graph=cuda_graph)
    msg = str(err.value)
    assert f"configs[1] = {cfgs[1]!r}" in msg and "member 0" not in msg and "member 2" not in msg


def test_a_run_that_stays_finite_is_unchanged(tiny):
    a, b = train(small(), tiny, progress=False), train(small(), tiny, method="autograd", progress=False)
    assert all(math.isfinite(v) for v in a.history["ce"])
    assert a.history["ce"] == pytest.approx(b.history["ce"], abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("cuda_graph", [None, False])
def test_diverging_run_on_cuda_is_caught_without_a_per_step_sync(cuda_graph):
    data = make_tiny(n_train=640).to("cuda")
    cfgs = [small(epochs=4, batch_size=32), small(lr=1e6, epochs=4, batch_size=32, seed=5)]
    with pytest.raises(TrainingDivergedError, match=r"at epoch 1, step \d+ of 20 .* of member 1 of the 2"):
        train_many(cfgs, data, progress=False, cuda_graph=cuda_graph)
    ok = train_many(cfgs[:1], data, progress=False, cuda_graph=cuda_graph)[0]
    assert all(math.isfinite(v) for v in ok.history["ce"])


# --- circuits -----------------------------------------------------------------------------------


def test_every_circuit_function_refuses_a_label_with_no_examples(circuit_setup):
    model, x, y = circuit_setup
    none = x[y == 7]
    calls = [
        lambda: greedy_circuit(model, none, 7),
        lambda: greedy_circuit_fast(model, none, 7),
        lambda: greedy_circuits_fast(model, x, y, labels=[7]),
        lambda: greedy_circuits_fast(model, x, y, labels=[7], objective="seed", baseline="full"),
        lambda: mask_circuit_mlp(model, none, 7, steps=2),
        lambda: mask_circuits_mlp(model, x, y, labels=[7], steps=2),
        lambda: seed_cell_prune(model, none, 7),
        lambda: greedy_circuit(model, x[:0], 0, objective="margin"),
        lambda: greedy_circuit(model, x[:0], None, objective="kl"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"no examples of (label \d|any label)"):
            call()


@pytest.mark.parametrize("bad", [NAN, INF, -1e-3, -INF])
def test_every_greedy_pruner_rejects_a_bad_threshold(circuit_setup, bad):
    model, x, y = circuit_setup
    match = rf"threshold must be a finite number >= 0, got {re.escape(repr(bad))}"
    for call in (lambda: greedy_circuit(model, x[y == 0], 0, threshold=bad),
                 lambda: greedy_circuit_fast(model, x[y == 0], 0, threshold=bad),
                 lambda: greedy_circuits_fast(model, x, y, threshold=bad),
                 lambda: seed_cell_prune(model, x[y == 0], 0, threshold=bad)):
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(TypeError, match="threshold must be a finite number"):
        greedy_circuit(model, x[y == 0], 0, threshold="1e-4")


@pytest.mark.parametrize("label, err", [(1.5, ValueError), (-1, ValueError), (10, ValueError), (True, TypeError),
                                        ("0", TypeError)])
def test_circuit_labels_must_be_outputs(circuit_setup, label, err):
    model, x, y = circuit_setup
    for call in (lambda: greedy_circuit(model, x, label, objective="margin"),
                 lambda: greedy_circuit_fast(model, x, label, objective="margin"),
                 lambda: mask_circuit_mlp(model, x, label, objective="margin", steps=1),
                 lambda: seed_cell_prune(model, x, label)):
        with pytest.raises(err, match="label must be an int"):
            call()
    with pytest.raises(err, match="label must be an int"):
        greedy_circuits_fast(model, x, y, labels=[0, label], objective="margin")


@pytest.mark.parametrize("tol", [NAN, -1.0, INF])
def test_fast_pruners_reject_a_bad_tol(circuit_setup, tol):
    model, x, y = circuit_setup
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        greedy_circuit_fast(model, x[y == 0], 0, tol=tol)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        greedy_circuits_fast(model, x, y, tol=tol)


def test_valid_circuit_arguments_still_work(circuit_setup):
    model, x, y = circuit_setup
    a = greedy_circuit(model, x[y == 1], np.int64(1), layers=["fc3"], threshold=0)
    b = greedy_circuit_fast(model, x[y == 1], 1, layers=["fc3"], threshold=np.float64(0.0), tol=0)
    assert a.label == 1 and torch.equal(a.kept["fc3"], b.kept["fc3"])
    m = mask_circuit_mlp(model, x[y == 1], 1, steps=2.0, log_every=1)
    assert m.steps == 2 and len(m.history) == 2


# --- analyses -----------------------------------------------------------------------------------


def test_selectivity_checks_its_numbers():
    g = torch.Generator().manual_seed(0)
    acts, y = torch.rand(40, 3, generator=g), torch.arange(40) % 4
    for f in (class_means, selectivity_index, mutual_information):
        with pytest.raises(ValueError, match=r"n_classes must be an int >= 1, got 0"):
            f(acts, y, 0)
        with pytest.raises(ValueError, match=r"n_classes must be an int >= 1, got 2\.5"):
            f(acts, y, 2.5)
        with pytest.raises(ValueError, match=r"y must lie in 0 \.\. 2 \(n_classes=3\), got a label 3"):
            f(acts, y, 3)
        bad = acts.clone()
        bad[0, 0] = NAN
        with pytest.raises(ValueError, match=r"acts must be finite, got 1 nan or inf entry of 120"):
            f(bad, y, 4)
    with pytest.raises(ValueError, match=r"n_bins must be an int >= 1, got 0"):
        bin_activations(acts, 0)
    with pytest.raises(ValueError, match=r"n_bins must be an int >= 1, got 2\.5"):
        mutual_information(acts, y, 4, n_bins=2.5)
    with pytest.raises(ValueError, match=r"n_bins must be an int >= 1"):
        cluster_selectivity(acts, y, [[0], [1, 2]], 4, n_bins=-1)
    with pytest.raises(ValueError, match=r"unit index of cluster 1 must be an int, got 1\.5"):
        cluster_selectivity(acts, y, [[0], [1.5]], 4)
    with pytest.raises(ValueError, match=r"n_bins must be an int >= 1"):
        unit_selectivity(MLP((6, 5, 3), seed=0), "fc1", torch.randn(10, 6), torch.arange(10) % 3, 3, n_bins=0)
    for p in (NAN, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\]"):
            binary_entropy_bits(p)
    assert binary_entropy_bits(0.0) == 0.0 and binary_entropy_bits(1) == 0.0
    assert mutual_information(acts, y, 4).shape == (3,)  # valid inputs still work


def test_semanticity_checks_its_numbers():
    model = MLP((784, 8, 10), seed=0)
    data = make_tiny(n_train=20, n_test=30)
    with pytest.raises(ValueError, match=r"k must be an int, got 2\.5"):
        top_k_indices(torch.zeros(5, 2), 2.5)
    with pytest.raises(ValueError, match="k must be between 1"):
        top_k_indices(torch.zeros(5, 2), 0)
    with pytest.raises(ValueError, match=r"n_classes must be an int >= 1, got 0"):
        label_semanticity(model, "fc1", data.test_x, data.test_y, k=5, n_classes=0)
    with pytest.raises(ValueError, match=r"y must lie in 0 \.\. 4"):
        label_semanticity(model, "fc1", data.test_x, data.test_y, k=30, n_classes=5)
    assert label_semanticity(model, "fc1", data.test_x, data.test_y, k=5).k == 5


def test_spectral_checks_its_numbers():
    w = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"k must be an int, got 2\.5"):
        spectral_partition(w, 2.5)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 4294967295\], got -1"):
        spectral_partition(w, 2, seed=-1)
    with pytest.raises(ValueError, match=r"n_draws must be an int >= 2, got 1"):
        matrix_spectral_null(w, 2, n_draws=1)
    with pytest.raises(ValueError, match=r"n_draws must be an int >= 2, got 2\.5"):
        matrix_spectral_null(w, 2, n_draws=2.5)
    bad = w.clone()
    bad[1, 2] = INF
    with pytest.raises(ValueError, match=r"weight must be finite, got 1 nan or inf entry of 48"):
        spectral_partition(bad, 2)
    with pytest.raises(ValueError, match=r"weight must be finite"):
        weight_clusterability(bad, Partition.equal_blocks((8, 6), 2))


def test_ablation_checks_its_numbers():
    pred, y = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"n_classes must be an int >= 1, got 0"):
        classwise_correct(pred, y, 0)
    with pytest.raises(ValueError, match=r"y must lie in 0 \.\. 1 \(n_classes=2\), got a label 2"):
        classwise_correct(pred, y, 2)
    assert classwise_correct(pred, y, 4).tolist() == [1.0, 1.0, 1.0, 0.0]


def test_pareto_front_keeps_the_undominated_points_by_x():
    pts = [(0.1, 0.5), (0.2, 0.9), (0.5, 0.8), (0.9, 0.3), (0.4, 0.7), (0.2, 0.9)]
    assert pareto_front(pts) == [1, 5, 2, 3]  # (0.4, 0.7) is beaten by (0.5, 0.8); equal points both kept
    assert pareto_front([]) == [] and pareto_front([(0.5, 0.5)]) == [0]
    assert pareto_front([(1.0, 1.0), (0.0, 0.0)]) == [0]
    assert pareto_front([(0.5, 0.9), (0.5, 0.8)]) == [0]  # same x, lower y: dominated


def test_partition_checks_its_ints():
    with pytest.raises(ValueError, match=r"k must be an int, got 2\.5"):
        Partition.equal_blocks((8, 8), 2.5)
    with pytest.raises(ValueError, match=r"row_labels\[1\] must be an int >= -1, got 1\.5"):
        Partition.from_labels([0, 1.5], [0, 1])
    with pytest.raises(ValueError, match=r"Partition rows\[0\]\[1\] must be an int, got 1\.5"):
        Partition((4, 3), ((0, 1.5),), ((0,),))
    with pytest.raises(ValueError, match=r"clusters\[0\] must be an int in \[0, 1\], got 2"):
        Partition.equal_blocks((8, 8), 2).off_mask([2])
    assert Partition.equal_blocks((8.0, 8), np.int64(2)).k == 2
