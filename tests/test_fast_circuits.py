"""Fast greedy pruning finds exactly the circuits of the plain loop."""

import pytest
import torch

from modclust import MLP, TrainConfig
from modclust import train
from modclust.analysis.circuits import greedy_circuit, greedy_circuit_fast, greedy_circuits_fast

from conftest import make_tiny


@pytest.fixture(scope="module")
def setup():
    data = make_tiny(300, 300, n_in=20, seed=1)
    cfg = TrainConfig(widths=(20, 12, 8, 10), n_clusters=2, epochs=5, lr=0.05)
    models = [train(cfg, data, progress=False).model, train(TrainConfig(**{**cfg.to_dict(), "seed": 7, "lam": 0.0}),
                                                            data, progress=False).model]
    return data, models


def same(a, b):
    return a.kept.keys() == b.kept.keys() and all(torch.equal(a.kept[n], b.kept[n]) for n in a.kept)


@pytest.mark.parametrize("baseline", ["current", "full"])
@pytest.mark.parametrize("threshold", [1e-4, 1e-2])
def test_same_circuits_as_the_plain_loop_for_every_label_and_model(setup, baseline, threshold):
    data, models = setup
    fast = greedy_circuits_fast(models, data.test_x, data.test_y, threshold=threshold, baseline=baseline)
    assert len(fast) == 2
    for model, per_label in zip(models, fast):
        assert sorted(per_label) == sorted(set(data.test_y.tolist()))
        for c, circuit in per_label.items():
            plain = greedy_circuit(model, data.test_x[data.test_y == c], c, threshold=threshold, baseline=baseline)
            assert same(plain, circuit), (c, plain.size, circuit.size)
            assert circuit.full_loss == plain.full_loss and circuit.final_loss == plain.final_loss
            assert circuit.size < sum(w.numel() for w in model.weights())


@pytest.mark.parametrize("baseline", ["current", "full"])
def test_single_label_entry_point_and_layer_subsets(setup, baseline):
    data, models = setup
    x = data.test_x[data.test_y == 2]
    for layers in (["fc3"], ["fc2", "fc3"], ["fc3", "fc1"]):
        plain = greedy_circuit(models[0], x, 2, layers=layers, baseline=baseline)
        fast = greedy_circuit_fast(models[0], x, 2, layers=layers, baseline=baseline)
        assert fast.layers == layers and same(plain, fast)


def test_float64_model_and_without_the_exact_recheck(setup):
    """In float64 the fast path alone already agrees; the band re-check is a guard."""
    data, models = setup
    m64 = MLP(models[0].widths).double()
    m64.set_weights([w.double() for w in models[0].weights()])
    x = data.test_x.double()[data.test_y == 4]
    plain = greedy_circuit(m64, x, 4)
    assert same(plain, greedy_circuit_fast(m64, x, 4))
    assert same(plain, greedy_circuit_fast(m64, x, 4, tol=0.0))


def test_the_recheck_band_decides_near_ties_exactly(setup):
    """A huge band sends every candidate to the plain loop's arithmetic: still the same circuit."""
    data, models = setup
    x = data.test_x[data.test_y == 1]
    plain = greedy_circuit(models[1], x, 1, layers=["fc2", "fc3"])
    assert same(plain, greedy_circuit_fast(models[1], x, 1, layers=["fc2", "fc3"], tol=1.0))


def test_bad_arguments(setup):
    data, models = setup
    with pytest.raises(ValueError, match="baseline"):
        greedy_circuits_fast(models, data.test_x, data.test_y, baseline="nope")
    with pytest.raises(ValueError, match="share widths"):
        greedy_circuits_fast([models[0], MLP((20, 5, 10))], data.test_x, data.test_y)
    with pytest.raises(ValueError, match="no examples"):
        greedy_circuits_fast(models, data.test_x, data.test_y, labels=[11])


@pytest.mark.mnist
def test_same_circuits_on_a_trained_mnist_model(mnist):
    data = mnist.subset(3000, 2000)
    model = train(TrainConfig(epochs=1), data, progress=False).model
    fast = greedy_circuits_fast(model, data.test_x, data.test_y, labels=[3, 7], layers=["fc3"])[0]
    for c in (3, 7):
        plain = greedy_circuit(model, data.test_x[data.test_y == c], c, layers=["fc3"])
        assert same(plain, fast[c])


def test_logits_past_float64_exp_range_take_the_stable_form(setup):
    """Logits beyond ~709 overflow exp in float64: the loss then comes from logsumexp."""
    data, models = setup
    big = MLP(models[0].widths)
    big.set_weights(models[0].weights()[:-1] + [models[0].weights()[-1] * 5000])
    x = data.test_x[data.test_y == 2]
    assert float(big(x).detach().abs().max()) > 1000  # exp overflows past ~709
    plain = greedy_circuit(big, x, 2, layers=["fc2", "fc3"])
    assert same(plain, greedy_circuit_fast(big, x, 2, layers=["fc2", "fc3"]))
    assert 0 < plain.size < 8 * 12 + 10 * 8
