"""Stage 7: the small CNN (:mod:`modclust.core.cnn`) on one dataset, trained and measured.

One dataset's grid (every lambda of :attr:`CnnStudy.lambdas` x every seed) is trained as one
vectorised ensemble (:func:`modclust.core.ensemble.train_ensemble`), with the clusterability
loss on ``conv2`` (its (out-channel x in-channel) kernel blocks) and ``fc1`` (hidden units x
the flattened features of conv2's channel blocks). The clusters are equal unit clusters,
consistent through the network (:class:`modclust.core.units.UnitClusters`): conv2's k blocks of
output channels are fc1's k blocks of input features. ``conv1`` carries no loss: it reads one
input channel, which cannot be cut into k blocks on its input side; ``fc2`` writes the classes.

Per run (lambda 0 and the main lambda, every seed), with the hook-based analyses of
:mod:`modclust.analysis.any_model`, each beside a trivial baseline:

1. *trade-off*: test accuracy and C of conv2 and fc1 for every lambda; accuracy differences to
   lambda = 0 paired by seed; the baselines are the untrained network's C (about 1/k) and the
   majority-class accuracy;
2. *cluster ablations*: each cluster OFF and only it ON, on fc1's hidden units and on conv2's
   channels (their outputs set to 0, so the ReLU after them passes 0), overall and class-wise;
   the unclustered models ablated on the same blocks are the control; clusters are ranked by
   importance (:func:`modclust.analysis.ablation.order_by_importance`) before averaging;
3. *semanticity*: label semanticity (top-k test images), class selectivity and mutual
   information of conv2's channels (post-ReLU, by their spatial **mean**) and of fc1's units
   (post-ReLU), and of their clusters, beside the untrained network of the same seed;
4. *circuits*: per-label learned masks over :attr:`CnnStudy.circuit_params` (default fc1's and
   fc2's weights) with the faithful c-vs-rest margin objective, searched on class-balanced
   training images and judged on the test images: size, balanced c-vs-rest agreement (0.5 for
   a constant classifier) per label, and a random mask of the same size per label as a baseline;
5. *spectral baseline*: spectral co-clustering of conv2's channel-norm matrix and of fc1's
   weights into k clusters, scored against shuffled copies (z of C).

Speed. The analyses run a :func:`modclust.core.cnn.cnn_as_sequential` view of the CNN (its own modules, so its own
parameters under the same names), cut at the first layer a measurement touches
(:func:`split_at`): the part before it is computed once per model and test set, and each of
the many ablated or masked passes runs only the rest. The results are those of the whole
network (tested), at a fraction of the cost: conv1 on 28 x 28 images is most of a forward pass.

Summaries over seeds (:func:`summarise`) give 95 % intervals (:func:`modclust.core.stats.mean_ci`);
the paper's comparisons pair the runs by seed (:mod:`modclust.paper.cnn_numbers`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from modclust.analysis import any_model as am
from modclust.analysis.ablation import AblationResult, order_by_importance
from modclust.analysis.circuits import Circuit
from modclust.core.checks import (Problems, check_choice, check_distinct, check_float, check_int, check_ints,
                                  check_list, check_seeds)
from modclust.core.clusterability import layer_clusterability
from modclust.core.cnn import CNN, VIEW_LAYERS, cnn_as_sequential, make_cnn
from modclust.core.data import DATASETS, Dataset, balanced_indices
from modclust.core.model import SEED_MAX
from modclust.core.ensemble import OPTIMIZERS, ModuleConfig, ModuleRun, train_ensemble
from modclust.core.progress import track
from modclust.core.stats import mean_ci
from modclust.core.units import UnitClusters
from modclust.experiments.grid import paired_difference, summary_table

CLUSTERED_LAYERS = ("conv2", "fc1")
"""The CNN's layers that carry the clusterability loss and whose units are ablated and measured."""

LAYERS_LABEL = "conv2+fc1"
"""The ``layers`` field of every record (what :func:`modclust.experiments.grid.paired_difference` groups by)."""

# --- the study's settings --------------------------------------------------------------------------

