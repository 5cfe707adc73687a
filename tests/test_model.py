"""modclust.core.model: the bias-free MLP, its forward through its layers (hooks fire) against the
batched kernel, its widths and seed checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modclust.analysis.circuits import search_space_pruned
from modclust.core.model import MLP, forward, init_weights
from modclust.core.partition import Partition


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mlp_forward_calls_its_layers_with_the_kernel_s_logits(dtype: torch.dtype) -> None:
    """MLP.forward runs fc1 .. fcL as modules (hooks fire) and its logits are bitwise those of the
    batched kernel ``forward(weights, x)`` the paper's numbers were computed with."""
    for widths in ((784, 64, 64, 10), (16, 12, 12, 4), (5, 3)):
        mlp = MLP(widths, seed=3).to(dtype)
        for n in (1, 7, 300):
            x = torch.randn(n, widths[0], generator=torch.Generator().manual_seed(n)).to(dtype)
            with torch.no_grad():
                assert torch.equal(mlp(x), forward(mlp.weights(), x))
                assert torch.equal(mlp(x.view(n, 1, -1)), mlp(x))
        fired: list[str] = []
        handles = [getattr(mlp, n).register_forward_hook(lambda m, a, o, n=n: fired.append(n))
                   for n in mlp.layer_names]
        with torch.no_grad():
            mlp(x)
        for h in handles:
            h.remove()
        assert fired == mlp.layer_names


@pytest.mark.parametrize("widths, err, match", [
    ((784, 0, 10), ValueError, r"MLP widths\[1\] must be an int >= 1, got 0"),
    ("784", TypeError, r"MLP widths must be a sequence of ints, got '784'"),
    ((784,), ValueError, r"MLP widths must have at least 2 entries"),
    ((784, 8.5, 10), ValueError, r"MLP widths\[1\] must be an int >= 1, got 8\.5"),
    ((784, False, 10), TypeError, r"MLP widths\[1\]"),
])
def test_mlp_and_init_reject_bad_widths(widths, err, match):
    with pytest.raises(err, match=match):
        MLP(widths)
    with pytest.raises(err, match=match.replace("MLP widths", "widths")):
        init_weights(widths, torch.Generator().manual_seed(0))
    with pytest.raises(err, match=match.replace("MLP widths", "widths")):
        search_space_pruned(widths, Partition.equal_blocks((4, 4), 2))


def test_mlp_keeps_valid_widths_and_checks_its_seed():
    assert MLP([784.0, 8, 10]).widths == (784, 8, 10)
    assert torch.equal(MLP((784, 8, 10), seed=np.int64(2)).fc1.weight, MLP((784, 8, 10), seed=2).fc1.weight)
    with pytest.raises(ValueError, match=r"MLP seed must be an int in \[0, "):
        MLP((784, 8, 10), seed=-3)
