"""Analyses of any nn.Module (modclust.analysis.any_model): one function per analysis, whose general
path (hooks, functional_call) equals the MLP's fast kernels on the seed's MLP, and right on a tiny
CNN and a tiny transformer-MLP-like block."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from modclust.analysis.ablation import AblationResult, ablate_mlp, classwise_correct
from modclust.analysis.any_model import (LayerClusterSelectivity, LayerSelectivity, LayerSemanticity, ablate,
                                         connection_matrix, eval_mode, faithfulness, greedy_circuits,
                                         label_semanticity, layer_cluster_selectivity, layer_cluster_top_inputs,
                                         layer_spectral_partition, layer_top_inputs, mask_circuits, masked_logits,
                                         mlp_fast_path, spectral_null, unit_activations, unit_selectivity)
from modclust.analysis.circuits import Circuit, faithfulness_mlp, greedy_circuit, greedy_circuits_fast
from modclust.analysis.masks import mask_circuit_mlp, mask_circuits_mlp
from modclust.analysis.objectives import make_objective, objective_from_logits
from modclust.analysis.selectivity import (ClusterSelectivity, UnitSelectivity, cluster_selectivity,
                                           cluster_top_examples, label_entropy, live_split, mutual_information,
                                           selectivity_index)
from modclust.analysis.semanticity import Semanticity, layer_activations, semanticity_from_top_k, top_k_indices
from modclust.analysis.spectral import matrix_spectral_null, spectral_partition, weight_clusterability
from modclust.core.model import MLP
from modclust.core.partition import Partition

N_CLASSES = 4


def noisy_labels(logits: Tensor, n_classes: int, seed: int) -> Tensor:
    """The model's own decisions with a third of them replaced at random (accuracy well inside 0..1)."""
    g = torch.Generator().manual_seed(seed)
    y = logits.argmax(-1)
    flip = torch.rand(len(y), generator=g) < 1 / 3
    return torch.where(flip, torch.randint(0, n_classes, (len(y),), generator=g), y)


def mlp_setup(dtype: torch.dtype = torch.float32) -> tuple[MLP, Tensor, Tensor]:
    mlp = MLP((16, 12, 12, N_CLASSES), seed=0).to(dtype)
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad():
        y = noisy_labels(mlp(x), N_CLASSES, 2)
    return mlp, x, y


def parent_fields(obj: object, cls: type) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in fields(cls)}


def same_dicts(a: dict[str, object], b: dict[str, object]) -> bool:
    """Equal dicts, with nan equal to nan."""
    if a.keys() != b.keys():
        return False
    for key in a:
        u, v = a[key], b[key]
        if isinstance(u, float) and isinstance(v, float) and math.isnan(u) and math.isnan(v):
            continue
        if u != v:
            return False
    return True


class TinyCNN(nn.Module):
    """Conv2d -> ReLU -> flatten -> Linear, on (N, 4, 8, 8) inputs."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3)
        self.relu = nn.ReLU()
        self.flat = nn.Flatten()
        self.head = nn.Linear(6 * 6 * 6, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.flat(self.relu(self.conv(x))))


class TinyBlock(nn.Module):
    """A transformer-MLP-like block on (N, seq, 5): embed, h + MLP(h) with GELU hidden neurons, mean-pool, head."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.mlp = nn.Sequential(OrderedDict([("fc", nn.Linear(8, 12)), ("act", nn.GELU()),
                                              ("proj", nn.Linear(12, 8))]))
        self.head = nn.Linear(8, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x)
        h = h + self.mlp(h)
        return self.head(h.mean(1))


