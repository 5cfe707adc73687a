"""Learned per-label weight masks find the few weights that matter on a planted model."""

import pytest
import torch

from modclust.analysis.circuits import Circuit, greedy_circuit
from modclust.analysis.objectives import make_objective
from modclust.analysis.masks import MaskCircuit, mask_circuit_mlp, mask_circuits_mlp
from modclust.core.model import MLP, forward


def planted_model() -> tuple[MLP, torch.Tensor]:
    """6 -> 4 -> 3 MLP whose class-0 logit runs through one path x0 -> h0 -> out0 only.

    Every other weight is tiny, so for images of class 0 exactly two weights matter:
    fc1[0, 0] and fc2[0, 0].
    """
    g = torch.Generator().manual_seed(0)
    w1 = (torch.rand(4, 6, generator=g) - 0.5) * 0.02
    w2 = (torch.rand(3, 4, generator=g) - 0.5) * 0.02
    w1[0, 0], w2[0, 0] = 3.0, 3.0
    model = MLP((6, 4, 3))
    model.set_weights([w1, w2])
    x = torch.randn(64, 6, generator=g)
    x[:, 0] = 1 + torch.rand(64, generator=g)
    return model, x


def test_mask_finds_the_planted_path() -> None:
    model, x = planted_model()
    circ = mask_circuit_mlp(model, x, 0, sparsity=1e-3, steps=100, lr=0.1)
    assert isinstance(circ, Circuit) and circ.baseline == "mask"
    assert circ.kept["fc1"][0, 0] and circ.kept["fc2"][0, 0]
    assert circ.size == 2
    assert circ.final_loss < 0.01 and circ.full_loss < 0.01
    # the order-based method agrees on this model
    greedy = greedy_circuit(model, x, 0, threshold=1e-3)
    for name in ("fc1", "fc2"):
        assert torch.equal(greedy.kept[name], circ.kept[name])


def test_no_sparsity_keeps_everything_and_more_sparsity_keeps_less() -> None:
    model, x = planted_model()
    dense = mask_circuit_mlp(model, x, 0, sparsity=0.0, steps=20)
    assert dense.size == 6 * 4 + 4 * 3
    sizes = [mask_circuit_mlp(model, x, 1, sparsity=s, steps=100).size for s in (1e-5, 1e-1)]
    assert sizes[0] >= sizes[1]


def test_deterministic_layers_and_serialisation() -> None:
    model, x = planted_model()
    a = mask_circuit_mlp(model, x, 0, layers=["fc2"], sparsity=1e-3, steps=50)
    b = mask_circuit_mlp(model, x, 0, layers=["fc2"], sparsity=1e-3, steps=50)
    assert list(a.kept) == ["fc2"] and torch.equal(a.kept["fc2"], b.kept["fc2"]) and a.history == b.history
    # the loss is computed from fc1's output once; it must equal the full model's masked loss
    ws = [w.detach() for w in model.weights()]
    ws[1] = ws[1] * a.kept["fc2"]
    seed = make_objective("seed", ws, x, 0)  # the seed's CE towards 0
    assert a.final_loss == pytest.approx(seed.loss(forward(ws, x)).item(), rel=1e-6)
    d = a.to_dict()
    assert d["baseline"] == "mask" and d["size"] == a.size and d["sparsity"] == 1e-3
    with pytest.raises(ValueError, match="threshold"):
        mask_circuit_mlp(model, x, 0, threshold=1.0)


def test_one_circuit_per_label() -> None:
    model, x = planted_model()
    y = torch.arange(64) % 3
    circs = mask_circuits_mlp(model, x, y, steps=5)
    assert [c.label for c in circs] == [0, 1, 2] and all(isinstance(c, MaskCircuit) for c in circs)
    with pytest.raises(ValueError, match="no examples of label 7"):
        mask_circuits_mlp(model, x, y, labels=[7], steps=5)
