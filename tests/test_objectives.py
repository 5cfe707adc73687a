"""The circuit objectives as objects: each kind's labels, inputs, loss and decisions, on cases small
enough to check by hand."""

import math

import pytest
import torch

from modclust import MLP
from modclust.analysis.circuits import circuit_labels, greedy_circuit, greedy_circuits_fast, objective_inputs
from modclust.analysis.objectives import (KINDS, KL, LABEL_FREE, MARGIN, OBJECTIVES, SEED, ObjectiveKind,
                                          check_objective, make_objective, objective_from_logits, objective_kind,
                                          objective_loss)

X = torch.arange(8.0).reshape(4, 2)  # four inputs of two features
Y = torch.tensor([2, 0, 2, 1])


def test_the_registry_maps_the_names_of_presets_and_results_to_the_kinds():
    assert OBJECTIVES == ("seed", "margin", "kl") and LABEL_FREE == ("kl",)
    assert KINDS == {"seed": SEED, "margin": MARGIN, "kl": KL}
    for name, kind in KINDS.items():
        assert objective_kind(name) is kind and objective_kind(kind) is kind
        assert kind.name == str(kind) == name and isinstance(kind, ObjectiveKind)
    assert check_objective("margin", "mean") is MARGIN
    for bad in ("ce", None, ["kl"], 3):
        with pytest.raises(ValueError, match="objective must be one of"):
            objective_kind(bad)
    with pytest.raises(ValueError, match="ablation"):
        check_objective(KL, "resample")


def test_labels():
    assert SEED.labels(Y, None) == MARGIN.labels(Y, None) == [0, 1, 2]
    assert SEED.labels(Y, [3, 1]) == [3, 1]  # as given, in order
    assert KL.labels(Y, None) == KL.labels(Y, [0, 1]) == [None]  # one circuit per model
    with pytest.raises(TypeError, match="sequence"):
        MARGIN.labels(Y, 2)
    with pytest.raises(ValueError, match="label"):
        MARGIN.labels(Y, [-1])
    assert circuit_labels("kl", Y, None) == [None] and circuit_labels(MARGIN, Y, None) == [0, 1, 2]


def test_inputs():
    assert torch.equal(SEED.inputs(X, Y, 2), X[[0, 2]])  # the label's own images
    assert SEED.inputs(X, Y, 2).shape == (2, 2)
    for kind in (MARGIN, KL):
        assert kind.inputs(X, Y, 2) is X  # inputs of every class
    with pytest.raises(ValueError, match="no examples of label 5"):
        SEED.inputs(X, Y, 5)
    assert torch.equal(objective_inputs("seed", X, Y, 0), X[[1]])


def test_seed_loss_is_the_cross_entropy_towards_the_label():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([0.5, 0.5], dtype=torch.float64)
    want = 0.5 * math.log(2) + 0.5 * math.log(1 + math.exp(-2))
    assert SEED.loss(logits, 0, None, w).item() == pytest.approx(want, rel=1e-14)
    assert objective_loss("seed", logits, 0, None, w, 1.0).item() == pytest.approx(want + 1, rel=1e-14)


def test_margin_loss_is_the_logistic_loss_of_the_decision_margin():
    # label 0; margins z_0 - max_{j != 0} z_j: 1 - 0 = 1 (the full model said 0) and 0 - 2 = -2 (it did not)
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([1.0, 0.0], dtype=torch.float64)
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    want = 0.25 * math.log(1 + math.exp(-1)) + 0.75 * math.log(1 + math.exp(-2))
    assert MARGIN.loss(logits, 0, target, w).item() == pytest.approx(want, rel=1e-14)


def test_kl_loss_is_the_divergence_from_the_full_model():
    full = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # p = (1/2, 1/2)
    obj = objective_from_logits("kl", full, torch.zeros(1, 3), None)
    assert obj.label is None and obj.kind is KL and obj.name == "kl"
    assert obj.loss(full).item() == pytest.approx(0.0, abs=1e-15)
    q = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64)  # q = (3/4, 1/4)
    assert obj.loss(q).item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    assert objective_from_logits(KL, full, torch.zeros(1, 3), 7).label is None  # a label is ignored


def test_margin_weights_the_two_decisions_half_each():
    full = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 5.0]])  # the full model says 0 once
    obj = objective_from_logits("margin", full, X, 0)
    assert obj.target.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert obj.weight.tolist() == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    assert obj.offset == 0.0 and obj.label == 0
    never = objective_from_logits("margin", full[1:], X[1:], 0)  # never 0: uniform weights
    assert never.weight.tolist() == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="per label"):
        objective_from_logits("margin", full, X, None)
    with pytest.raises(ValueError, match="label"):
        objective_from_logits(SEED, full, X, 2)  # this model has 2 outputs


def test_batched_loss_equals_each_problem_alone():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4, dtype=torch.float64)  # 3 problems, 5 inputs, 4 classes
    labels = torch.tensor([0, 3, 1])
    w = torch.softmax(torch.randn(3, 5, dtype=torch.float64), -1)
    t_margin = (torch.rand(3, 5) > 0.5).double()
    t_kl = torch.softmax(torch.randn(3, 5, 4, dtype=torch.float64), -1)
    for kind, target in ((SEED, None), (MARGIN, t_margin), (KL, t_kl)):
        lab = kind.stacked_labels(labels.tolist(), logits.device)
        assert (lab is None) == kind.label_free
        got = kind.loss(logits, lab, target, w, unshifted=True)
        assert got.shape == (3,)
        for p in range(3):
            alone = kind.loss(logits[p], int(labels[p]), None if target is None else target[p], w[p])
            assert got[p].item() == pytest.approx(alone.item(), rel=1e-12)
        big = kind.loss(logits * 1e4, lab, target, w, unshifted=True)  # overflows unshifted: redone stably
        assert torch.isfinite(big).all()


def test_decisions():
    pred = torch.tensor([0, 0, 1, 2, 0])
    full = torch.tensor([0, 1, 1, 2, 2])
    d = MARGIN.decisions(pred, full, 0)
    assert d.share_c == 3 / 5 and d.full_share_c == 1 / 5
    assert d.agreement == 3 / 5 and d.agreement_c == 1.0 and d.agreement_rest == 2 / 4
    assert d.balanced_agreement == 0.75
    assert SEED.decisions(pred, full, 0) == d
    assert all(math.isnan(v) for v in KL.decisions(pred, full, None).__dict__.values())


@pytest.mark.parametrize("name", OBJECTIVES)
def test_a_kind_object_and_its_name_find_the_same_circuit(name):
    model = MLP((6, 5, 3), seed=0).double()
    torch.manual_seed(1)
    x, y = torch.randn(30, 6, dtype=torch.float64), torch.arange(30) % 3
    kind = objective_kind(name)
    label = None if kind.label_free else 1
    a = greedy_circuit(model, kind.inputs(x, y, label), label, objective=name, threshold=1e-3)
    b = greedy_circuit(model, kind.inputs(x, y, label), label, objective=kind, threshold=1e-3)
    fast = greedy_circuits_fast(model, x, y, labels=[1], objective=kind, threshold=1e-3)[0][label]
    assert a.objective == b.objective == fast.objective == name  # records keep the name
    assert all(torch.equal(a.kept[n], b.kept[n]) and torch.equal(a.kept[n], fast.kept[n]) for n in a.kept)
    assert a.final_loss == b.final_loss == fast.final_loss
    assert make_objective(kind, list(model.weights()), x, label).kind is kind