@dataclass(frozen=True)
class CnnStudy:
    """Stage 7's settings, one home for their defaults (the paper preset's values), checked on
    construction: every problem of the values in one :class:`~modclust.core.checks.SettingsError`.

    A preset's ``cnn:`` section sets them by field name; notebook 07 takes each as the parameter
    ``cnn_<field>`` (:func:`modclust.pipeline.presets.settings_from_parameters`).

    Data: each of ``datasets`` on its own, its first ``n_train`` training and ``n_test`` test
    images (0: all). Training: the grid ``lambdas`` x ``seeds`` (lambda 0 and ``main_lambda``
    among the lambdas), CNNs ``make_cnn(seed, channels, hidden)``, ``epochs`` of ``optimizer``
    at ``lr`` in batches of ``batch_size``, k = ``n_clusters`` equal unit clusters on conv2 and
    fc1. Analyses: ``top_k`` images for label semanticity, ``selectivity_bins`` bins for the
    mutual information, ``null_draws`` shuffled copies for the spectral z-scores, learned masks
    over ``circuit_params`` searched on ``search_per_class`` training images per class (drawn by
    ``search_seed``) for ``mask_steps`` Adam steps at ``mask_lr`` with a price ``mask_sparsity``
    per kept entry; ``batch_size_eval`` images per forward pass.
    """

    preset_section: ClassVar[str | None] = "cnn"
    """The preset section that sets these settings (None: the top level)."""

    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    lambdas: tuple[float, ...] = (0.0, 1.0, 5.0)
    main_lambda: float = 5.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    channels: tuple[int, ...] = (8, 16)
    hidden: int = 64
    n_clusters: int = 4
    epochs: int = 1
    lr: float = 0.001
    batch_size: int = 64
    optimizer: str = "adam"
    n_train: int = 12000
    n_test: int = 5000
    top_k: int = 50
    selectivity_bins: int = 10
    null_draws: int = 20
    circuit_params: tuple[str, ...] = ("fc1.weight", "fc2.weight")
    search_per_class: int = 20
    search_seed: int = 0
    mask_steps: int = 30
    mask_lr: float = 0.2
    mask_sparsity: float = 0.0001
    batch_size_eval: int = 1000

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        problems = Problems()
        with problems.about("datasets"):
            names = check_list("CnnStudy.datasets", self.datasets)
            for name in names:
                check_choice("CnnStudy.datasets item", name, DATASETS)
            if not names:
                raise ValueError(f"CnnStudy.datasets names no dataset: give one or more of {list(DATASETS)}")
            check_distinct("CnnStudy.datasets", names, "a dataset")
            put("datasets", tuple(names))
        with problems.about("lambdas"):
            lams = [check_float("CnnStudy lambda", v, 0.0, hint="lambdas are >= 0 (0 = unclustered)")
                    for v in check_list("CnnStudy.lambdas", self.lambdas)]
            check_distinct("CnnStudy.lambdas", lams)
            put("lambdas", tuple(sorted(lams)))
        with problems.about("main_lambda"):
            put("main_lambda", check_float("CnnStudy.main_lambda", self.main_lambda, 0.0, strict_min=True,
                                           hint="the clustered models' lambda, > 0"))
        if problems.ok("lambdas", "main_lambda") and (0.0 not in self.lambdas or self.main_lambda not in self.lambdas):
            problems.add(f"the lambda grid {list(self.lambdas)} must hold 0 (the unclustered control) and "
                         f"main_lambda {self.main_lambda:g}: add them to the lambdas", "lambdas", "main_lambda")
        with problems.about("seeds"):
            put("seeds", check_seeds("CnnStudy.seeds", check_list("CnnStudy.seeds", self.seeds), SEED_MAX))
        with problems.about("channels"):
            channels = check_ints("CnnStudy.channels", check_list("CnnStudy.channels", self.channels), 1,
                                  hint="(conv1's, conv2's) output channels, e.g. [8, 16]")
            if len(channels) != 2:
                raise ValueError(f"CnnStudy.channels must be two ints (conv1's, conv2's), got {list(channels)}")
            put("channels", channels)
        for name in ("hidden", "n_clusters", "epochs", "batch_size", "top_k", "selectivity_bins", "batch_size_eval",
                     "search_per_class"):
            with problems.about(name):
                put(name, check_int(f"CnnStudy.{name}", getattr(self, name), 1))
        for name, hint in (("n_train", "the first n training images; 0 means all"),
                           ("n_test", "the first n test images; 0 means all"), ("mask_steps", ""),
                           ("search_seed", "")):
            with problems.about(name):
                put(name, check_int(f"CnnStudy.{name}", getattr(self, name), 0, hint=hint))
        with problems.about("null_draws"):
            put("null_draws", check_int("CnnStudy.null_draws", self.null_draws, 2,
                                        hint="at least 2 shuffled copies to estimate the null's spread"))
        for name in ("lr", "mask_lr"):
            with problems.about(name):
                put(name, check_float(f"CnnStudy.{name}", getattr(self, name), 0.0, strict_min=True))
        with problems.about("mask_sparsity"):
            put("mask_sparsity", check_float("CnnStudy.mask_sparsity", self.mask_sparsity, 0.0))
        with problems.about("optimizer"):
            check_choice("CnnStudy.optimizer", self.optimizer, OPTIMIZERS)
        k = self.n_clusters
        if problems.ok("n_clusters", "channels", "hidden") and k > min(self.channels[1], self.hidden, self.channels[0]):
            problems.add(f"n_clusters={k} does not fit conv2 ({self.channels[1]} channels reading "
                         f"{self.channels[0]}) and fc1 ({self.hidden} units): lower n_clusters or widen the layers",
                         "n_clusters", "channels", "hidden")
        with problems.about("circuit_params"):
            params = tuple(check_list("CnnStudy.circuit_params", self.circuit_params))
            if not params:
                raise ValueError("CnnStudy.circuit_params needs at least one parameter to mask, e.g. ['fc1.weight']")
            known = [f"{m}.{p}" for m in ("conv1", "conv2", "fc1", "fc2") for p in ("weight", "bias")]
            bad = [p for p in params if p not in known]
            if bad or len(set(params)) != len(params):
                raise ValueError(f"CnnStudy.circuit_params must name distinct CNN parameters {known}, "
                                 f"got {list(params)}")
            put("circuit_params", params)
        problems.raise_any()

    @property
    def analysis_lambdas(self) -> tuple[float, float]:
        """The lambdas the deeper analyses compare: the unclustered 0 and the main lambda."""
        return 0.0, self.main_lambda

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}



