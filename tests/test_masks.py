"""modclust.analysis.masks: learned per-label weight masks find the few weights that matter on a
planted model; the shared search (learn_mask) on losses whose answer is known; the options' checks."""

import math

import pytest
import torch

from modclust.analysis.circuits import Circuit, greedy_circuit
from modclust.analysis.objectives import make_objective
from modclust.analysis.masks import MaskCircuit, check_mask_options, learn_mask, mask_circuit_mlp, mask_circuits_mlp
from modclust.core.model import MLP, forward

NAN, INF = float("nan"), float("inf")


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


@pytest.mark.parametrize("kw, err, match", [
    (dict(threshold=NAN), ValueError, r"threshold must be a finite number in \(0, 1\), got nan"),
    (dict(threshold=0.0), ValueError, r"threshold must be a finite number in \(0, 1\), got 0\.0"),
    (dict(threshold=1.0), ValueError, r"threshold must be a finite number in \(0, 1\), got 1\.0"),
    (dict(sparsity=NAN), ValueError, r"sparsity must be a finite number >= 0, got nan"),
    (dict(sparsity=-1e-4), ValueError, r"sparsity must be a finite number >= 0"),
    (dict(lr=0.0), ValueError, r"lr must be a finite number > 0, got 0\.0"),
    (dict(lr=INF), ValueError, r"lr must be a finite number > 0, got inf"),
    (dict(init_logit=NAN), ValueError, r"init_logit must be a finite number, got nan"),
    (dict(steps=1.5), ValueError, r"steps must be an int >= 0, got 1\.5"),
    (dict(steps=-1), ValueError, r"steps must be an int >= 0, got -1"),
    (dict(steps=True), TypeError, r"steps must be an int >= 0, got True"),
    (dict(log_every=0), ValueError, r"log_every must be an int >= 1, got 0"),
])
def test_mask_circuit_rejects_bad_numbers(circuit_setup, kw, err, match):
    model, x, y = circuit_setup
    with pytest.raises(err, match=match):
        mask_circuit_mlp(model, x[y == 0], 0, **kw)
    with pytest.raises(err, match=match):
        mask_circuits_mlp(model, x, y, **kw)


def test_with_no_steps_the_starting_mask_keeps_every_weight() -> None:
    model, x = planted_model()
    circ = mask_circuit_mlp(model, x, 0, steps=0)  # sigmoid(3) = 0.95 > 0.5 everywhere
    assert circ.size == 6 * 4 + 4 * 3 and circ.size_per_layer == {"fc1": 24, "fc2": 12}
    assert circ.history == [] and circ.steps == 0
    assert circ.final_loss == circ.full_loss  # every weight kept: the full model
    assert circ.soft_loss > circ.full_loss  # each weight at 0.95 of itself: a little worse
    d = circ.to_dict()
    assert (d["steps"], d["lr"], d["sparsity"], d["soft_loss"]) == (0, 0.1, 1e-4, circ.soft_loss)
    assert d["size"] == 36 and "history" not in d
    assert mask_circuit_mlp(model, x, 0, steps=0, init_logit=-1.0).size == 0  # sigmoid(-1) = 0.27: none kept


def test_a_mask_circuit_names_a_layer_that_is_not_there_or_an_empty_list() -> None:
    model, x = planted_model()
    with pytest.raises(ValueError, match="a mask circuit needs at least one layer to mask"):
        mask_circuit_mlp(model, x, 0, layers=[])
    with pytest.raises(ValueError, match=r"unknown layer 'fc9': this MLP has \['fc1', 'fc2'\]"):
        mask_circuit_mlp(model, x, 0, layers=["fc9"])
    with pytest.raises(ValueError, match=r"objective must be one of \('seed', 'margin', 'kl'\)"):
        mask_circuit_mlp(model, x, 0, objective="nope")
    with pytest.raises(ValueError, match="ablation must be 'zero' .* or 'mean'"):
        mask_circuit_mlp(model, x, 0, ablation="nope")


