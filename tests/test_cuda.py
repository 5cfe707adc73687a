"""The static training step (the one captured as a CUDA graph) and the CUDA path.

The static step runs eagerly on the CPU too, so its semantics are tested everywhere; the
CUDA tests need a GPU and skip without one.
"""

import pytest
import torch

from modclust import TrainConfig, train_many
from modclust import train

from conftest import make_tiny


def cfg(**kw):
    base = dict(widths=(784, 16, 16, 10), n_clusters=4, lam=15.0, lr=0.05, batch_size=32, epochs=2, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("n_train", [200, 192])  # with and without a last, partial batch
def test_static_step_equals_eager_step_on_cpu(n_train):
    data = make_tiny(n_train=n_train)
    configs = [cfg(seed=s, lam=lam) for s, lam in [(0, 0.0), (1, 15.0), (2, 5.0)]]
    eager = train_many(configs, data, progress=False, cuda_graph=False)
    static = train_many(configs, data, progress=False, cuda_graph=True)
    for a, b in zip(eager, static):
        assert all(torch.equal(x, y) for x, y in zip(a.model.weights(), b.model.weights()))
        assert a.history == b.history


def test_cpu_default_is_eager_and_train_passes_the_option(tiny):
    """A lone member's eager CPU step keeps its scalars as Python floats (double) where the
    static step keeps float32 tensors: the same run up to that rounding."""
    a = train(cfg(), tiny, progress=False)
    b = train(cfg(), tiny, progress=False, cuda_graph=True)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(a.model.weights(), b.model.weights()))
    assert a.history["ce"] == pytest.approx(b.history["ce"], abs=1e-6)
    assert not all(torch.equal(x, y) for x, y in zip(a.model.weights(), b.model.weights()))  # two paths ran


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("n_train", [640, 650])
def test_cuda_graph_equals_eager_cuda(n_train):
    data = make_tiny(n_train=n_train).to("cuda")
    configs = [cfg(seed=s, lam=lam, epochs=3) for s, lam in [(0, 0.0), (1, 15.0)]]
    eager = train_many(configs, data, progress=False, cuda_graph=False)
    graph = train_many(configs, data, progress=False)  # default on CUDA: captured graph
    for a, b in zip(eager, graph):
        for x, y in zip(a.model.weights(), b.model.weights()):
            assert torch.allclose(x, y, atol=1e-6)
        assert a.history["ce"] == pytest.approx(b.history["ce"], abs=1e-6)
        assert a.history["test_acc"] == pytest.approx(b.history["test_acc"], abs=1e-9)


@needs_cuda
def test_cuda_matches_cpu(tiny):
    c = cfg()
    cpu = train(c, tiny, progress=False)
    gpu = train(c, tiny.to("cuda"), progress=False)
    for x, y in zip(cpu.model.weights(), gpu.model.weights()):
        assert torch.allclose(x, y.cpu(), atol=1e-4)
