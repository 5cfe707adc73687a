"""The image classifiers' study: the shared training and analyses of any model family that
classifies images and carries the clusterability loss on k equal unit clusters.

A family subclasses :class:`ClassifierStudy` (its settings :class:`ClassifierSettings` plus its own
fields) and provides its model (:meth:`ClassifierStudy.build`), the layers whose units are
clustered (:attr:`ClassifierStudy.clustered_layers`) and a cuttable view of the model
(:meth:`ClassifierStudy.view`, an ``nn.Sequential`` of the model's own modules). The rest is done
here, through the study template (:func:`modclust.experiments.study.run_study`):

1. *training*: the grid (every lambda x every seed) as one vectorised ensemble
   (:func:`modclust.core.ensemble.train_ensemble`), the loss on the clustered layers' weights
   under their unit-cluster partitions (:class:`modclust.core.units.UnitClusters`, consistent
   through the network); per run its test accuracy and C of each clustered layer; the baselines
   are the untrained network's C (about 1/k) and the majority-class accuracy;
2. *cluster ablations* (lambda 0 and the main lambda, every seed): each cluster OFF and only it
   ON on each clustered layer's units (their outputs set to 0), overall and class-wise, the
   clusters ranked by importance (:func:`modclust.analysis.ablation.order_by_importance`);
3. *semanticity*: label semanticity (top-k test images), class selectivity and mutual
   information of each clustered layer's units (post-ReLU; a conv channel by its spatial
   mean) and of their clusters, beside the untrained network of the same seed;
4. *circuits*: per-label learned masks over the settings' ``circuit_params`` with the faithful
   c-vs-rest margin objective, searched on class-balanced training images and judged on the
   test images: size, balanced c-vs-rest agreement (0.5 for a constant classifier) per label,
   and a random mask of the same size per label as a baseline;
5. *spectral baseline*: spectral co-clusters of each clustered layer against shuffled copies.

Speed. The analyses run the view cut at the first layer a measurement touches (:func:`cuts`):
the part before it is computed once per model and test set, and each of the many ablated or
masked passes runs only the rest. The results are those of the whole network (tested).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from modclust.analysis import any_model as am
from modclust.analysis.ablation import AblationResult, order_by_importance
from modclust.analysis.circuits import Circuit
from modclust.core.checks import (Problems, check_choice, check_distinct, check_float, check_int, check_list,
                                  check_seeds)
from modclust.core.clusterability import layer_clusterability
from modclust.core.data import DATASETS, Dataset, balanced_indices
from modclust.core.ensemble import OPTIMIZERS, ModuleConfig, train_ensemble
from modclust.core.model import SEED_MAX
from modclust.core.progress import track
from modclust.core.stats import mean_ci
from modclust.core.units import UnitClusters
from modclust.experiments.grid import load_data, paired_difference, summary_table
from modclust.experiments.study import Study, StudyResult, Trained, run_study, seed_values


# --- the settings every image classifier's study shares ---------------------------------------------

@dataclass(frozen=True)
class ClassifierSettings:
    """The settings every image classifier's study shares, checked on construction: every problem
    of the values in one :class:`~modclust.core.checks.SettingsError`. A family's settings
    subclass this, add their model's fields and check them in :meth:`check`.

    Data: each of ``datasets`` on its own, its first ``n_train`` training and ``n_test`` test
    images (0: all). Training: the grid ``lambdas`` x ``seeds`` (lambda 0 and ``main_lambda``
    among the lambdas), ``epochs`` of ``optimizer`` at ``lr`` in batches of ``batch_size``, k =
    ``n_clusters`` equal unit clusters on the clustered layers. Analyses: ``top_k`` images for
    label semanticity, ``selectivity_bins`` bins for the mutual information, ``null_draws``
    shuffled copies for the spectral z-scores, learned masks over ``circuit_params`` searched on
    ``search_per_class`` training images per class (drawn by ``search_seed``) for ``mask_steps``
    Adam steps at ``mask_lr`` with a price ``mask_sparsity`` per kept entry;
    ``batch_size_eval`` images per forward pass.
    """

    preset_section: ClassVar[str | None] = None
    """The preset section that sets these settings (None: the top level)."""

    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    lambdas: tuple[float, ...] = (0.0, 1.0, 5.0)
    main_lambda: float = 5.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
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
    circuit_params: tuple[str, ...] = ()
    search_per_class: int = 20
    search_seed: int = 0
    mask_steps: int = 30
    mask_lr: float = 0.2
    mask_sparsity: float = 0.0001
    batch_size_eval: int = 1000

    def __post_init__(self) -> None:
        problems = Problems()
        self.check(problems)
        problems.raise_any()

    def put(self, name: str, value: Any) -> None:
        """Set a checked value on the frozen settings (only from :meth:`check`)."""
        object.__setattr__(self, name, value)

    def check(self, problems: Problems) -> None:
        """Check and normalise the shared fields, adding each problem to ``problems``; a family's
        settings extend this (call it first)."""
        me, put = type(self).__name__, self.put
        with problems.about("datasets"):
            names = check_list(f"{me}.datasets", self.datasets)
            for name in names:
                check_choice(f"{me}.datasets item", name, DATASETS)
            if not names:
                raise ValueError(f"{me}.datasets names no dataset: give one or more of {list(DATASETS)}")
            check_distinct(f"{me}.datasets", names, "a dataset")
            put("datasets", tuple(names))
        with problems.about("lambdas"):
            lams = [check_float(f"{me} lambda", v, 0.0, hint="lambdas are >= 0 (0 = unclustered)")
                    for v in check_list(f"{me}.lambdas", self.lambdas)]
            check_distinct(f"{me}.lambdas", lams)
            put("lambdas", tuple(sorted(lams)))
        with problems.about("main_lambda"):
            put("main_lambda", check_float(f"{me}.main_lambda", self.main_lambda, 0.0, strict_min=True,
                                           hint="the clustered models' lambda, > 0"))
        if problems.ok("lambdas", "main_lambda") and (0.0 not in self.lambdas or self.main_lambda not in self.lambdas):
            problems.add(f"the lambda grid {list(self.lambdas)} must hold 0 (the unclustered control) and "
                         f"main_lambda {self.main_lambda:g}: add them to the lambdas", "lambdas", "main_lambda")
        with problems.about("seeds"):
            put("seeds", check_seeds(f"{me}.seeds", check_list(f"{me}.seeds", self.seeds), SEED_MAX))
        for name in ("n_clusters", "epochs", "batch_size", "top_k", "selectivity_bins", "batch_size_eval",
                     "search_per_class"):
            with problems.about(name):
                put(name, check_int(f"{me}.{name}", getattr(self, name), 1))
        for name, hint in (("n_train", "the first n training images; 0 means all"),
                           ("n_test", "the first n test images; 0 means all"), ("mask_steps", ""),
                           ("search_seed", "")):
            with problems.about(name):
                put(name, check_int(f"{me}.{name}", getattr(self, name), 0, hint=hint))
        with problems.about("null_draws"):
            put("null_draws", check_int(f"{me}.null_draws", self.null_draws, 2,
                                        hint="at least 2 shuffled copies to estimate the null's spread"))
        for name in ("lr", "mask_lr"):
            with problems.about(name):
                put(name, check_float(f"{me}.{name}", getattr(self, name), 0.0, strict_min=True))
        with problems.about("mask_sparsity"):
            put("mask_sparsity", check_float(f"{me}.mask_sparsity", self.mask_sparsity, 0.0))
        with problems.about("optimizer"):
            check_choice(f"{me}.optimizer", self.optimizer, OPTIMIZERS)
        with problems.about("circuit_params"):
            params = tuple(check_list(f"{me}.circuit_params", self.circuit_params))
            if not params:
                raise ValueError(f"{me}.circuit_params needs at least one parameter to mask, e.g. ['fc1.weight']")
            known = self.maskable_params()
            bad = [p for p in params if p not in known]
            if bad or len(set(params)) != len(params):
                raise ValueError(f"{me}.circuit_params must name distinct parameters of the model {known}, "
                                 f"got {list(params)}")
            put("circuit_params", params)

    def maskable_params(self) -> list[str]:
        """The model's parameter names the circuit masks may act on (a family's settings say)."""
        raise NotImplementedError(f"{type(self).__name__} must say which parameters circuits may mask")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


C = TypeVar("C", bound=ClassifierSettings)


@dataclass
class Prepared:
    """What the training and the analyses of one dataset share: the unit clusters (traced once on
    the CPU) and the class-balanced training images the circuits are searched on."""

    clusters: UnitClusters
    search: Tensor


# --- the views of a model, cut where a measurement starts -----------------------------------------

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


Cuts = dict[str, tuple[nn.Sequential, Tensor]]
"""Module name -> (the view from that module on, the inputs carried up to it)."""


def cuts(view: nn.Sequential, x: Tensor, layers: Sequence[str], batch_size: int = 1000) -> Cuts:
    """For each module of ``layers`` (names of the view's modules): the view from that module on,
    and ``x`` carried up to its input, computed once in forward order (each stretch of the network
    runs once). ``rest(inputs) == view(x)`` for every entry."""
    names = list(view._modules)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise ValueError(f"cannot cut the model at {unknown}: its view's modules are {names}")
    out: Cuts = {}
    start, h = 0, x
    for layer in sorted(set(layers), key=names.index):
        i = names.index(layer)
        h = forward_in_batches(view[start:i], h, batch_size) if i > start else h
        start = i
        out[layer] = (view[i:], h)  # type: ignore[assignment]
    return out


def earliest(view: nn.Sequential, params: Sequence[str]) -> str:
    """The first module of ``view`` (in forward order) that owns one of ``params``."""
    owners = {p.split(".")[0] for p in params}
    return next(n for n in view._modules if n in owners)


def layer_cs(model: nn.Module, clusters: UnitClusters) -> dict[str, float]:
    """C of each clustered layer's weight under its unit-cluster partition (``C_<layer>``)."""
    modules = dict(model.named_modules())
    out = {}
    with torch.no_grad():
        for name, part in clusters.partitions(model).items():
            w = modules[name].weight
            out[f"C_{name}"] = float(layer_clusterability(w, part.mask(w.device, w.dtype)))
    return out


def majority_accuracy(y: Tensor, n_classes: int) -> float:
    """Accuracy of the constant classifier that always answers the most frequent class of ``y``."""
    return float(torch.bincount(y.cpu(), minlength=n_classes).max()) / len(y)


# --- 2.-5. the analyses of one model -----------------------------------------------------------------

def _ablation(res: AblationResult) -> dict[str, Any]:
    """An ablation's lists plus its clusters in order of importance (lowest OFF accuracy first)."""
    d = res.to_dict()
    d["order"] = order_by_importance(res.off_acc)
    return d


def semanticity_analysis(at: Cuts, clusters: UnitClusters, y: Tensor, settings: ClassifierSettings,
                         n_classes: int) -> dict[str, Any]:
    """Label semanticity, selectivity and MI of each clustered layer's units (post-ReLU; a conv
    channel by its spatial mean), and selectivity / MI of their clusters, on the inputs carried
    to each layer (``at``: :func:`cuts` at the clustered layers), labels ``y`` (N,)."""
    out: dict[str, Any] = {}
    for layer in clusters.layers:
        rest, feats = at[layer]
        kw = dict(n_classes=n_classes, reduce="mean", post=torch.relu, batch_size=settings.batch_size_eval)
        sem = am.label_semanticity(rest, layer, feats, y, k=settings.top_k, **kw)
        sel = am.unit_selectivity(rest, layer, feats, y, n_bins=settings.selectivity_bins, **kw)
        csel = am.layer_cluster_selectivity(rest, feats, y, clusters.groups[layer], layer,
                                            n_bins=settings.selectivity_bins, **kw)
        out[layer] = {"semanticity": sem.score, "distinct_hist": list(sem.histogram),
                      "reduce": sem.reduce, "post": sem.post,
                      "selectivity": sel.selectivity, "mi": sel.mi, "mean_selectivity": sel.mean_selectivity,
                      "mean_mi": sel.mean_mi, "label_entropy": sel.label_entropy, "dead_share": sel.dead_share,
                      "live_selectivity": sel.live_selectivity,
                      "cluster_selectivity": csel.selectivity, "cluster_mi": csel.mi, "cluster_profile": csel.profile}
    return out


def ablation_analysis(at: Cuts, clusters: UnitClusters, y: Tensor, settings: ClassifierSettings,
                      n_classes: int) -> dict[str, Any]:
    """Each cluster OFF and only it ON on each clustered layer's units (their outputs set to 0),
    overall and class-wise accuracy; ``at`` as in :func:`semanticity_analysis`."""
    return {layer: _ablation(am.ablate(at[layer][0], clusters.groups[layer], layer, at[layer][1], y, n_classes,
                                       batch_size=settings.batch_size_eval))
            for layer in clusters.layers}


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


def circuit_analysis(view: nn.Sequential, search_x: Tensor, search_y: Tensor, test_x: Tensor, test_y: Tensor,
                     settings: ClassifierSettings, n_classes: int, seed: int, at: Cuts | None = None
                     ) -> dict[str, Any]:
    """Per-label learned-mask circuits over ``settings.circuit_params`` (margin objective), searched
    on ``search_x, search_y`` and judged on ``test_x, test_y``; beside each, a random circuit of the
    same size per parameter. Per label: size, c-vs-rest agreements, share of inputs called c.

    The masks act on the view from the first module that owns a masked parameter on, fed with the
    inputs carried up to it (``at``: :func:`cuts` on ``test_x``, computed when not given or when
    it lacks that module); the unmasked layers before it are the same for every mask.
    """
    first = earliest(view, settings.circuit_params)
    if at is None or first not in at:
        at = cuts(view, test_x, [first], settings.batch_size_eval)
    rest, tx = at[first]
    sx = cuts(view, search_x, [first], settings.batch_size_eval)[first][1]
    found = am.mask_circuits(rest, list(settings.circuit_params), sx, search_y, objective="margin",
                             sparsity=settings.mask_sparsity, steps=settings.mask_steps, lr=settings.mask_lr)
    params = dict(rest.named_parameters())
    labels: list[dict[str, Any]] = []
    for c in found:
        f = am.faithfulness(rest, c, tx, test_y, n_classes)
        r = am.faithfulness(rest, random_circuit(c, params, seed * 1000 + int(c.label)), tx, test_y, n_classes)
        labels.append({"label": c.label, "size": c.size, "size_per_param": c.size_per_layer,
                       "final_loss": c.final_loss, "full_loss": c.full_loss,
                       "faithfulness": f.to_dict(), "random": r.to_dict()})
    total = sum(int(params[p].numel()) for p in settings.circuit_params)
    return {"params": list(settings.circuit_params), "n_entries": total, "objective": "margin", "ablation": "zero",
            "labels": labels}


def spectral_analysis(model: nn.Module, layers: Sequence[str], k: int, n_draws: int, seed: int) -> dict[str, Any]:
    """Spectral co-clusters of each layer's connection matrix (a conv layer's by channel norms)
    against ``n_draws`` shuffled copies (:func:`modclust.analysis.any_model.spectral_null`)."""
    out = {}
    for layer in layers:
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
    """The scalars of one trained model's analyses (:meth:`ClassifierStudy.analyse`)."""
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


UNTRAINED_KEYS = ("sem", "sel", "sel_live", "dead", "mi")
"""The scalars (per clustered layer) summarised over the untrained networks too (the paper reads
them beside the trained ones)."""


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


# --- the study -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerWords:
    """How the paper names one clustered layer: its word in macro names (``"Conv"``), its units
    (``"channels"``) and one cluster of it (``"conv2 channel"``, as in "one conv2 channel cluster")."""

    macro: str
    units: str
    cluster: str


class ClassifierStudy(Study[C, Dataset, Prepared]):
    """An image classifier's study (see the module doc): a family says what its model is
    (:meth:`build`), which layers are clustered (:attr:`clustered_layers`) and how to view the
    model as a cuttable ``nn.Sequential`` (:meth:`view`); everything else is shared.

    Its data is one :class:`~modclust.core.data.Dataset` of flat images (N, features), as
    :func:`modclust.experiments.grid.load_data` gives them.
    """

    clustered_layers: ClassVar[tuple[str, ...]]
    """The layers that carry the clusterability loss and whose units are ablated and measured."""

    macro_prefix: ClassVar[str]
    """The first word of every macro of the family's paper section (letters only, e.g. ``"Cnn"``)."""

    layer_words: ClassVar[dict[str, LayerWords]]
    """How the paper names each clustered layer (:class:`LayerWords`), in the order of :attr:`clustered_layers`."""

    @abstractmethod
    def build(self, seed: int, n_classes: int) -> nn.Module:
        """The seed's untrained model for ``n_classes`` classes (flat images in)."""

    @abstractmethod
    def view(self, model: nn.Module) -> nn.Sequential:
        """A cuttable view of ``model``: its own modules (the clustered layers among them, under their
        names) in forward order, computing ``model(x)``."""

    def setup_values(self) -> dict[str, int | tuple[int, int] | None]:
        """The family's own setup numbers the section states, by macro word (after the prefix): an
        int, a block shape (rows, columns), or None for blocks of unequal sizes (default: none)."""
        return {}

    @property
    def record_metrics(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("test_acc", *(f"C_{layer}" for layer in self.clustered_layers), "C_clustered")

    @property
    def layers_label(self) -> str:
        """The ``layers`` field of every record (what :func:`~modclust.experiments.grid.paired_difference` groups by)."""
        return "+".join(self.clustered_layers)

    def maker(self, n_classes: int) -> Callable[[int], nn.Module]:
        """``seed -> self.build(seed, n_classes)``."""
        return lambda seed: self.build(seed, n_classes)

    def unit_clusters(self, model: nn.Module, example: Tensor) -> UnitClusters:
        """k equal clusters of the clustered layers' units, consistent through the model, traced on
        ``example`` (N, features)."""
        return UnitClusters.equal(model, list(self.clustered_layers), self.settings.n_clusters,
                                  example_input=example[:2])

    def prepare(self, data: Dataset) -> Prepared:
        if data.train_x.ndim != 2:
            raise ValueError(f"the {self.name} study takes flat images (N, features) as load_data gives them, got "
                             f"{tuple(data.train_x.shape)}")
        s = self.settings
        clusters = self.unit_clusters(self.build(s.seeds[0], data.n_classes), data.train_x[:2].cpu())  # on the CPU
        search = balanced_indices(data.train_y, s.search_per_class, seed=s.search_seed, n_classes=data.n_classes)
        return Prepared(clusters, search.to(data.train_x.device))

    def load_data(self, name: str, device: str | torch.device = "cpu") -> Dataset:
        """Dataset ``name`` on ``device``, cut to the settings' first ``n_train`` and ``n_test`` images
        (0: all), flat, as the study trains and measures on it."""
        s = self.settings
        return load_data(name, device, s.n_train or None, s.n_test or None)

    def train(self, data: Dataset, prepared: Prepared, runs: Sequence[tuple[float, int]]) -> list[Trained]:
        """The runs as one vectorised ensemble, with the loss on the clustered layers' unit-cluster partitions."""
        s, clusters = self.settings, prepared.clusters
        make = self.maker(data.n_classes)
        parts = clusters.partitions(make(s.seeds[0]))
        cfg = ModuleConfig(epochs=s.epochs, lr=s.lr, batch_size=s.batch_size, optimizer=s.optimizer,
                           clustered={f"{n}.weight": p for n, p in parts.items()}, n_clusters=s.n_clusters,
                           eval_batch_size=s.batch_size_eval)
        members = train_ensemble(make, [seed for _, seed in runs], (data.train_x, data.train_y, data.test_x,
                                                                    data.test_y), cfg, lams=[lam for lam, _ in runs])
        out = []
        for run in members:
            cs = layer_cs(run.model, clusters)
            record = {"dataset": data.name, "layers": self.layers_label, "lam": float(run.lam), "seed": int(run.seed),
                      "test_acc": float(run.test_acc), "test_acc_per_epoch": list(run.history["test_acc"]), **cs,
                      "C_clustered": sum(cs.values()) / len(cs)}
            out.append(Trained(run.model, record))
        return out

    def fresh(self, data: Dataset, prepared: Prepared, seed: int) -> nn.Module:
        """The seed's untrained model on the data's device (:meth:`build`)."""
        return self.build(seed, data.n_classes).to(data.train_x.device)

    def analyse(self, data: Dataset, prepared: Prepared, run: Trained) -> dict[str, Any]:
        """Every analysis (2.-5.) of one trained model; circuits are searched on training images."""
        s, clusters = self.settings, prepared.clusters
        x, y, n = data.test_x, data.test_y, data.n_classes
        view = self.view(run.model)
        at = cuts(view, x, [*self.clustered_layers, earliest(view, s.circuit_params)], s.batch_size_eval)
        search = prepared.search
        return {"ablation": ablation_analysis(at, clusters, y, s, n),
                "semanticity": semanticity_analysis(at, clusters, y, s, n),
                "circuits": circuit_analysis(view, data.train_x[search], data.train_y[search], x, y, s, n, run.seed, at),
                "spectral": spectral_analysis(run.model, self.clustered_layers, s.n_clusters, s.null_draws, run.seed)}

    def row(self, analysis: dict[str, Any]) -> dict[str, Any]:
        return analysis_row(analysis)

    def untrained(self, data: Dataset, prepared: Prepared, seed: int) -> dict[str, Any]:
        """The seed's untrained network: accuracy, C and semanticity (the trivial baseline)."""
        s, clusters = self.settings, prepared.clusters
        net = self.build(seed, data.n_classes).to(data.train_x.device)
        view = self.view(net)
        sem = semanticity_analysis(cuts(view, data.test_x, self.clustered_layers, s.batch_size_eval), clusters,
                                   data.test_y, s, data.n_classes)
        acc = float(forward_in_batches(net, data.test_x, s.batch_size_eval).argmax(-1).eq(data.test_y).double().mean())
        return {"seed": int(seed), "lam": 0.0, "test_acc": acc, **layer_cs(net, clusters), **semanticity_row(sem),
                "semanticity": sem}

    def context(self, data: Dataset, prepared: Prepared) -> dict[str, Any]:
        n = data.n_classes
        counts = torch.bincount(data.train_y.cpu(), minlength=n)
        return {"dataset": data.name, "classes": list(data.spec.classes), "n_train": len(data.train_x),
                "n_test": len(data.test_x), "train_class_share": [float(c) / len(data.train_y) for c in counts.tolist()],
                "majority_acc": majority_accuracy(data.test_y, n), "clusters": prepared.clusters.to_dict(),
                "search": {"split": "train", "per_class": self.settings.search_per_class,
                           "seed": self.settings.search_seed}}

    def summarise(self, result: StudyResult) -> dict[str, Any]:
        """The trade-off table, the paired accuracy differences, the untrained networks' values,
        ranked ablations and per-label circuits."""
        by_lam = {lam: [r for r in result.runs if r["lam"] == lam] for lam in self.analysed_lambdas}
        untrained_keys = ("test_acc", *(f"C_{layer}" for layer in self.clustered_layers),
                          *(f"{key}_{layer}" for layer in self.clustered_layers for key in UNTRAINED_KEYS))
        return {
            "tradeoff": summary_table(result.records, metrics=list(self.record_metrics), by=("lam",)),
            "paired_accuracy": paired_difference(result.records, "test_acc", baseline_lam=0.0),
            "untrained": {key: mean_ci(list(seed_values(result.untrained, key).values())).to_dict()
                          for key in untrained_keys},
            "ablation": {f"{lam:g}": {layer: ranked_layer_ablation(runs, layer) for layer in self.clustered_layers}
                         for lam, runs in by_lam.items()},
            "circuits": {f"{lam:g}": per_label_circuits(runs) for lam, runs in by_lam.items()},
        }


def dataset_folder(root: str | os.PathLike[str], name: str) -> Path:
    """Where the models of dataset ``name`` trained elsewhere are saved under ``root``: the subfolder of its name."""
    return Path(root) / name


def run_datasets(study: ClassifierStudy[Any], datasets: Sequence[Dataset], progress: bool = True,
                 trained: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The study on each dataset on its own (:func:`~modclust.experiments.study.run_study`):
    ``{"datasets": [names], "study": settings, "results": {name: StudyResult.to_dict()}}``.

    ``trained``: a folder of models trained elsewhere, those of each dataset in the subfolder of
    its name (:func:`dataset_folder`, :func:`~modclust.experiments.study.save_trained`): analysed
    instead of trained."""
    if not datasets:
        raise ValueError(f"give at least one dataset, e.g. {study.settings.preset_section or ''} datasets: "
                         "['mnist', 'fashion-mnist']")
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"each dataset once, got {names}")
    results = {d.name: run_study(study, d, progress, None if trained is None else dataset_folder(trained, d.name)).to_dict()
               for d in track(datasets, desc=f"{study.name} study: datasets", disable=not progress)}
    return {"datasets": names, "study": study.settings.to_dict(), "results": results}