@pytest.fixture
def cnn() -> tuple[TinyCNN, Tensor, Tensor]:
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.randn(120, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = noisy_labels(model(x), 3, 4)
    return model, x, y


@pytest.fixture
def block() -> tuple[TinyBlock, Tensor, Tensor]:
    torch.manual_seed(0)
    model = TinyBlock()
    x = torch.randn(100, 7, 5, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        y = noisy_labels(model(x), 3, 6)
    return model, x, y


def manual_ablation(model: nn.Module, layer: str, x: Tensor, y: Tensor, n_classes: int, k: int,
                    zero: Callable[[nn.Module, Sequence[int]], None]) -> AblationResult:
    """OFF / ON by zeroing parameters of copies of the model: ``zero(copy, clusters)``."""
    def run(off: Sequence[int]) -> tuple[float, list[float]]:
        m = copy.deepcopy(model)
        with torch.no_grad():
            zero(m, off)
            pred = m(x).argmax(-1)
        return (pred == y).double().mean().item(), classwise_correct(pred, y, n_classes).tolist()
    full = run([])
    offs = [run([c]) for c in range(k)]
    ons = [run([o for o in range(k) if o != c]) for c in range(k)]
    return AblationResult(layer, full[0], full[1], [a for a, _ in offs], [b for _, b in offs],
                          [a for a, _ in ons], [b for _, b in ons])


# --- the seed's MLP: the fast kernels and the general path give the same numbers ---------------------------
#
# On the MLP each public function takes the fast kernel (the old MLP path); ``post=torch.relu``,
# ``unit_dim=-1`` or parameter names ("fc2.weight") send it down the general path instead.

def old_label_semanticity(mlp: MLP, x: Tensor, y: Tensor, layer: str, k: int, n_classes: int) -> Semanticity:
    """The MLP path the public function replaced (``semanticity.label_semanticity``), verbatim."""
    return semanticity_from_top_k(top_k_indices(layer_activations(mlp, x, layer), k), y, n_classes, layer)


def old_unit_selectivity(mlp: MLP, x: Tensor, y: Tensor, layer: str, n_classes: int, n_bins: int) -> UnitSelectivity:
    """The MLP path the public function replaced (``selectivity.unit_selectivity``), verbatim."""
    acts = layer_activations(mlp, x, layer).cpu()
    sel = selectivity_index(acts, y, n_classes)
    mi = mutual_information(acts, y, n_classes, n_bins)
    return UnitSelectivity(layer, sel.tolist(), mi.tolist(), float(sel.mean()), float(mi.mean()),
                           label_entropy(y, n_classes), n_bins, *live_split(acts, sel))


def test_mlp_fast_path_dispatch(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    mlp, _, _ = mlp_setup()

    class Doubled(MLP):
        def forward(self, x: Tensor) -> Tensor:
            return 2 * super().forward(x)

    assert mlp_fast_path(mlp, "fc2") and mlp_fast_path(mlp, ["fc2", "fc3"]) and mlp_fast_path(mlp, None)
    assert not mlp_fast_path(mlp, "fc2.weight") and not mlp_fast_path(mlp, ["fc2", "fc2.weight"])
    assert not mlp_fast_path(mlp, "fc4") and not mlp_fast_path(mlp, [])
    assert not mlp_fast_path(Doubled((16, 12, N_CLASSES)), "fc1")  # its own forward: the kernels do not apply
    assert not mlp_fast_path(cnn[0], "head")


def test_mlp_activations_equal_the_mlp_path() -> None:
    mlp, x, _ = mlp_setup()
    for layer in ("fc1", "fc2"):
        want = layer_activations(mlp, x, layer)
        assert torch.equal(unit_activations(mlp, x, layer), want)  # the MLP path: post-ReLU
        assert torch.equal(unit_activations(mlp, x, layer, post=torch.relu), want)  # hooks on fc
    assert torch.equal(unit_activations(mlp, x, "fc3", reduce="max"), layer_activations(mlp, x, "fc3"))
    assert torch.equal(unit_activations(mlp, x, "fc3", unit_dim=-1), layer_activations(mlp, x, "fc3"))
    assert torch.equal(unit_activations(mlp, x, "fc2", post=torch.relu, batch_size=64),
                       layer_activations(mlp, x, "fc2"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layer", ["fc1", "fc2", "fc3"])
def test_mlp_ablation_equals_ablate(dtype: torch.dtype, layer: str) -> None:
    """The kernel zeroes rows U_c and columns V_c of the layer's weight; zeroing the layer's output
    units U_c (forward hook) and input units V_c (pre-hook) makes the same decisions."""
    mlp, x, y = mlp_setup(dtype)
    shape = tuple(getattr(mlp, layer).weight.shape)
    parts = [Partition.equal_blocks(shape, min(3, *shape)),
             Partition.from_labels([(i % 3) - 1 for i in range(shape[0])], [(2 - j % 3) - 1 for j in range(shape[1])])]
    for part in parts:
        want = ablate_mlp(mlp, part, x, y, layer, N_CLASSES)
        assert ablate(mlp, part, layer, x, y, N_CLASSES) == want  # the fast kernel
        assert ablate(mlp, part, layer, x, y, N_CLASSES, unit_dim=-1) == want  # the hooks
        assert ablate(mlp, part, layer, x, y, N_CLASSES, unit_dim=-1, batch_size=50) == want


def test_mlp_unit_ablation_equals_zeroing_weight_rows() -> None:
    """Clusters of output units alone: the same as zeroing the weight's rows U_c only."""
    mlp, x, y = mlp_setup(torch.float64)
    clusters = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]

    def zero(m: nn.Module, off: Sequence[int]) -> None:
        for c in off:
            m.fc2.weight[clusters[c]] = 0

    got = ablate(mlp, clusters, "fc2", x, y, N_CLASSES)
    assert got == manual_ablation(mlp, "fc2", x, y, N_CLASSES, 3, zero)
    assert 0 < got.full_acc < 1 and got.off_acc != got.on_acc


def test_mlp_semanticity_selectivity_equal_the_mlp_path() -> None:
    mlp, x, y = mlp_setup()
    for layer in ("fc2", "fc1", "fc3"):
        hidden = layer != "fc3"
        want_sem = asdict(old_label_semanticity(mlp, x, y, layer, 20, N_CLASSES))
        want_sel = asdict(old_unit_selectivity(mlp, x, y, layer, N_CLASSES, 5))
        hooks = {"post": torch.relu} if hidden else {"unit_dim": -1}
        for kw in ({}, hooks):
            sem = label_semanticity(mlp, layer, x, y, k=20, n_classes=N_CLASSES, **kw)
            assert isinstance(sem, LayerSemanticity) and sem.reduce == "none"
            assert sem.post == ("relu" if hidden else "none")
            assert parent_fields(sem, Semanticity) == want_sem
            sel = unit_selectivity(mlp, layer, x, y, N_CLASSES, n_bins=5, **kw)
            assert isinstance(sel, LayerSelectivity) and sel.post == sem.post
            assert parent_fields(sel, UnitSelectivity) == want_sel
    groups = [[0, 3, 5], [1, 2], [4, 6, 7, 8, 9]]
    acts = layer_activations(mlp, x, "fc2")
    for post in (None, torch.relu):
        cs = layer_cluster_selectivity(mlp, x, y, groups, "fc2", N_CLASSES, 5, post=post)
        assert isinstance(cs, LayerClusterSelectivity) and cs.layer == "fc2" and cs.post == "relu"
        assert parent_fields(cs, ClusterSelectivity) == asdict(cluster_selectivity(acts, y, groups, N_CLASSES, 5))
    assert torch.equal(layer_top_inputs(mlp, x, "fc2", 7), top_k_indices(acts, 7))
    assert torch.equal(layer_top_inputs(mlp, x, "fc2", 7, post=torch.relu), top_k_indices(acts, 7))
    assert torch.equal(layer_cluster_top_inputs(mlp, x, groups, "fc2", 7, post=torch.relu),
                       cluster_top_examples(acts, groups, 7))


def test_mlp_spectral_equals_the_weight_call() -> None:
    mlp, _, _ = mlp_setup()
    assert torch.equal(connection_matrix(mlp.fc2), mlp.fc2.weight)
    assert layer_spectral_partition(mlp, "fc2", 3, seed=1) == spectral_partition(mlp.fc2.weight, 3, seed=1)
    got = spectral_null(mlp, "fc2", 3, n_draws=3, seed=2)
    assert got.to_dict() == matrix_spectral_null(mlp.fc2.weight.detach().cpu(), 3, n_draws=3, seed=2).to_dict()


@pytest.mark.parametrize("kind", ["margin", "kl", "seed"])
def test_objective_from_logits_equals_make_objective(kind: str) -> None:
    mlp, x, y = mlp_setup(torch.float64)
    xs = x[y == 2] if kind == "seed" else x
    label = None if kind == "kl" else 2
    want = make_objective(kind, mlp.weights(), xs, label)
    with torch.no_grad():
        got = objective_from_logits(kind, mlp(xs), xs, label)
    assert got.label == want.label and torch.equal(got.weight, want.weight)
    assert (got.target is None) == (want.target is None)
    if want.target is not None:
        assert torch.equal(got.target, want.target)  # type: ignore[arg-type]
    assert got.offset == want.offset


def _by_param(c: Circuit) -> Circuit:
    """``c`` with its kept masks keyed by parameter name: judged by the general path."""
    return replace(c, kept={f"{n}.weight": m for n, m in c.kept.items()}, layers=[f"{n}.weight" for n in c.layers])


def test_mlp_mask_circuits_equal_mask_circuit() -> None:
    """Same gates, same loss arithmetic (functional_call runs the MLP's own forward), same Adam:
    identical masks, losses and history on both paths, and the same faithfulness."""
    mlp, x, y = mlp_setup(torch.float64)
    xt, yt = x[:150], y[:150]
    want = mask_circuit_mlp(mlp, xt, 1, ["fc2"], sparsity=1e-3, steps=40, objective="margin")
    fast, = mask_circuits(mlp, ["fc2"], xt, yt, labels=[1], sparsity=1e-3, steps=40)  # objective: margin
    assert fast.layers == ["fc2"] and torch.equal(fast.kept["fc2"], want.kept["fc2"])
    got, = mask_circuits(mlp, ["fc2.weight"], xt, yt, labels=[1], objective="margin", sparsity=1e-3, steps=40)
    assert got.layers == ["fc2.weight"]
    assert torch.equal(got.kept["fc2.weight"], want.kept["fc2"])
    for c in (fast, got):
        assert (c.full_loss, c.final_loss, c.soft_loss, c.history) == \
            (want.full_loss, want.final_loss, want.soft_loss, want.history)
    # faithfulness: the kernel (kept keyed "fc2") and the general path (keyed "fc2.weight")
    want_f = faithfulness_mlp(mlp, want, x[150:], y[150:]).to_dict()
    assert same_dicts(faithfulness(mlp, want, x[150:], y[150:]).to_dict(), want_f)
    assert same_dicts(faithfulness(mlp, got, x[150:], y[150:]).to_dict(), want_f)
    assert [c.label for c in mask_circuits(mlp, ["fc2"], xt, yt, labels=[0, 1], steps=2)] == [0, 1]
    assert mask_circuits(mlp, None, xt, yt, labels=[0], steps=2)[0].layers == mlp.layer_names
    seed_objective = mask_circuits_mlp(mlp, xt, yt, [0, 1], "seed", layers=["fc3"], steps=5)
    for a, b in zip(seed_objective, mask_circuits(mlp, ["fc3"], xt, yt, labels=[0, 1], objective="seed", steps=5)):
        assert torch.equal(a.kept["fc3"], b.kept["fc3"]) and a.history == b.history


@pytest.mark.parametrize("objective,baseline", [("margin", "current"), ("seed", "current"), ("margin", "full")])
def test_mlp_greedy_circuits_equal_greedy_circuit(objective: str, baseline: str) -> None:
    """The batched kernel (the MLP path) and the generic plain loop on the MLP (functional_call
    runs the MLP's own forward): the same decisions, so the same kept masks and losses."""
    mlp, x, y = mlp_setup()
    with torch.no_grad():
        mlp.fc3.weight[0, :3] = 0.0  # entries already zero: skipped by the generic loop, not kept by either
    label = 1
    xs = x[:120] if objective != "seed" else x[:120][y[:120] == label]
    want = greedy_circuit(mlp, xs, label, ["fc2", "fc3"], threshold=1e-3, baseline=baseline, objective=objective)
    kw = dict(labels=[label], threshold=1e-3, baseline=baseline, objective=objective)
    fast, = greedy_circuits(mlp, ["fc2", "fc3"], x[:120], y[:120], **kw)
    got, = greedy_circuits(mlp, ["fc2.weight", "fc3.weight"], x[:120], y[:120], **kw)
    assert fast.layers == ["fc2", "fc3"] and got.layers == ["fc2.weight", "fc3.weight"]
    for name in ("fc2", "fc3"):
        assert torch.equal(fast.kept[name], want.kept[name])
        assert torch.equal(got.kept[f"{name}.weight"], want.kept[name])
    assert 0 < got.size < sum(w.numel() for w in (mlp.fc2.weight, mlp.fc3.weight))
    for c in (fast, got):
        assert (c.full_loss, c.final_loss, c.objective, c.baseline) == \
            (want.full_loss, want.final_loss, objective, baseline)
    many = greedy_circuits(mlp, ["fc3"], x[:120], y[:120], labels=[0, 1], objective=objective, threshold=1e-3)
    assert [c.label for c in many] == [0, 1]
    batched = greedy_circuits_fast(mlp, x[:120], y[:120], labels=[0, 1], layers=["fc3"], objective=objective,
                                   threshold=1e-3)[0]
    assert all(torch.equal(c.kept["fc3"], batched[c.label].kept["fc3"]) for c in many)


def test_mean_ablation_is_the_mlp_s_only(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    mlp, x, y = mlp_setup(torch.float64)
    c, = greedy_circuits(mlp, ["fc3"], x[:100], y[:100], labels=[1], threshold=1e-3, ablation="mean")
    assert c.ablation == "mean" and c.means is not None
    assert same_dicts(faithfulness(mlp, c, x[100:], y[100:]).to_dict(),
                      faithfulness_mlp(mlp, c, x[100:], y[100:]).to_dict())
    with pytest.raises(ValueError, match="mean"):
        faithfulness(mlp, _by_param(c), x[100:], y[100:])
    model, cx, cy = cnn
    for find in (greedy_circuits, mask_circuits):
        with pytest.raises(ValueError, match="zero ablation"):
            find(model, ["head"], cx, cy, labels=[0], ablation="mean")
        with pytest.raises(ValueError, match="MLP only"):
            find(model, None, cx, cy, labels=[0])
        with pytest.raises(ValueError, match="at least one"):
            find(model, [], cx, cy, labels=[0])


def test_greedy_circuit_of_a_cnn_head_is_faithful(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    model, x, y = cnn
    with torch.no_grad():
        model.head.weight.mul_(20)  # a confident model, whose decisions a circuit must keep
    before = {n: p.clone() for n, p in model.named_parameters()}
    circ, = greedy_circuits(model, ["head"], x[:80], y[:80], labels=[0], threshold=1e-2, baseline="full")
    assert 0 < circ.size < model.head.weight.numel()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # the model is untouched
    held_out = faithfulness(model, circ, x[80:], y[80:])
    assert held_out.balanced_agreement > 0.6  # a constant classifier scores 0.5
    with pytest.raises(ValueError, match="baseline"):
        greedy_circuits(model, ["head"], x, y, labels=[0], baseline="start")
    with pytest.raises(ValueError, match="unknown parameter"):
        greedy_circuits(model, ["body"], x, y, labels=[0])


# --- a tiny CNN ---------------------------------------------------------------------------------------------

def test_cnn_activations_reduce_space(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    model, x, _ = cnn
    with torch.no_grad():
        out = model.conv(x)
    mean = unit_activations(model, x, "conv", reduce="mean", post=torch.relu)
    assert mean.shape == (120, 6)
    assert torch.allclose(mean, torch.relu(out).mean((2, 3)), rtol=1e-6, atol=1e-7)
    assert torch.equal(unit_activations(model, x, "conv", reduce="max", post=torch.relu),
                       torch.relu(out).amax((2, 3)))
    assert torch.equal(unit_activations(model, x, "relu", reduce="max", unit_dim=1), torch.relu(out).amax((2, 3)))
    assert torch.allclose(unit_activations(model, x, "conv"), out.mean((2, 3)), rtol=1e-6, atol=1e-7)
    sem = label_semanticity(model, "conv", x, torch.zeros(120, dtype=torch.long), k=10, n_classes=3, reduce="max")
    assert sem.reduce == "max" and sem.distinct == [1] * 6 and sem.score == pytest.approx(1 - 1 / 3)


def test_cnn_channel_ablation_equals_zeroing_the_kernels(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    model, x, y = cnn
    clusters = [[0, 1], [2, 3, 4], [5]]

    def zero_out(m: nn.Module, off: Sequence[int]) -> None:
        for c in off:
            m.conv.weight[clusters[c]] = 0
            m.conv.bias[clusters[c]] = 0

    got = ablate(model, clusters, "conv", x, y, 3)
    assert got == manual_ablation(model, "conv", x, y, 3, 3, zero_out)
    assert 0 < got.full_acc < 1
    # a partition of the conv's (out, in) channels: rows zero output channels, columns input ones
    part = Partition.from_labels([0, 0, 1, 1, 1, -1], [1, 0, 0, 1])

    def zero_block(m: nn.Module, off: Sequence[int]) -> None:
        for c in off:
            m.conv.weight[list(part.rows[c])] = 0
            m.conv.bias[list(part.rows[c])] = 0
            m.conv.weight[:, list(part.cols[c])] = 0

    assert ablate(model, part, "conv", x, y, 3) == manual_ablation(model, "conv", x, y, 3, 2, zero_block)
    # the head's Linear: output features are logits
    logit_groups = [[0], [1, 2]]

    def zero_logits(m: nn.Module, off: Sequence[int]) -> None:
        for c in off:
            m.head.weight[logit_groups[c]] = 0
            m.head.bias[logit_groups[c]] = 0

    assert ablate(model, logit_groups, "head", x, y, 3, batch_size=32) == \
        manual_ablation(model, "head", x, y, 3, 2, zero_logits)
    with pytest.raises(ValueError, match="does not match"):
        ablate(model, Partition.equal_blocks((6, 5), 2), "conv", x, y, 3)


def test_cnn_selectivity(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    model, x, y = cnn
    with torch.no_grad():
        acts = torch.relu(model.conv(x)).amax((2, 3))
    sel = unit_selectivity(model, "conv", x, y, 3, reduce="max", post=torch.relu)
    assert sel.reduce == "max" and sel.post == "relu"
    assert sel.selectivity == selectivity_index(acts, y, 3).tolist()
    cs = layer_cluster_selectivity(model, x, y, [[0, 1, 2], [3, 4, 5]], "conv", 3, reduce="max", post=torch.relu)
    assert parent_fields(cs, ClusterSelectivity) == asdict(cluster_selectivity(acts, y, [[0, 1, 2], [3, 4, 5]], 3))


def test_conv_connection_matrix_and_spectral() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, bias=False)
    m = connection_matrix(conv)
    assert m.shape == (6, 4)
    assert torch.allclose(m, conv.weight.detach().pow(2).sum((2, 3)).sqrt())
    # C of the norm matrix is the conv's own C: squared kernel weights inside the channel blocks
    part = layer_spectral_partition(nn.Sequential(OrderedDict([("conv", conv)])), "conv", 2)
    inside = sum(conv.weight.detach()[list(r)][:, list(c)].pow(2).sum() for r, c in zip(part.rows, part.cols))
    assert weight_clusterability(m, part) == pytest.approx(float(inside / conv.weight.detach().pow(2).sum()), rel=1e-5)
    # a 1x1 conv and the Linear with its weights: same clusters, C, n-cut and null
    lin = nn.Linear(7, 9, bias=False).double()
    one = nn.Conv2d(7, 9, 1, bias=False).double()
    with torch.no_grad():
        one.weight.copy_(lin.weight[:, :, None, None])
    assert torch.equal(connection_matrix(one), lin.weight.detach().abs())
    a = spectral_null(nn.Sequential(OrderedDict([("l", lin)])), "l", 3, n_draws=3, seed=4)
    b = spectral_null(nn.Sequential(OrderedDict([("l", one)])), "l", 3, n_draws=3, seed=4)
    assert a.to_dict() == b.to_dict()
    # grouped: zero between groups; transposed: read as (out, in)
    grouped = nn.Conv2d(4, 6, 3, groups=2)
    g = connection_matrix(grouped)
    assert g.shape == (6, 4) and (g[:3, 2:] == 0).all() and (g[3:, :2] == 0).all() and (g[:3, :2] > 0).all()
    tr = nn.ConvTranspose2d(4, 6, 3)
    assert connection_matrix(tr).shape == (6, 4)
    with pytest.raises(ValueError, match="2 or more dims"):
        connection_matrix(torch.ones(3))


# --- a tiny transformer-MLP-like block ----------------------------------------------------------------------

def test_block_hidden_neurons(block: tuple[TinyBlock, Tensor, Tensor]) -> None:
    model, x, y = block
    with torch.no_grad():
        pre = model.mlp.fc(model.embed(x))  # (N, seq, hidden)
    assert torch.allclose(unit_activations(model, x, "mlp.act"), F.gelu(pre).mean(1), rtol=1e-6, atol=1e-7)
    assert torch.equal(unit_activations(model, x, "mlp.fc", reduce="max"), pre.amax(1))
    clusters = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]

    def zero(m: nn.Module, off: Sequence[int]) -> None:
        for c in off:
            m.mlp.fc.weight[clusters[c]] = 0
            m.mlp.fc.bias[clusters[c]] = 0

    got = ablate(model, clusters, "mlp.fc", x, y, 3)
    assert got == manual_ablation(model, "mlp.fc", x, y, 3, 3, zero)
    # GELU(0) = 0: zeroing the neurons after the activation is the same ablation
    assert ablate(model, clusters, "mlp.act", x, y, 3) == replace(got, layer="mlp.act")
    sem = label_semanticity(model, "mlp.act", x, y, k=10, n_classes=3)
    assert sem.reduce == "mean" and len(sem.distinct) == 12 and all(1 <= d <= 3 for d in sem.distinct)
    sel = unit_selectivity(model, "mlp.act", x, y, 3)
    assert len(sel.mi) == 12 and all(v >= 0 for v in sel.mi)
    assert layer_spectral_partition(model, "mlp.fc", 2) == spectral_partition(model.mlp.fc.weight, 2)


# --- mask circuits on any model, judged on every class ------------------------------------------------------

def test_constant_classifier_scores_badly_and_a_learned_mask_does_not(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    model, x, y = cnn
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
        model.head.weight.mul_(20)
        full_pred = model(x).argmax(-1)
    c = 2
    assert 0 < int((full_pred == c).sum()) < len(x)  # the full model says c for some inputs, not all
    # dropping the head's weights leaves its bias: the circuit answers c on every input
    constant = Circuit(label=c, baseline="mask", threshold=0.5, layers=["head.weight"],
                       kept={"head.weight": torch.zeros_like(model.head.weight, dtype=torch.bool)},
                       full_loss=float("nan"), final_loss=float("nan"), objective="margin")
    assert (masked_logits(model, constant.kept, x).argmax(-1) == c).all()
    bad = faithfulness(model, constant, x, y)
    assert bad.share_c == 1.0 and bad.agreement_c == 1.0 and bad.agreement_rest == 0.0
    assert bad.balanced_agreement == 0.5
    assert bad.agreement == bad.full_share_c > 0.5  # plain agreement would flatter it; the balanced one does not
    with torch.no_grad():
        obj = objective_from_logits("margin", model(x), x, c)
        const_loss = obj.loss(masked_logits(model, constant.kept, x)).item()
    assert const_loss >= 0.5 * math.log(2)
    circ, = mask_circuits(model, ["conv", "head.weight"], x, y, labels=[c], sparsity=1e-4, steps=60)
    assert set(circ.kept) == {"conv.weight", "head.weight"} and 0 < circ.size
    assert circ.final_loss < const_loss
    good = faithfulness(model, circ, x, y)
    assert good.balanced_agreement > 0.8 and good.agreement_rest > 0.8
    assert model.head.weight.grad is None  # the model's own parameters are untouched


# --- checks --------------------------------------------------------------------------------------------------

class Functional(nn.Module):
    """Uses its Linear's weight directly: hooks on ``lin`` never fire."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.lin.weight.T


def test_errors_and_modes(cnn: tuple[TinyCNN, Tensor, Tensor]) -> None:
    model, x, y = cnn
    with pytest.raises(ValueError, match="unknown module"):
        unit_activations(model, x, "nope")
    with pytest.raises(RuntimeError, match="not called"):
        unit_activations(Functional(), torch.randn(4, 3), "lin")
    with pytest.raises(RuntimeError, match="not called"):
        ablate(Functional(), [[0]], "lin", torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="disjoint"):
        ablate(model, [[0, 1], [1, 2]], "conv", x, y, 3)
    with pytest.raises(ValueError, match="unit"):
        ablate(model, [[0, 6]], "conv", x, y, 3)
    with pytest.raises(ValueError, match="reduce"):
        unit_activations(model, x, "conv", reduce="sum")
    with pytest.raises(ValueError, match="unknown parameter"):
        mask_circuits(model, ["nope"], x, y, labels=[0], steps=1)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite values"):  # not a score computed from nan activations
        label_semanticity(model, "conv", bad, y, k=10, n_classes=3)
    bad[0, 0, 0, 0], bad[1, 0, 0, 0] = float("inf"), -float("inf")  # their sum is nan: both are found
    with pytest.raises(ValueError, match="2 non-finite values"):
        label_semanticity(model, "conv", bad, y, k=10, n_classes=3)
    huge = torch.full_like(x, 3e38)  # finite inputs whose sum overflows are not refused
    assert len(label_semanticity(model, "conv", huge, y, k=10, n_classes=3).distinct) > 0
    # dropout in train mode: every analysis runs in eval mode and restores the modes
    drop = nn.Sequential(OrderedDict([("lin", nn.Linear(5, 3)), ("drop", nn.Dropout(0.5))]))
    drop.train()
    xs = torch.randn(50, 5)
    a = unit_activations(drop, xs, "drop")
    assert torch.equal(a, unit_activations(drop, xs, "drop")) and drop.training and drop.drop.training
    with eval_mode(drop):
        assert not drop.drop.training
    assert drop.drop.training
