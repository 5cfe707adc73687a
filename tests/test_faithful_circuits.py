"""Faithful circuit objectives, ablations and the faithfulness of a circuit.

A constant classifier must be judged unfaithful; every objective's fast circuit must equal the
plain loop's; faithfulness numbers must match a direct computation.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modclust import TrainConfig
from modclust import train
from modclust.analysis.any_model import faithfulness
from modclust.analysis.circuits import (Circuit, circuit_logits, greedy_circuit, greedy_circuit_fast,
                                        greedy_circuits_fast)
from modclust.analysis.masks import mask_circuits_mlp
from modclust.core.data import balanced_indices
from modclust.core.model import forward
from modclust.analysis.objectives import ablation_means, make_objective, objective_loss
from modclust.core.stats import size_at_faithfulness
from modclust.experiments import grid as ex
from modclust.paper import figures as fg

from conftest import make_tiny


@pytest.fixture(scope="module")
def setup():
    data = make_tiny(400, 300, n_in=20, seed=2)
    cfg = TrainConfig(widths=(20, 12, 8, 10), n_clusters=2, epochs=60, lr=0.2)
    models = [train(cfg, data, progress=False).model,
              train(TrainConfig(**{**cfg.to_dict(), "seed": 3, "lam": 0.0}), data, progress=False).model]
    return data, models


def same(a, b):
    return a.kept.keys() == b.kept.keys() and all(torch.equal(a.kept[n], b.kept[n]) for n in a.kept)


def constant_circuit(model, label=0):
    """fc3 pruned away entirely: every logit is 0, argmax is class 0 for every input."""
    return Circuit(label, "full", 0.0, ["fc3"], {"fc3": torch.zeros_like(model.fc3.weight, dtype=torch.bool)},
                   0.0, 0.0, "seed")


def test_a_constant_classifier_is_judged_unfaithful(setup):
    data, models = setup
    f = faithfulness(models[0], constant_circuit(models[0]), data.test_x, data.test_y)
    assert f.share_c == 1.0  # "always 0"
    assert f.classwise_acc[0] == 1.0 and max(f.classwise_acc[1:]) == 0.0
    assert f.agreement_c == 1.0 and f.agreement_rest == 0.0
    assert f.balanced_agreement == 0.5  # chance
    assert f.agreement == pytest.approx(f.full_share_c)  # agrees only where the full model says 0 too
    # the full model, as its own circuit, is perfectly faithful
    whole = Circuit(0, "full", 0.0, ["fc3"], {"fc3": torch.ones_like(models[0].fc3.weight, dtype=torch.bool)},
                    0.0, 0.0, "margin")
    g = faithfulness(models[0], whole, data.test_x, data.test_y)
    assert g.agreement == g.balanced_agreement == g.top1_agreement == 1.0


def test_faithfulness_matches_a_direct_computation(setup):
    data, models = setup
    model = models[1]
    g = torch.Generator().manual_seed(0)
    kept = {"fc2": torch.rand(model.fc2.weight.shape, generator=g) < 0.7,
            "fc3": torch.rand(model.fc3.weight.shape, generator=g) < 0.7}
    full = model(data.test_x).argmax(1)
    lab = int(torch.bincount(full, minlength=10).argmax())  # a label the model gives
    c = Circuit(lab, "full", 0.0, ["fc2", "fc3"], kept, 0.0, 0.0, "margin")
    f = faithfulness(model, c, data.test_x, data.test_y)
    w1, w2, w3 = (w.detach() for w in model.weights())
    logits = torch.relu(torch.relu(data.test_x @ w1.T) @ (w2 * kept["fc2"]).T) @ (w3 * kept["fc3"]).T
    pred = logits.argmax(1)
    assert f.acc == pytest.approx((pred == data.test_y).float().mean().item())
    assert f.classwise_acc[lab] == pytest.approx((pred[data.test_y == lab] == lab).float().mean().item())
    assert f.top1_agreement == pytest.approx((pred == full).float().mean().item())
    assert f.share_c == pytest.approx((pred == lab).float().mean().item())
    same_dec = (pred == lab) == (full == lab)
    assert f.agreement == pytest.approx(same_dec.float().mean().item())
    assert f.agreement_c == pytest.approx(same_dec[full == lab].float().mean().item())
    assert f.balanced_agreement == pytest.approx(
        (same_dec[full == lab].float().mean() + same_dec[full != lab].float().mean()).item() / 2)


def test_objectives_match_their_definitions(setup):
    data, models = setup
    ws = [w.detach() for w in models[0].weights()]
    x = data.train_x[:200]
    z = forward(ws, x)
    full = z.argmax(1)
    seed = make_objective("seed", ws, x[data.train_y[:200] == 3], 3)
    assert seed.loss(forward(ws, seed.x)).item() == pytest.approx(
        F.cross_entropy(forward(ws, seed.x), torch.full((len(seed.x),), 3)).item(), rel=1e-5)
    margin = make_objective("margin", ws, x, 3)
    t = (full == 3).float()
    m = z[:, 3] - z[:, [j for j in range(10) if j != 3]].max(1).values  # the decision margin
    bce = F.binary_cross_entropy_with_logits(m, t, reduction="none")
    expect = 0.5 * bce[t == 1].mean() + 0.5 * bce[t == 0].mean()
    assert margin.loss(z).item() == pytest.approx(expect.item(), rel=1e-5)
    kl = make_objective("kl", ws, x, None)
    assert kl.label is None and kl.loss(z).item() == pytest.approx(0.0, abs=1e-5)  # KL(p || p) = 0
    q = z + torch.randn_like(z)
    ref = F.kl_div(torch.log_softmax(q, 1), torch.log_softmax(z, 1), log_target=True, reduction="batchmean")
    assert kl.loss(q).item() == pytest.approx(ref.item(), rel=1e-5)
    # the fast (unshifted) form agrees with the stable one, and takes over past float64's exp range
    for o in (seed, margin, kl):
        zz = forward(ws, o.x).double()
        args = (o.kind, zz, o.label, None if o.target is None else o.target.double(), o.weight.double(), o.offset)
        assert objective_loss(*args, unshifted=True).item() == pytest.approx(objective_loss(*args).item(), rel=1e-12)
        big = (o.kind, zz * 1e4, *args[2:])
        assert math.isfinite(objective_loss(*big, unshifted=True).item())


def test_constant_answers_cannot_satisfy_the_margin_objective(setup):
    data, models = setup
    ws = [w.detach() for w in models[0].weights()]
    x = data.train_x
    z_full = forward(ws, x)
    c = int(torch.bincount(z_full.argmax(1), minlength=10).argmax())  # a label the model does give
    obj = make_objective("margin", ws, x, c)
    always = torch.zeros_like(z_full)
    always[:, c] = 10.0  # always c, confidently
    never = torch.zeros_like(z_full)
    never[:, (c + 1) % 10] = 10.0  # never c
    assert obj.loss(always).item() > 3.0 and obj.loss(never).item() > 3.0
    assert obj.loss(z_full).item() < 0.5 * min(obj.loss(always).item(), obj.loss(never).item())
    # the seed's objective prefers "always c" to the model itself: it is degenerate
    seed = make_objective("seed", ws, x[data.train_y == c], c)
    z2 = forward(ws, seed.x)
    a2 = torch.zeros_like(z2)
    a2[:, c] = 10.0
    assert seed.loss(a2).item() < seed.loss(z2).item()


@pytest.mark.parametrize("objective", ["seed", "margin", "kl"])
@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("baseline", ["current", "full"])
def test_fast_circuits_equal_the_plain_loop(setup, objective, ablation, baseline):
    data, models = setup
    idx = balanced_indices(data.train_y, 8, seed=0)
    x, y = data.train_x[idx], data.train_y[idx]
    fast = greedy_circuits_fast(models, x, y, labels=[1, 6], layers=["fc2", "fc3"], threshold=1e-3,
                                baseline=baseline, objective=objective, ablation=ablation)
    for model, per_label in zip(models, fast):
        assert list(per_label) == ([None] if objective == "kl" else [1, 6])
        for c, circuit in per_label.items():
            inputs = x if objective != "seed" else x[y == c]
            plain = greedy_circuit(model, inputs, c, layers=["fc2", "fc3"], threshold=1e-3, baseline=baseline,
                                   objective=objective, ablation=ablation)
            assert same(plain, circuit), (c, plain.size, circuit.size)
            assert plain.final_loss == pytest.approx(circuit.final_loss, rel=1e-5, abs=1e-7)
            assert circuit.objective == objective and circuit.ablation == ablation
            assert circuit.size < 12 * 8 + 8 * 10
            # under mean ablation the seed's objective can drop everything: the class mean is "c"
            assert circuit.size > 0 or (objective, ablation) == ("seed", "mean")
    one = greedy_circuit_fast(models[0], x if objective != "seed" else x[y == 1], 1, layers=["fc3"],
                              objective=objective, ablation=ablation, threshold=1e-3, baseline=baseline)
    ref = greedy_circuit(models[0], x if objective != "seed" else x[y == 1], 1, layers=["fc3"],
                         objective=objective, ablation=ablation, threshold=1e-3, baseline=baseline)
    assert same(one, ref)


def test_mean_ablation_replaces_pruned_weights_by_their_mean_contribution(setup):
    data, models = setup
    model = models[0]
    x = data.train_x[:100]
    ws = [w.detach() for w in model.weights()]
    c = greedy_circuit(model, x, 3, layers=["fc3"], threshold=1e-2, baseline="full", objective="margin",
                       ablation="mean")
    means = ablation_means(ws, x, "mean")
    assert torch.equal(c.means["fc3"], means[2])
    h = torch.relu(torch.relu(data.test_x @ ws[0].T) @ ws[1].T)
    k = c.kept["fc3"].float()
    expect = h @ (ws[2] * k).T + (ws[2] * (1 - k)) @ means[2]
    assert torch.allclose(circuit_logits(model, c, data.test_x), expect, atol=1e-5)
    # with nothing pruned, both ablations give the model itself
    whole = Circuit(3, "full", 0.0, ["fc3"], {"fc3": torch.ones_like(k, dtype=torch.bool)}, 0.0, 0.0, "margin",
                    "mean", {"fc3": means[2]})
    assert torch.allclose(circuit_logits(model, whole, data.test_x), model(data.test_x), atol=1e-6)


def test_faithful_circuits_are_faithful_and_seed_circuits_are_not(setup):
    """On held-out inputs, a margin circuit keeps the c-vs-rest decisions; a seed circuit says c far more often."""
    data, models = setup
    x, y = data.train_x, data.train_y
    common = torch.bincount(models[0](data.test_x).argmax(1), minlength=10).argsort(descending=True)[:4]
    kw = dict(labels=common.tolist(), layers=["fc2", "fc3"], threshold=1e-2, baseline="current")
    seed = greedy_circuits_fast(models[0], x, y, objective="seed", **kw)[0]
    margin = greedy_circuits_fast(models[0], x, y, objective="margin", **kw)[0]
    fs = [faithfulness(models[0], seed[c], data.test_x, data.test_y) for c in kw["labels"]]
    fm = [faithfulness(models[0], margin[c], data.test_x, data.test_y) for c in kw["labels"]]
    assert sum(f.balanced_agreement for f in fm) > sum(f.balanced_agreement for f in fs)
    assert sum(f.share_c for f in fs) > sum(f.full_share_c for f in fs) + 0.5


def test_bad_objective_ablation_and_threshold(setup):
    data, models = setup
    with pytest.raises(ValueError, match="objective must be one of"):
        greedy_circuit(models[0], data.train_x, 0, objective="acc")
    with pytest.raises(ValueError, match="ablation must be"):
        greedy_circuits_fast(models, data.train_x, data.train_y, ablation="resample")
    for bad in (float("nan"), -1e-3, float("inf")):
        with pytest.raises(ValueError, match="threshold must be a finite number"):
            greedy_circuit(models[0], data.train_x, 0, threshold=bad)
    with pytest.raises(ValueError, match="is per label"):
        make_objective("margin", [w.detach() for w in models[0].weights()], data.train_x, None)
    with pytest.raises(ValueError, match="no examples of label 11"):
        greedy_circuits_fast(models, data.train_x, data.train_y, labels=[11])


def test_balanced_indices_are_seeded_and_balanced():
    y = torch.arange(10).repeat_interleave(torch.arange(10) + 5)  # class c has c + 5 examples
    a, b = balanced_indices(y, 5, seed=0), balanced_indices(y, 5, seed=0)
    assert torch.equal(a, b) and not torch.equal(a, balanced_indices(y, 5, seed=1))
    assert torch.bincount(y[a], minlength=10).tolist() == [5] * 10
    assert len(set(a.tolist())) == 50
    with pytest.raises(ValueError, match="class 0 has only 5"):
        balanced_indices(y, 6, seed=0)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_learned_masks_take_every_objective(setup, ablation):

    data, models = setup
    model = models[0]
    x, y = data.train_x, data.train_y
    c = int(torch.bincount(model(x).argmax(1), minlength=10).argmax())
    kw = dict(layers=["fc2", "fc3"], sparsity=1e-3, steps=60, ablation=ablation)
    kl, = mask_circuits_mlp(model, x, y, objective="kl", **kw)
    assert kl.label is None and kl.objective == "kl" and kl.ablation == ablation
    margin, = mask_circuits_mlp(model, x, y, labels=[c], objective="margin", **kw)
    seed, = mask_circuits_mlp(model, x, y, labels=[c], objective="seed", **kw)
    # the reported loss is the objective of the network cut down to the kept weights
    obj = make_objective("margin", [w.detach() for w in model.weights()], x, c)
    assert margin.final_loss == pytest.approx(obj.loss(circuit_logits(model, margin, x)).item(), rel=1e-5)
    fm, fs = (faithfulness(model, m, data.test_x, data.test_y) for m in (margin, seed))
    assert fm.balanced_agreement > fs.balanced_agreement


def test_saved_circuits_load_with_weights_only_and_rebuild_the_pruned_network(setup, tmp_path):

    data, models = setup
    runs = [train(TrainConfig(widths=(20, 12, 8, 10), n_clusters=2, epochs=3, lr=0.2, lam=lam), data, progress=False)
            for lam in (0.0, 5.0)]
    found = ex.find_circuits(runs, data.train_x, data.train_y, [1, 2], ["fc3"], "margin", 1e-3, ablation="mean")
    rows, records = ex.circuit_rows(runs, found, data.test_x, data.test_y)
    path = ex.save_circuit_records(records, tmp_path / "circuits.pt")
    back = torch.load(path, weights_only=True)
    assert len(back) == 4 and {r["run"] for r in back} == {"lam0_seed0_lr0.2", "lam5_seed0_lr0.2"}
    assert {"run", "lam", "seed", "label", "objective", "method", "kept", "means"} <= set(back[0])
    r0 = back[0]
    c = Circuit(r0["label"], r0["baseline"], r0["threshold"], ["fc3"], r0["kept"], 0.0, 0.0, r0["objective"],
                r0["ablation"], r0["means"])
    f = faithfulness(runs[0].model, c, data.test_x, data.test_y)
    assert f.to_dict() == rows[0]["circuits"][0]["faithfulness"]
    assert ex.mean_over_circuits(rows[0], "size") == sum(x["size"] for x in back[:2]) / 2


def test_size_at_matched_faithfulness_interpolates_log_size():

    pts = [(0.99, 1000.0), (0.95, 100.0), (0.80, 10.0)]
    assert size_at_faithfulness(pts, 0.97) == pytest.approx(math.sqrt(1000 * 100))
    assert size_at_faithfulness(pts, 0.95) == pytest.approx(100.0)
    assert math.isnan(size_at_faithfulness(pts, 0.995)) and math.isnan(size_at_faithfulness(pts, 0.5))


def test_the_size_faithfulness_figure_plots_means_of_both_axes():


    fig = fg.size_faithfulness({0.0: [[(0.90, 100.0), (0.95, 200.0)], [(0.92, 120.0), (0.97, 220.0)]]}, [0.0],
                               "balanced agreement", 0.96)
    means = [ln for ln in fig.axes[0].lines if ln.get_marker() == "o"]
    assert len(means) == 1
    assert np.allclose(means[0].get_xdata(), [0.91, 0.96]) and np.allclose(means[0].get_ydata(), [110.0, 210.0])