# --- the model, its view and its clusters ------------------------------------------------------------

def model_maker(study: CnnStudy, n_classes: int = 10) -> Callable[[int], CNN]:
    """``seed -> make_cnn(seed, study.channels, study.hidden, n_classes)`` (28 x 28 single-channel images)."""
    return lambda seed: make_cnn(seed, study.channels, study.hidden, n_classes)


def split_at(view: nn.Sequential, layer: str) -> tuple[nn.Sequential, nn.Sequential]:
    """``view`` cut before module ``layer``: (the modules before it, it and the rest), names kept.

    ``rest(before(x)) == view(x)``; parameters keep their names in ``rest`` (``fc2.weight``).
    """
    names = list(view._modules)
    if layer not in names:
        raise ValueError(f"cannot cut the view at {layer!r}: its modules are {names}")
    i = names.index(layer)
    return view[:i], view[i:]  # type: ignore[return-value]


@torch.no_grad()
def forward_in_batches(module: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """``module(x)`` in eval mode, ``batch_size`` inputs per pass, concatenated along dim 0."""
    with am.eval_mode(module):
        return torch.cat([module(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def unit_clusters(model: CNN, k: int, example: Tensor) -> UnitClusters:
    """k equal clusters of conv2's channels and fc1's units, consistent through the CNN (fc1's
    input clusters are conv2's channel blocks, flattened), traced on ``example`` (N, 784)."""
    return UnitClusters.equal(model, list(CLUSTERED_LAYERS), k, example_input=example[:2])


def layer_cs(model: nn.Module, clusters: UnitClusters) -> dict[str, float]:
    """C of each clustered layer's weight under its unit-cluster partition (``C_conv2``, ``C_fc1``)."""
    modules = dict(model.named_modules())
    out = {}
    with torch.no_grad():
        for name, part in clusters.partitions(model).items():
            w = modules[name].weight
            out[f"C_{name}"] = float(layer_clusterability(w, part.mask(w.device, w.dtype)))
    return out


# --- 1. training the grid ----------------------------------------------------------------------------

def train_grid(data: Dataset, study: CnnStudy) -> tuple[list[ModuleRun], UnitClusters]:
    """Every (lambda, seed) of the study trained as one vectorised ensemble, lambda-major order,
    with the loss on the unit-cluster partitions of conv2 and fc1; and those clusters."""
    make = model_maker(study, data.n_classes)
    clusters = unit_clusters(make(study.seeds[0]), study.n_clusters, data.train_x[:2].cpu())  # traced on the CPU
    parts = clusters.partitions(make(study.seeds[0]))
    cfg = ModuleConfig(epochs=study.epochs, lr=study.lr, batch_size=study.batch_size, optimizer=study.optimizer,
                       clustered={f"{n}.weight": p for n, p in parts.items()}, n_clusters=study.n_clusters,
                       eval_batch_size=study.batch_size_eval)
    seeds = [s for _ in study.lambdas for s in study.seeds]
    lams = [lam for lam in study.lambdas for _ in study.seeds]
    runs = train_ensemble(make, seeds, (data.train_x, data.train_y, data.test_x, data.test_y), cfg, lams=lams)
    return runs, clusters


def run_record(run: ModuleRun, clusters: UnitClusters, dataset: str) -> dict[str, Any]:
    """One JSON-ready row per trained run: its lambda, seed, test accuracy (per epoch too) and C per layer."""
    cs = layer_cs(run.model, clusters)
    return {"dataset": dataset, "layers": LAYERS_LABEL, "lam": float(run.lam), "seed": int(run.seed),
            "test_acc": float(run.test_acc), "test_acc_per_epoch": list(run.history["test_acc"]), **cs,
            "C_clustered": sum(cs.values()) / len(cs)}


def majority_accuracy(y: Tensor, n_classes: int) -> float:
    """Accuracy of the constant classifier that always answers the most frequent class of ``y``."""
    return float(torch.bincount(y.cpu(), minlength=n_classes).max()) / len(y)


# --- 2.-5. the analyses of one model -----------------------------------------------------------------

def _ablation(res: AblationResult) -> dict[str, Any]:
    """An ablation's lists plus its clusters in order of importance (lowest OFF accuracy first)."""
    d = res.to_dict()
    d["order"] = order_by_importance(res.off_acc)
    return d


def _earliest(params: Sequence[str]) -> str:
    """The first module of the view (in forward order) that owns one of ``params``."""
    owners = {p.split(".")[0] for p in params}
    return next(n for n in VIEW_LAYERS if n in owners)


Cuts = dict[str, tuple[nn.Sequential, Tensor]]
"""Module name -> (the view from that module on, the inputs carried up to it)."""


def cuts(model: CNN, x: Tensor, layers: Sequence[str], batch_size: int = 1000) -> Cuts:
    """For each module of ``layers`` (names of :data:`VIEW_LAYERS`): the CNN's view from that module
    on, and ``x`` (N, 784) carried up to its input, computed once in forward order (each stretch
    of the network runs once). ``rest(inputs) == model(x)`` for every entry."""
    view = cnn_as_sequential(model)
    names = list(view._modules)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise ValueError(f"cannot cut the CNN at {unknown}: its view's modules are {names}")
    out: Cuts = {}
    start, h = 0, x
    for layer in sorted(set(layers), key=names.index):
        i = names.index(layer)
        h = forward_in_batches(view[start:i], h, batch_size) if i > start else h
        start = i
        out[layer] = (view[i:], h)  # type: ignore[assignment]
    return out


def semanticity_analysis(model: CNN, clusters: UnitClusters, x: Tensor, y: Tensor, study: CnnStudy,
                         n_classes: int, at: Cuts | None = None) -> dict[str, Any]:
    """Label semanticity, selectivity and MI of conv2's channels (post-ReLU, spatial mean) and fc1's
    units (post-ReLU), and selectivity / MI of their clusters, on inputs ``x`` (N, 784), labels ``y``.
    ``at``: :func:`cuts` of the model at conv2 and fc1 on ``x`` (computed when not given)."""
    at = cuts(model, x, CLUSTERED_LAYERS, study.batch_size_eval) if at is None else at
    out: dict[str, Any] = {}
    for layer in CLUSTERED_LAYERS:
        rest, feats = at[layer]
        kw = dict(n_classes=n_classes, reduce="mean", post=torch.relu, batch_size=study.batch_size_eval)
        sem = am.label_semanticity(rest, layer, feats, y, k=study.top_k, **kw)
        sel = am.unit_selectivity(rest, layer, feats, y, n_bins=study.selectivity_bins, **kw)
        csel = am.layer_cluster_selectivity(rest, feats, y, clusters.groups[layer], layer,
                                            n_bins=study.selectivity_bins, **kw)
        out[layer] = {"semanticity": sem.score, "distinct_hist": list(sem.histogram),
                      "reduce": sem.reduce, "post": sem.post,
                      "selectivity": sel.selectivity, "mi": sel.mi, "mean_selectivity": sel.mean_selectivity,
                      "mean_mi": sel.mean_mi, "label_entropy": sel.label_entropy, "dead_share": sel.dead_share,
                      "live_selectivity": sel.live_selectivity,
                      "cluster_selectivity": csel.selectivity, "cluster_mi": csel.mi, "cluster_profile": csel.profile}
    return out


def ablation_analysis(model: CNN, clusters: UnitClusters, x: Tensor, y: Tensor, study: CnnStudy,
                      n_classes: int, at: Cuts | None = None) -> dict[str, Any]:
    """Each cluster OFF and only it ON on conv2's channels and on fc1's hidden units (their outputs
    set to 0), overall and class-wise accuracy on ``x`` (N, 784), ``y`` (N,); ``at`` as in
    :func:`semanticity_analysis`."""
    at = cuts(model, x, CLUSTERED_LAYERS, study.batch_size_eval) if at is None else at
    return {layer: _ablation(am.ablate(at[layer][0], clusters.groups[layer], layer, at[layer][1], y, n_classes,
                                       batch_size=study.batch_size_eval))
            for layer in CLUSTERED_LAYERS}


def random_circuit(like: Circuit, params: dict[str, Tensor], seed: int) -> Circuit:
    """A circuit keeping as many entries of each parameter as ``like`` does, chosen uniformly at
    random (``torch.Generator`` seeded with ``seed``): the size-matched chance baseline."""
    g = torch.Generator().manual_seed(int(seed))
    kept = {}
    for name, mask in like.kept.items():
        n = int(mask.sum())
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=g)[:n]] = True
        kept[name] = flat.view(params[name].shape)
    return Circuit(label=like.label, baseline="random", threshold=float("nan"), layers=list(kept), kept=kept,
                   full_loss=float("nan"), final_loss=float("nan"), objective=like.objective)


def circuit_analysis(model: CNN, search_x: Tensor, search_y: Tensor, test_x: Tensor, test_y: Tensor,
                     study: CnnStudy, n_classes: int, seed: int, at: Cuts | None = None) -> dict[str, Any]:
    """Per-label learned-mask circuits over ``study.circuit_params`` (margin objective), searched on
    ``search_x, search_y`` and judged on ``test_x, test_y``; beside each, a random circuit of the
    same size per parameter. Per label: size, c-vs-rest agreements, share of inputs called c.

    The masks act on the view from the first module that owns a masked parameter on, fed with the
    inputs carried up to it (``at``: :func:`cuts` on ``test_x``, computed when not given or when
    it lacks that module); the unmasked layers before it are the same for every mask.
    """
    first = _earliest(study.circuit_params)
    if at is None or first not in at:
        at = cuts(model, test_x, [first], study.batch_size_eval)
    rest, tx = at[first]
    sx = cuts(model, search_x, [first], study.batch_size_eval)[first][1]
    found = am.mask_circuits(rest, list(study.circuit_params), sx, search_y, objective="margin",
                             sparsity=study.mask_sparsity, steps=study.mask_steps, lr=study.mask_lr)
    params = dict(rest.named_parameters())
    labels: list[dict[str, Any]] = []
    for c in found:
        f = am.faithfulness(rest, c, tx, test_y, n_classes)
        r = am.faithfulness(rest, random_circuit(c, params, seed * 1000 + int(c.label)), tx, test_y, n_classes)
        labels.append({"label": c.label, "size": c.size, "size_per_param": c.size_per_layer,
                       "final_loss": c.final_loss, "full_loss": c.full_loss,
                       "faithfulness": f.to_dict(), "random": r.to_dict()})
    total = sum(int(params[p].numel()) for p in study.circuit_params)
    return {"params": list(study.circuit_params), "n_entries": total, "objective": "margin", "ablation": "zero",
            "labels": labels}


def spectral_analysis(model: CNN, k: int, n_draws: int, seed: int) -> dict[str, Any]:
    """Spectral co-clusters of conv2's (channel-norm) and fc1's connection matrices against
    ``n_draws`` shuffled copies (:func:`modclust.analysis.any_model.spectral_null`)."""
    out = {}
    for layer in CLUSTERED_LAYERS:
        null = am.spectral_null(model, layer, k, n_draws, seed)
        out[layer] = {key: v for key, v in null.to_dict().items() if key != "partition"}
    return out


# --- flat rows for summaries over seeds ------------------------------------------------------------

def _mean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and v == v]
    return sum(vals) / len(vals) if vals else float("nan")


def class_spread(full_classwise: Sequence[float], off_classwise: Sequence[Sequence[float]]) -> float:
    """How unevenly turning a cluster OFF hurts the classes: per cluster, the standard deviation over
    classes of the accuracy lost (full minus OFF, class-wise), averaged over the clusters."""
    full = np.asarray(full_classwise, dtype=float)
    drops = full[None, :] - np.asarray(off_classwise, dtype=float)  # (k, classes)
    return float(drops.std(axis=1).mean())


def analysis_row(res: dict[str, Any]) -> dict[str, float]:
    """The scalars of one trained model's analyses (:func:`analyse_trained`), for summaries over seeds."""
    row: dict[str, float] = {}
    for layer, ab in res["ablation"].items():
        row[f"off_mean_{layer}"] = _mean(ab["off_acc"])
        row[f"on_mean_{layer}"] = _mean(ab["on_acc"])
        row[f"off_min_{layer}"] = min(ab["off_acc"])
        row[f"on_max_{layer}"] = max(ab["on_acc"])
        row[f"spread_{layer}"] = class_spread(ab["full_classwise"], ab["off_classwise"])
    row.update(semanticity_row(res["semanticity"]))
    labels = res["circuits"]["labels"]
    faith = [lab["faithfulness"] for lab in labels]
    rand = [lab["random"] for lab in labels]
    row["circuit_size"] = _mean([lab["size"] for lab in labels])
    row["circuit_fraction"] = row["circuit_size"] / res["circuits"]["n_entries"]
    for p in res["circuits"]["params"]:
        row[f"circuit_size_{p.replace('.', '_')}"] = _mean([lab["size_per_param"][p] for lab in labels])
    for key in ("balanced_agreement", "agreement_c", "agreement_rest", "share_c", "agreement"):
        row[f"circuit_{key}"] = _mean([f[key] for f in faith])
        row[f"random_{key}"] = _mean([f[key] for f in rand])
    row["circuit_balanced_min"] = min(f["balanced_agreement"] for f in faith)
    row["circuit_constant_labels"] = float(sum(f["share_c"] >= 0.5 for f in faith))
    for layer, sp in res["spectral"].items():
        row[f"spectral_c_{layer}"] = sp["c"]
        row[f"null_c_{layer}"] = _mean(sp["null_c"])
        row[f"z_c_{layer}"] = sp["z_c"]
        row[f"z_ncut_{layer}"] = sp["z_ncut"]
        row[f"p_c_{layer}"] = sp["p_c"]
    return row


def semanticity_row(sem: dict[str, Any]) -> dict[str, float]:
    """Scalars of :func:`semanticity_analysis`: semanticity, mean selectivity and MI per layer and cluster."""
    row = {}
    for layer, s in sem.items():
        row[f"sem_{layer}"] = s["semanticity"]
        row[f"sel_{layer}"] = s["mean_selectivity"]
        row[f"mi_{layer}"] = s["mean_mi"]
        row[f"dead_{layer}"] = s["dead_share"]
        row[f"sel_live_{layer}"] = s["live_selectivity"]
        row[f"csel_{layer}"] = _mean(s["cluster_selectivity"])
        row[f"cmi_{layer}"] = _mean(s["cluster_mi"])
    return row


UNTRAINED_SUMMARISED = ("sem_conv2", "sel_conv2", "sel_live_conv2", "dead_conv2", "mi_conv2",
                      "sem_fc1", "sel_fc1", "sel_live_fc1", "dead_fc1", "mi_fc1")
"""The scalars summarised over the untrained networks too (the paper reads them beside the trained ones)."""


def _values(rows: Sequence[dict[str, Any]], key: str, lam: float | None = None) -> list[float]:
    """The seeds' values of ``key`` (at ``lam`` when given), in seed order, undefined ones left out."""
    picked = sorted((r for r in rows if lam is None or r["lam"] == lam), key=lambda r: r["seed"])
    return [float(r[key]) for r in picked if r.get(key) is not None and r[key] == r[key]]


def ranked_layer_ablation(runs: Sequence[dict[str, Any]], layer: str) -> dict[str, Any]:
    """(seeds, k[, classes]) OFF / ON accuracies of ``layer``'s clusters, each seed's clusters ranked
    by importance, and (seeds, classes) the full models' class-wise accuracy."""
    out: dict[str, Any] = {}
    for key in ("off_acc", "on_acc", "off_classwise", "on_classwise"):
        out[key] = [np.asarray(r["ablation"][layer][key])[r["ablation"][layer]["order"]].tolist() for r in runs]
    out["full_acc"] = [r["ablation"][layer]["full_acc"] for r in runs]
    out["full_classwise"] = [r["ablation"][layer]["full_classwise"] for r in runs]
    return out


def per_label_circuits(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """(seeds, labels) per-label circuit size and faithfulness fields, and the random baseline's."""
    out: dict[str, Any] = {"labels": [lab["label"] for lab in runs[0]["circuits"]["labels"]]}
    out["size"] = [[lab["size"] for lab in r["circuits"]["labels"]] for r in runs]
    for key in ("balanced_agreement", "agreement_c", "agreement_rest", "share_c", "full_share_c"):
        out[key] = [[lab["faithfulness"][key] for lab in r["circuits"]["labels"]] for r in runs]
        out[f"random_{key}"] = [[lab["random"][key] for lab in r["circuits"]["labels"]] for r in runs]
    return out


# --- one dataset, whole -------------------------------------------------------------------------------

def analyse_trained(model: CNN, clusters: UnitClusters, data: Dataset, search: Tensor, study: CnnStudy,
                    seed: int) -> dict[str, Any]:
    """Every analysis (2.-5.) of one trained model; circuits are searched on training images ``search``."""
    x, y, n = data.test_x, data.test_y, data.n_classes
    at = cuts(model, x, [*CLUSTERED_LAYERS, _earliest(study.circuit_params)], study.batch_size_eval)
    return {"ablation": ablation_analysis(model, clusters, x, y, study, n, at),
            "semanticity": semanticity_analysis(model, clusters, x, y, study, n, at),
            "circuits": circuit_analysis(model, data.train_x[search], data.train_y[search], x, y, study, n, seed, at),
            "spectral": spectral_analysis(model, study.n_clusters, study.null_draws, seed)}


def run_dataset(data: Dataset, study: CnnStudy, progress: bool = True) -> dict[str, Any]:
    """Train the study's grid on ``data`` and run every analysis; the JSON-ready results of one dataset.

    ``data``: flat (N, 784) images (:func:`modclust.experiments.grid.load_data`); accuracy and
    every analysis use its test set, the circuits' search set is drawn from its training set.
    Returns the study, per-run ``records`` (every lambda), the ``untrained`` networks' rows,
    per-run analyses (``runs``: lambda 0 and main) with their flat ``rows``, and the summaries
    (:func:`summarise`).
    """
    if not isinstance(study, CnnStudy):
        raise TypeError(f"study must be a CnnStudy, got {type(study).__name__}")
    if data.train_x.ndim != 2:
        raise ValueError(f"the CNN study takes flat images (N, 784) as load_data gives them, got "
                         f"{tuple(data.train_x.shape)}")
    n = data.n_classes
    t0 = time.perf_counter()
    runs, clusters = train_grid(data, study)
    t_train = time.perf_counter() - t0
    records = [run_record(r, clusters, data.name) for r in runs]
    search = balanced_indices(data.train_y, study.search_per_class, seed=study.search_seed, n_classes=n)
    search = search.to(data.train_x.device)
    make = model_maker(study, n)
    device = data.train_x.device
    untrained, analysed = [], []
    pairs = [r for r in runs if float(r.lam) in study.analysis_lambdas]
    for r in track(pairs, desc=f"CNN analyses ({data.name})", disable=not progress):
        res = analyse_trained(r.model, clusters, data, search, study, r.seed)
        analysed.append({"lam": float(r.lam), "seed": int(r.seed), **res})
    for seed in track(study.seeds, desc=f"untrained CNNs ({data.name})", disable=not progress):
        net = make(seed).to(device)
        sem = semanticity_analysis(net, clusters, data.test_x, data.test_y, study, n)
        acc = float(forward_in_batches(net, data.test_x, study.batch_size_eval).argmax(-1).eq(data.test_y)
                    .double().mean())
        untrained.append({"seed": int(seed), "lam": 0.0, "test_acc": acc, **layer_cs(net, clusters),
                          **semanticity_row(sem), "semanticity": sem})
    t_all = time.perf_counter() - t0
    rows = [{"lam": a["lam"], "seed": a["seed"], **analysis_row(a),
             **{k: v for rec in records if rec["lam"] == a["lam"] and rec["seed"] == a["seed"]
                for k, v in rec.items() if k in ("test_acc", "C_conv2", "C_fc1", "C_clustered")}}
            for a in analysed]
    counts = torch.bincount(data.train_y.cpu(), minlength=n)
    out = {"dataset": data.name, "classes": list(data.spec.classes), "study": study.to_dict(),
           "n_train": len(data.train_x), "n_test": len(data.test_x),
           "train_class_share": [float(c) / len(data.train_y) for c in counts.tolist()],
           "majority_acc": majority_accuracy(data.test_y, n),
           "clusters": clusters.to_dict(), "search": {"split": "train", "per_class": study.search_per_class,
                                                      "seed": study.search_seed},
           "records": records, "untrained": untrained, "runs": analysed, "rows": rows,
           "seconds": {"train": t_train, "analyses": t_all - t_train}}
    out["summary"] = summarise(out)
    return out


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """Summaries over seeds of one dataset's results (:func:`run_dataset`): the trade-off table, the
    paired accuracy differences, the untrained networks' values, ranked ablations and per-label
    circuits."""
    study = res["study"]
    main = float(study["main_lambda"])
    records, untrained = res["records"], res["untrained"]
    by_lam = {lam: [r for r in res["runs"] if r["lam"] == lam] for lam in (0.0, main)}
    return {
        "tradeoff": summary_table(records, metrics=["test_acc", "C_conv2", "C_fc1", "C_clustered"], by=("lam",)),
        "paired_accuracy": paired_difference(records, "test_acc", baseline_lam=0.0),
        "untrained": {key: mean_ci(_values(untrained, key)).to_dict()
                      for key in ("test_acc", "C_conv2", "C_fc1", *UNTRAINED_SUMMARISED)},
        "ablation": {f"{lam:g}": {layer: ranked_layer_ablation(by_lam[lam], layer) for layer in CLUSTERED_LAYERS}
                     for lam in (0.0, main)},
        "circuits": {f"{lam:g}": per_label_circuits(by_lam[lam]) for lam in (0.0, main)},
    }


def run_study(datasets: Sequence[Dataset], study: CnnStudy, progress: bool = True) -> dict[str, Any]:
    """:func:`run_dataset` for each dataset; ``{"datasets": [names], "study": ..., "results": {name: ...}}``."""
    if not datasets:
        raise ValueError("give at least one dataset, e.g. cnn_datasets = ['mnist', 'fashion-mnist']")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"each dataset once, got {names}")
    results = {d.name: run_dataset(d, study, progress)
               for d in track(datasets, desc="CNN study: datasets", disable=not progress)}
    return {"datasets": names, "study": study.to_dict(), "results": results}


def study_from_parameters(**values: Any) -> CnnStudy:
    """A :class:`CnnStudy` from notebook parameters (lists become tuples); unknown names are an error."""
    known = {f.name for f in fields(CnnStudy)}
    bad = sorted(set(values) - known)
    if bad:
        raise ValueError(f"unknown CnnStudy settings {bad}: choose from {sorted(known)}")
    return CnnStudy(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