def test_a_label_free_objective_gives_one_circuit_and_labels_pick_the_circuits() -> None:
    model, x = planted_model()
    y = torch.arange(64) % 3
    kl = mask_circuits_mlp(model, x, y, objective="kl", steps=3)
    assert [(c.label, c.objective) for c in kl] == [(None, "kl")]
    assert [c.label for c in mask_circuits_mlp(model, x, y, labels=[2, 0], steps=3)] == [2, 0]


# --- the shared search, on losses whose answer is known ---------------------------------------------


def test_learn_mask_finds_a_target_mask_and_logs_every_few_steps() -> None:
    """Loss sum (g - T)^2 with no price on keeping: the gates go to T, so the cut mask is T."""
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    kept, soft, final, history = learn_mask(lambda gs: ((gs[0].float() - target) ** 2).sum(), [torch.zeros(2, 3)],
                                            sparsity=0.0, steps=200, lr=0.2, init_logit=0.0, threshold=0.5,
                                            log_every=50, progress=False, desc="target")
    assert len(kept) == 1 and kept[0].dtype == torch.bool and kept[0].shape == (2, 3)
    assert torch.equal(kept[0], target.bool())
    assert final == 0.0 and 0 < soft < 0.5
    assert len(history) == 4 and history[0] == pytest.approx(6 * 0.25)  # steps 0, 50, 100, 150; sigmoid(0) = 1/2
    assert history == sorted(history, reverse=True)


def test_learn_mask_prices_each_kept_entry() -> None:
    """A loss that ignores the gates: only the price remains, so every gate closes; its first logged
    value is the price of the starting gates, sparsity * sum sigmoid(init_logit)."""
    def free(gates):
        return sum(g.float().sum() for g in gates) * 0.0

    like = [torch.zeros(2, 2), torch.zeros(3)]
    kept, soft, final, history = learn_mask(free, like, sparsity=1.0, steps=60, lr=0.5, init_logit=3.0, threshold=0.5,
                                            log_every=7, progress=False, desc="price")
    assert [k.shape for k in kept] == [(2, 2), (3,)] and not any(k.any() for k in kept)
    assert len(history) == 9  # steps 0, 7, ..., 56
    assert history[0] == pytest.approx(7 / (1 + math.exp(-3.0)))
    assert soft == final == 0.0
    kept, *_ = learn_mask(free, like, sparsity=1.0, steps=0, lr=0.5, init_logit=3.0, threshold=0.96,
                          log_every=1, progress=False, desc="cut")
    assert not any(k.any() for k in kept)  # sigmoid(3) = 0.953 is below a cut at 0.96


def test_check_mask_options_returns_plain_values_and_names_what_each_means() -> None:
    out = check_mask_options(0, 1, 3, 2.0, 1, 0.5)
    assert out == (0.0, 1.0, 3.0, 2, 1, 0.5) and [type(v) for v in out] == [float, float, float, int, int, float]
    for args, message in [((-1.0, 0.1, 3.0, 1, 1, 0.5),
                           r"sparsity .*\(the price of keeping one entry, in units of loss\)"),
                          ((0.0, 0.0, 3.0, 1, 1, 0.5), r"lr .*\(Adam's learning rate on the mask logits\)"),
                          ((0.0, 0.1, INF, 1, 1, 0.5),
                           r"init_logit .*\(every mask logit's start; sigmoid\(3\) keeps 95 %\)"),
                          ((0.0, 0.1, 3.0, -1, 1, 0.5), r"steps .*\(full-batch Adam steps\)"),
                          ((0.0, 0.1, 3.0, 1, 0, 0.5), r"log_every .*\(steps between logged objective values\)"),
                          ((0.0, 0.1, 3.0, 1, 1, 0.0), r"threshold .*\(a cut on sigmoid\(logit\)\)")]:
        with pytest.raises(ValueError, match=message):
            check_mask_options(*args)
