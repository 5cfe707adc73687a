import torch

from modclust import Partition, clusterability_and_grad, clusterability_grad
from modclust import clusterability
from modclust.core.model import MLP


def seed_clusterability(w, rows, cols):
    """DESIGN.md's definition, written out with loops."""
    inside = sum(float(w[i, j]) ** 2 for r, c in zip(rows, cols) for i in r for j in c)
    return inside / float((w**2).sum())


def test_matches_definition_and_edges():
    p = Partition.equal_blocks((12, 9), 3)
    w = torch.randn(12, 9, dtype=torch.float64)
    assert abs(clusterability(w, p.mask(dtype=torch.float64)).item() - seed_clusterability(w, p.rows, p.cols)) < 1e-12
    block_only = w * p.mask(dtype=torch.float64)
    assert clusterability(block_only, p.mask(dtype=torch.float64)).item() == 1.0


def test_about_one_over_k_at_init():
    w = MLP(seed=0).fc2.weight.detach()
    c = clusterability(w, Partition.equal_blocks((64, 64), 4).mask())
    assert 0.2 < c.item() < 0.3


def test_closed_form_gradient_equals_autograd():
    p = Partition.from_labels([0, 1, 1, 0, -1, 2], [2, 2, 0, 1, 1])
    m = p.mask(dtype=torch.float64)
    w = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    clusterability(w, m).backward()
    assert torch.allclose(clusterability_grad(w.detach(), m), w.grad, atol=1e-12)


def test_batched_over_models():
    m = Partition.equal_blocks((8, 8), 2).mask(dtype=torch.float64)
    ws = torch.randn(5, 8, 8, dtype=torch.float64)
    c, g = clusterability_and_grad(ws, m)
    for i in range(5):
        assert torch.allclose(c[i], clusterability(ws[i], m))
        assert torch.allclose(g[i], clusterability_grad(ws[i], m))
