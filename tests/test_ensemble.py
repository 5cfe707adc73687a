"""An ensemble (train_many) is M independent runs: member i equals configs[i] trained alone."""

import pytest
import torch

from modclust import TrainConfig, train_many
from modclust import train


def configs(**kw):
    base = dict(widths=(784, 16, 16, 10), n_clusters=4, batch_size=32, epochs=3)
    grid = [(0, 0.0, 0.05), (1, 15.0, 0.05), (2, 5.0, 0.02), (3, 15.0, 0.1), (0, 30.0, 0.05)]
    return [TrainConfig(**{**base, "seed": s, "lam": lam, "lr": lr, **kw}) for s, lam, lr in grid]


def test_member_equals_the_config_trained_alone(tiny):
    cs = configs()
    together = train_many(cs, tiny, progress=False)
    for c, member in zip(cs, together):
        alone = train(c, tiny, progress=False)
        # the first steps agree to float rounding (the batched matmuls may round differently)
        assert member.history["ce"][:10] == pytest.approx(alone.history["ce"][:10], abs=1e-5)
        assert member.history["clusterability"][:10] == pytest.approx(alone.history["clusterability"][:10], abs=1e-5)
        for a, b in zip(member.model.weights(), alone.model.weights()):
            assert torch.allclose(a, b, atol=1e-4)
        assert member.test_acc == pytest.approx(alone.test_acc, abs=0.02)
        assert member.config == c


def test_members_do_not_leak_into_each_other(tiny):
    """Member 0's run does not depend on what else is in the ensemble."""
    cs = configs()
    small = train_many(cs[:1], tiny, progress=False)[0]
    big = train_many(cs, tiny, progress=False)[0]
    for a, b in zip(small.model.weights(), big.model.weights()):
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.mnist
def test_ensemble_accuracy_agrees_on_mnist(mnist):
    data = mnist.subset(6000, 2000)
    cs = [TrainConfig(seed=s, lam=lam, epochs=2) for s in (0, 1) for lam in (0.0, 15.0)]
    together = train_many(cs, data, progress=False)
    alone = [train(c, data, progress=False) for c in cs]
    for t, a in zip(together, alone):
        assert t.history["ce"][:20] == pytest.approx(a.history["ce"][:20], abs=1e-4)
        assert abs(t.test_acc - a.test_acc) <= 0.01
        assert abs(t.final_clusterability - a.final_clusterability) <= 0.01
