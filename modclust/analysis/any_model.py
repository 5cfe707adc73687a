"""The analyses of a trained model, for any ``nn.Module``, given its unit clusters.

The other analysis modules take the seed's bias-free :class:`~modclust.core.model.MLP` and its
``fc1 .. fcL`` weights. Here the same measurements work on any model, through forward hooks
on its named modules (no per-model rewrite):

- :func:`unit_activations`: a module's output as ``[N, units]``;
- :func:`ablate_units` / :func:`ablate_partition` / :func:`ablate_clusters`: cluster OFF / ON,
  overall and class-wise, with the result of :func:`modclust.analysis.ablation.ablate`;
- :func:`layer_top_inputs`, :func:`layer_cluster_top_inputs`: max-activating inputs;
- :func:`layer_semanticity`, :func:`layer_selectivity`, :func:`layer_cluster_selectivity`:
  label semanticity, class selectivity and mutual information, with the math of
  :mod:`modclust.analysis.semanticity` and :mod:`modclust.analysis.selectivity`;
- :func:`connection_matrix`, :func:`layer_spectral_partition`, :func:`layer_spectral_null`:
  the spectral co-clustering baseline and its shuffled null for Linear, conv and any 2-D weight;
- :func:`param_greedy_circuit`, :func:`param_mask_circuit`, :func:`masked_faithfulness`: greedy
  and learned-mask circuits over any chosen parameters, with the objectives of
  :mod:`modclust.analysis.objectives`.

Unit clusters are a plain mapping ``{module name: k clusters of unit indices}`` (names as in
``model.named_modules()``), e.g. ``{"conv1": [[0, 1, 2], [3, 4, 5]]}``.

Units. A module's *units* lie along one dim of its output: dim 1 (channels) for conv and batch
norm modules, the last dim (features) for every other module: a Linear's output features,
the hidden neurons of a transformer MLP (``[N, seq, hidden]``). ``unit_dim`` overrides it, e.g.
``unit_dim=1`` to read the channels of a ReLU module that follows a conv. Activations with
more dims than ``[N, units]`` (a conv's ``[N, C, H, W]``, a transformer's ``[N, seq, hidden]``)
are *reduced* over every other dim (space, token positions) by their mean or their max
(``reduce``); results record which (``"none"`` when the output already was ``[N, units]``).

The seed's MLP. :class:`MLP`'s forward multiplies its weights directly and never calls its
``fc`` modules, so a hook on them would never fire. Every function here therefore reads an MLP
through :func:`mlp_as_sequential`, a Sequential view sharing its Linear modules (same names,
same parameters, same function), with its ReLUs as modules ``relu1 .. relu{L-1}``. On the MLP
the functions here give the same numbers as the MLP-only ones (tested in
``tests/test_analysis_modules.py``): its hidden layers' post-ReLU activations are
``layer=..., post=torch.relu`` (or ``layer="relu2"`` for fc2).

Ablation, as the seed's. :func:`modclust.analysis.ablation.ablate` zeroes the rows U_c and the
columns V_c of a layer's weight (the block's output units and everything feeding them from
V_c). The hook equivalent zeroes the layer's output units U_c (forward hook) *and* its input
units V_c (forward pre-hook on the same layer, so only V_c's connections into this layer are
cut, exactly the columns); :func:`ablate_partition` does both and gives ``ablate``'s numbers on
the MLP. :func:`ablate_units` with output clusters alone zeroes the rows only.

Every function runs the model in eval mode (and restores each module's mode afterwards), so
dropout and batch norm do not make an analysis random.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from modclust.analysis.ablation import AblationResult, classwise_correct
from modclust.analysis.circuits import Circuit, Faithfulness, check_threshold, decision_faithfulness
from modclust.analysis.masks import MaskCircuit, check_mask_options, learn_mask
from modclust.analysis.objectives import ObjectiveKind, check_objective, objective_from_logits, objective_kind
from modclust.analysis.selectivity import (ClusterSelectivity, UnitSelectivity, cluster_selectivity, live_split,
                                           cluster_top_examples, label_entropy, mutual_information,
                                           selectivity_index)
from modclust.analysis.semanticity import Semanticity, semanticity_from_top_k, top_k_indices
from modclust.analysis.spectral import SpectralNull, spectral_null, spectral_partition
from modclust.core.checks import check_choice, check_int
from modclust.core.model import MLP
from modclust.core.partition import Partition
from modclust.core.progress import bar as progress_bar

Clusters = Sequence[Sequence[int]]
"""k clusters of one module's unit indices: ``clusters[c]`` lists cluster c's units."""
ClusterMap = Mapping[str, Clusters]
"""Module name (as in ``model.named_modules()``) -> its k clusters of output-unit indices
(e.g. ``modclust.core.units.UnitClusters.groups``)."""
Post = Callable[[Tensor], Tensor]

REDUCTIONS = ("mean", "max")
# modules whose units (channels) lie along dim 1 of their input and output
CHANNEL_FIRST: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)


# --- models, modules and hooks ----------------------------------------------------------------

def mlp_as_sequential(mlp: MLP) -> nn.Sequential:
    """A hookable view of the seed's MLP: ``flatten, fc1, relu1, fc2, relu2, ..., fcL``.

    The view holds the MLP's own Linear modules (not copies), so it has the same parameters
    under the same names (``fc2.weight``), hooks on its ``fc2`` are hooks on ``mlp.fc2``, and
    it computes the MLP's function: ``view(x) == mlp(x)`` for x of shape (N, ...) flattening to
    (N, widths[0]).
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict([("flatten", nn.Flatten(1))])
    names = mlp.layer_names
    for i, name in enumerate(names):
        layers[name] = getattr(mlp, name)
        if i < len(names) - 1:
            layers[f"relu{i + 1}"] = nn.ReLU()
    return nn.Sequential(layers)


def hookable(model: nn.Module) -> nn.Module:
    """``model`` itself, or for the seed's MLP (whose forward calls no submodule) its
    :func:`mlp_as_sequential` view."""
    if isinstance(model, MLP) and type(model).forward is MLP.forward:
        return mlp_as_sequential(model)
    return model


def find_module(model: nn.Module, layer: str) -> nn.Module:
    """The submodule named ``layer`` in ``model.named_modules()``; a ValueError lists the names."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (a str), got {layer!r}")
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        shown = names if len(names) <= 40 else names[:40] + [f"... ({len(names) - 40} more)"]
        raise ValueError(f"unknown module {layer!r}: this model's modules are {shown}")
    return modules[layer]


def units_dim(module: nn.Module, unit_dim: int | None = None) -> int:
    """The dim of ``module``'s output (and input) that holds its units: ``unit_dim`` if given,
    else 1 for conv and batch-norm modules (channels) and -1 (features) for the rest."""
    if unit_dim is not None:
        return check_int("unit_dim", unit_dim, hint="the dim of the module's output holding its units")
    return 1 if isinstance(module, CHANNEL_FIRST) else -1


def _dim(dim: int, t: Tensor, what: str) -> int:
    """``dim`` as a non-negative dim of ``t``, which must not be the batch dim 0."""
    if t.ndim < 2:
        raise ValueError(f"{what} has shape {tuple(t.shape)}: analyses need (N, ...) with units along a dim >= 1")
    d = dim % t.ndim if -t.ndim <= dim < t.ndim else None
    if d is None or d == 0:
        raise ValueError(f"unit dim {dim} of {what} of shape {tuple(t.shape)} must be one of dims 1 .. {t.ndim - 1} "
                         "(dim 0 is the batch)")
    return d


def reduce_units(out: Tensor, dim: int, reduce: str = "mean") -> tuple[Tensor, str]:
    """``out`` (N, ..., units along ``dim``, ...) as (N, units), and the reduction it took.

    Every dim but the batch and the units (space, token positions) is reduced by its mean or
    max; an output that is (N, units) already is returned as is, with reduction ``"none"``.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    d = _dim(dim, out, "the module's output")
    moved = out.movedim(d, -1)
    flat = moved.reshape(moved.shape[0], -1, moved.shape[-1])  # (N, positions, units)
    if out.ndim == 2:
        return flat[:, 0], "none"
    return (flat.mean(1) if reduce == "mean" else flat.amax(1)), reduce


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block; every module's own mode is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _device(model: nn.Module, x: Tensor) -> torch.device:
    for p in model.parameters():
        return p.device
    return x.device


def _batches(x: Tensor, batch_size: int | None) -> Iterator[Tensor]:
    if batch_size is None:
        yield x
        return
    batch_size = check_int("batch_size", batch_size, 1, hint="inputs per forward pass; None for all at once")
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


def _not_called(layer: str) -> RuntimeError:
    return RuntimeError(
        f"module {layer!r} was not called by the model's forward, so its hooks never fired: a model whose "
        "forward uses a module's weights directly (as the seed's MLP does, which is why it is read through "
        "mlp_as_sequential) cannot be read or ablated with hooks; name a module the forward calls")


def _post_name(post: Post | None) -> str:
    if post is None:
        return "none"
    return str(getattr(post, "__name__", None) or type(post).__name__)


def _check_xy(x: Tensor, y: Tensor) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need inputs and labels of one nonzero length, got {len(x)} inputs and {len(y)} labels")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"the inputs hold {int((~torch.isfinite(x)).sum())} non-finite values (nan or inf): "
                         "clean or drop those inputs first")


# --- activations --------------------------------------------------------------------------------

@torch.no_grad()
def _activations(model: nn.Module, x: Tensor, layer: str, reduce: str, post: Post | None,
                 unit_dim: int | None, batch_size: int | None) -> tuple[Tensor, str]:
    check_choice("reduce", reduce, REDUCTIONS)
    model = hookable(model)
    module = find_module(model, layer)
    dim = units_dim(module, unit_dim)
    device = _device(model, x)
    store: list[tuple[Tensor, str]] = []

    def hook(mod: nn.Module, args: tuple[object, ...], out: object) -> None:
        if not isinstance(out, Tensor):
            raise TypeError(f"module {layer!r} returns {type(out).__name__}, not a tensor: name a module whose "
                            "output is one tensor")
        # read now: a later in-place module (ReLU(inplace=True)) would overwrite the output
        acts, how = reduce_units(out if post is None else post(out), dim, reduce)
        store.append((acts.clone() if how == "none" else acts, how))

    parts: list[Tensor] = []
    how = "none"
    handle = module.register_forward_hook(hook)
    try:
        with eval_mode(model):
            for xb in _batches(x, batch_size):
                store.clear()
                model(xb.to(device))
                if not store:
                    raise _not_called(layer)
                if len(store) > 1:
                    raise ValueError(f"module {layer!r} is called {len(store)} times per forward pass: its units' "
                                     "activation is ambiguous; name a module called once")
                acts, how = store[0]
                parts.append(acts)
    finally:
        handle.remove()
    return torch.cat(parts), how


def unit_activations(model: nn.Module, x: Tensor, layer: str, reduce: str = "mean", post: Post | None = None,
                     unit_dim: int | None = None, batch_size: int | None = None) -> Tensor:
    """(N, units) activations of module ``layer``'s units on inputs ``x`` (N, ...), by a forward hook.

    ``post`` (e.g. ``torch.relu`` for a Linear or conv followed by a ReLU) is applied to the
    module's output first. A conv's output (N, C, H, W) is then reduced over space to (N, C)
    by its spatial mean (``reduce="mean"``) or max (``"max"``); a transformer MLP's
    (N, seq, hidden) over token positions to (N, hidden). An (N, units) output is returned as
    is. On the seed's MLP, ``unit_activations(mlp, x, "fc2", post=torch.relu)`` equals
    :func:`modclust.analysis.semanticity.layer_activations` (post-ReLU fc2) exactly.
    """
    return _activations(model, x, layer, reduce, post, unit_dim, batch_size)[0]


# --- cluster ablation -----------------------------------------------------------------------------

def _check_clusters(name: str, clusters: Clusters, n_units: int) -> list[list[int]]:
    """Clusters as lists of ints: at least one, none empty, indices in 0 .. n_units - 1, disjoint."""
    if isinstance(clusters, (str, bytes)) or not isinstance(clusters, Sequence) or not clusters:
        raise ValueError(f"{name} must be a non-empty sequence of clusters of unit indices, got {clusters!r}")
    out: list[list[int]] = []
    seen: dict[int, int] = {}
    for c, members in enumerate(clusters):
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or len(members) == 0:
            raise ValueError(f"{name}[{c}] must be a non-empty sequence of unit indices, got {members!r}")
        units = [check_int(f"{name}[{c}] unit", u, 0, n_units - 1, hint=f"this module has {n_units} units")
                 for u in members]
        for u in units:
            if u in seen:
                raise ValueError(f"unit {u} is in {name}[{seen[u]}] and {name}[{c}]: clusters must be disjoint")
            seen[u] = c
        out.append(units)
    return out


@torch.no_grad()
def _unit_counts(model: nn.Module, module: nn.Module, layer: str, dim: int, x: Tensor) -> tuple[int, int | None]:
    """How many units ``module``'s output and its first input have along ``dim`` (one probe input)."""
    sizes: dict[str, int | None] = {}

    def hook(mod: nn.Module, args: tuple[object, ...], out: object) -> None:
        if not isinstance(out, Tensor):
            raise TypeError(f"module {layer!r} returns {type(out).__name__}, not a tensor")
        sizes["out"] = out.shape[_dim(dim, out, f"the output of {layer!r}")]
        first = args[0] if args else None
        sizes["in"] = first.shape[_dim(dim, first, f"the input of {layer!r}")] \
            if isinstance(first, Tensor) and first.ndim >= 2 else None

    handle = module.register_forward_hook(hook)
    try:
        with eval_mode(model):
            model(x[:1].to(_device(model, x)))
    finally:
        handle.remove()
    if "out" not in sizes:
        raise _not_called(layer)
    return int(sizes["out"]), sizes["in"]  # type: ignore[arg-type]


@torch.no_grad()
def _predict_ablated(model: nn.Module, module: nn.Module, layer: str, dim: int, x: Tensor, out_units: list[int],
                     in_units: list[int], batch_size: int | None) -> Tensor:
    """(N,) argmax of the model with ``out_units`` of the module's output and ``in_units`` of its
    first input set to exactly 0."""
    device = _device(model, x)
    calls = [0]
    handles = []
    if out_units:
        idx_out = torch.tensor(out_units, dtype=torch.long, device=device)

        def zero_out(mod: nn.Module, args: tuple[object, ...], out: Tensor) -> Tensor:
            calls[0] += 1
            return out.index_fill(_dim(dim, out, f"the output of {layer!r}"), idx_out.to(out.device), 0)

        handles.append(module.register_forward_hook(zero_out))
    if in_units:
        idx_in = torch.tensor(in_units, dtype=torch.long, device=device)

        def zero_in(mod: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            calls[0] += 1
            first = args[0].index_fill(_dim(dim, args[0], f"the input of {layer!r}"), idx_in.to(args[0].device), 0)
            return (first, *args[1:])

        handles.append(module.register_forward_pre_hook(zero_in))
    preds = []
    try:
        with eval_mode(model):
            for xb in _batches(x, batch_size):
                preds.append(model(xb.to(device)).argmax(-1))
    finally:
        for h in handles:
            h.remove()
    if handles and calls[0] == 0:
        raise _not_called(layer)
    return torch.cat(preds)


def ablate_units(model: nn.Module, clusters: Clusters, layer: str, x: Tensor, y: Tensor, n_classes: int = 10,
                 input_clusters: Clusters | None = None, unit_dim: int | None = None,
                 batch_size: int | None = None) -> AblationResult:
    """Turn each cluster of module ``layer``'s units OFF and ON; accuracy overall and per class.

    ``clusters`` (k lists of the module's output units: Linear features, conv channels, ...)
    are ablated with a forward hook that sets the units' outputs to exactly 0: OFF zeroes
    cluster c, ON zeroes every cluster but c (units in no cluster always stay). The model's
    decision is ``model(x).argmax(-1)`` for inputs ``x`` (N, ...) and labels ``y`` (N,).

    ``input_clusters`` (k lists of the module's *input* units, dim 1 of a conv's input, the
    last dim of a Linear's) are zeroed too, by a forward pre-hook, with the same OFF / ON rule.
    On a bias-free Linear, zeroing output units U_c and input units V_c is exactly zeroing rows
    U_c and columns V_c of its weight, which is what :func:`modclust.analysis.ablation.ablate`
    does to a partition's block; see :func:`ablate_partition`. (With a bias, zeroing an output
    also removes its bias, which zeroing the weight's row would not; for a conv the same holds
    with channels in place of rows and columns.)

    The result has the fields of ``ablate``'s: ``off_acc[c]``, ``on_acc[c]``, their class-wise
    lists (``n_classes`` each), and the full model's. One forward pass over ``x`` per ablated copy
    (1 + 2k passes), in chunks of ``batch_size`` inputs (None: all at once).
    """
    _check_xy(x, y)
    n_classes = check_int("n_classes", n_classes, 1)
    model = hookable(model)
    module = find_module(model, layer)
    dim = units_dim(module, unit_dim)
    n_out, n_in = _unit_counts(model, module, layer, dim, x)
    outs = _check_clusters("clusters", clusters, n_out)
    ins: list[list[int]] | None = None
    if input_clusters is not None:
        if n_in is None:
            raise ValueError(f"module {layer!r} takes no tensor input with units along dim {dim}: "
                             "input_clusters cannot be ablated")
        ins = _check_clusters("input_clusters", input_clusters, n_in)
        if len(ins) != len(outs):
            raise ValueError(f"input_clusters has {len(ins)} clusters and clusters {len(outs)}: give one input "
                             "set per cluster (a partition's cols with its rows)")
    k = len(outs)
    offs = [[]] + [[c] for c in range(k)] + [[o for o in range(k) if o != c] for c in range(k)]
    preds = []
    for off in offs:
        out_units = sorted(u for c in off for u in outs[c])
        in_units = [] if ins is None else sorted(u for c in off for u in ins[c])
        preds.append(_predict_ablated(model, module, layer, dim, x, out_units, in_units, batch_size))
    pred = torch.stack(preds).to(y.device)  # (1 + 2k, N)
    acc = (pred == y).double().mean(-1).tolist()
    cw = classwise_correct(pred, y, n_classes).tolist()
    return AblationResult(layer, acc[0], cw[0], acc[1:1 + k], cw[1:1 + k], acc[1 + k:], cw[1 + k:])


def ablate_partition(model: nn.Module, partition: Partition, layer: str, x: Tensor, y: Tensor,
                     n_classes: int = 10, unit_dim: int | None = None,
                     batch_size: int | None = None) -> AblationResult:
    """Cluster OFF / ON of a weight partition of ``layer``: rows U_c are its output units,
    columns V_c its input units (for a conv: output and input channels).

    On the seed's MLP this equals ``ablate(mlp, partition, x, y, layer, n_classes)``, which
    zeroes rows U_c and columns V_c of the layer's weight (the same decisions, so the same
    numbers; tested on fc1, fc2 and fc3 in float32 and float64).
    """
    model = hookable(model)
    module = find_module(model, layer)
    n_out, n_in = _unit_counts(model, module, layer, units_dim(module, unit_dim), x)
    if partition.shape != (n_out, n_in):
        raise ValueError(f"partition of shape {partition.shape} does not match module {layer!r} with {n_out} "
                         f"output and {n_in} input units: build the partition for this layer")
    return ablate_units(model, partition.rows, layer, x, y, n_classes, input_clusters=partition.cols,
                        unit_dim=unit_dim, batch_size=batch_size)


def ablate_clusters(model: nn.Module, clusters: ClusterMap, x: Tensor, y: Tensor, n_classes: int = 10,
                    batch_size: int | None = None) -> dict[str, AblationResult]:
    """:func:`ablate_units` for every module of a unit-cluster mapping ``{name: clusters}``."""
    return {layer: ablate_units(model, cl, layer, x, y, n_classes, batch_size=batch_size)
            for layer, cl in clusters.items()}


# --- max-activating inputs, semanticity, selectivity ------------------------------------------------

@dataclass
class LayerSemanticity(Semanticity):
    """:class:`~modclust.analysis.semanticity.Semanticity` of any module's units, with how their
    activations were read: ``reduce`` ("mean", "max" or "none") and ``post`` (the function
    applied to the module's output first, e.g. "relu"; "none")."""

    reduce: str = "none"
    post: str = "none"


@dataclass
class LayerSelectivity(UnitSelectivity):
    """:class:`~modclust.analysis.selectivity.UnitSelectivity` of any module's units, with
    ``reduce`` and ``post`` as in :class:`LayerSemanticity`."""

    reduce: str = "none"
    post: str = "none"


@dataclass
class LayerClusterSelectivity(ClusterSelectivity):
    """:class:`~modclust.analysis.selectivity.ClusterSelectivity` of one module's unit clusters,
    with the module's name, ``reduce`` and ``post`` as in :class:`LayerSemanticity`."""

    layer: str = ""
    reduce: str = "none"
    post: str = "none"


def layer_top_inputs(model: nn.Module, x: Tensor, layer: str, k: int = 16, reduce: str = "mean",
                     post: Post | None = None, unit_dim: int | None = None,
                     batch_size: int | None = None) -> Tensor:
    """(units, k) indices into ``x`` of each unit's k most activating inputs, highest first.

    Ties go to the later input, as in :func:`modclust.analysis.semanticity.top_k_indices`;
    activations as in :func:`unit_activations`.
    """
    return top_k_indices(unit_activations(model, x, layer, reduce, post, unit_dim, batch_size), k)


def layer_cluster_top_inputs(model: nn.Module, x: Tensor, clusters: Clusters, layer: str, k: int = 16,
                             reduce: str = "mean", post: Post | None = None, unit_dim: int | None = None,
                             batch_size: int | None = None) -> Tensor:
    """(clusters, k) indices of the inputs that most activate each cluster (its units' mean
    activation), as :func:`modclust.analysis.selectivity.cluster_top_examples`."""
    return cluster_top_examples(unit_activations(model, x, layer, reduce, post, unit_dim, batch_size), clusters, k)


def layer_semanticity(model: nn.Module, x: Tensor, y: Tensor, layer: str, k: int = 50, n_classes: int = 10,
                      reduce: str = "mean", post: Post | None = None, unit_dim: int | None = None,
                      batch_size: int | None = None) -> LayerSemanticity:
    """Label semanticity of module ``layer``'s units over inputs ``x`` (N, ...), labels ``y`` (N,).

    The math of :func:`modclust.analysis.semanticity.label_semanticity` (distinct labels among
    each unit's top-k inputs) on activations read by a hook (:func:`unit_activations`). On the
    seed's MLP, ``layer_semanticity(mlp, x, y, "fc2", post=torch.relu)`` has the same fields as
    ``label_semanticity(mlp, x, y, "fc2")``.
    """
    _check_xy(x, y)
    n_classes = check_int("n_classes", n_classes, 1)
    acts, how = _activations(model, x, layer, reduce, post, unit_dim, batch_size)
    sem = semanticity_from_top_k(top_k_indices(acts, k), y.to(acts.device), n_classes, layer)
    return LayerSemanticity(**asdict(sem), reduce=how, post=_post_name(post))


def layer_selectivity(model: nn.Module, x: Tensor, y: Tensor, layer: str, n_classes: int = 10, n_bins: int = 10,
                      reduce: str = "mean", post: Post | None = None, unit_dim: int | None = None,
                      batch_size: int | None = None) -> LayerSelectivity:
    """Class selectivity and mutual information (bits) of each of module ``layer``'s units.

    The math of :func:`modclust.analysis.selectivity.unit_selectivity` on activations read by
    a hook; selectivity is meant for non-negative activations (``post=torch.relu`` on a layer
    followed by a ReLU, or the ReLU module itself). On the seed's MLP,
    ``layer_selectivity(mlp, x, y, "fc2", post=torch.relu)`` has the fields of
    ``unit_selectivity(mlp, x, y, "fc2")``.
    """
    _check_xy(x, y)
    n_classes = check_int("n_classes", n_classes, 1)
    n_bins = check_int("n_bins", n_bins, 1)
    acts, how = _activations(model, x, layer, reduce, post, unit_dim, batch_size)
    acts, y = acts.cpu(), y.cpu()
    sel = selectivity_index(acts, y, n_classes)
    mi = mutual_information(acts, y, n_classes, n_bins)
    return LayerSelectivity(layer, sel.tolist(), mi.tolist(), float(sel.mean()), float(mi.mean()),
                            label_entropy(y, n_classes), n_bins, *live_split(acts, sel), reduce=how,
                            post=_post_name(post))


def layer_cluster_selectivity(model: nn.Module, x: Tensor, y: Tensor, clusters: Clusters, layer: str,
                              n_classes: int = 10, n_bins: int = 10, reduce: str = "mean",
                              post: Post | None = None, unit_dim: int | None = None,
                              batch_size: int | None = None) -> LayerClusterSelectivity:
    """Class profile, selectivity and MI of each cluster of module ``layer``'s units (and the mean
    of its units' own), as :func:`modclust.analysis.selectivity.cluster_selectivity` on the
    activations read by a hook."""
    _check_xy(x, y)
    acts, how = _activations(model, x, layer, reduce, post, unit_dim, batch_size)
    res = cluster_selectivity(acts.cpu(), y.cpu(), clusters, n_classes, n_bins)
    return LayerClusterSelectivity(**asdict(res), layer=layer, reduce=how, post=_post_name(post))


# --- spectral co-clustering baseline -----------------------------------------------------------------

def _grouped(norms: Tensor, groups: int) -> Tensor:
    """(a, b/groups) per-group connections as the full block-diagonal (a, b) matrix."""
    a, bg = norms.shape
    if groups == 1:
        return norms
    ag = a // groups
    full = norms.new_zeros(a, bg * groups)
    for j in range(groups):
        full[j * ag:(j + 1) * ag, j * bg:(j + 1) * bg] = norms[j * ag:(j + 1) * ag]
    return full


def connection_matrix(layer: nn.Module | Tensor) -> Tensor:
    """(out, in) connection strengths of a layer (a module with a ``weight``) or a weight tensor.

    A 2-D weight (a Linear's (out, in), any other matrix) is returned as is (detached): the
    spectral functions take |W|, so on a Linear everything equals today's call on its weight.
    A conv kernel (out, in/groups, *kernel) becomes the matrix of each kernel's L2 norm,

        M[o, i] = sqrt(sum_{kh, kw} W[o, i, kh, kw]^2),

    the square root of the per-entry kernel squared norms. Why the root and not the squared
    norms: (1) C of M under a channel partition, sum_in M^2 / sum M^2, is then exactly the
    conv's own clusterability, the share of its squared kernel weights inside the blocks; (2)
    for a 1x1 kernel M = |W|, the edge weights co-clustering uses for a Linear, so a 1x1 conv
    and the Linear with its weights get the same clusters, C, n-cut and null (tested); squared
    norms would weigh strong connections quadratically more than the Linear case does. A grouped
    conv's matrix is block-diagonal (zero between groups); a transposed conv's weight
    (in, out/groups, *kernel) is read as (out, in).
    """
    if isinstance(layer, Tensor):
        w, groups, transposed = layer, 1, False
    else:
        w = getattr(layer, "weight", None)
        if not isinstance(w, Tensor):
            raise ValueError(f"{type(layer).__name__} has no weight tensor: give a layer with a weight, or the weight")
        groups = int(getattr(layer, "groups", 1))
        transposed = bool(getattr(layer, "transposed", False))
    w = w.detach()
    if w.ndim < 2:
        raise ValueError(f"a connection matrix needs a weight of 2 or more dims (out, in, ...), got shape "
                         f"{tuple(w.shape)}")
    if w.ndim == 2 and groups == 1 and not transposed:
        return w
    norms = w.pow(2).flatten(2).sum(-1).sqrt() if w.ndim > 2 else w.abs()
    full = _grouped(norms, groups)
    return full.T.contiguous() if transposed else full


def layer_spectral_partition(model: nn.Module, layer: str, k: int, seed: int = 0) -> Partition:
    """Spectral co-clustering of module ``layer``'s :func:`connection_matrix` into (at most) k
    clusters: rows are its output units, columns its input units (a conv's channels).

    On a Linear it is ``spectral_partition(layer.weight, k, seed)``; its rows are the output
    units' clusters to pass to :func:`ablate_units` (``partition.rows``) or, with the columns,
    to :func:`ablate_partition`.
    """
    return spectral_partition(connection_matrix(find_module(model, layer)), k, seed)


def layer_spectral_null(model: nn.Module, layer: str, k: int, n_draws: int = 20, seed: int = 0) -> SpectralNull:
    """:func:`modclust.analysis.spectral.spectral_null` of module ``layer``'s connection matrix.

    The null shuffles the entries of that (out, in) matrix (for a conv, the kernels' norms, so
    it keeps the distribution of channel-to-channel strengths). On a Linear it equals
    ``spectral_null(layer.weight, k, n_draws, seed)``.
    """
    return spectral_null(connection_matrix(find_module(model, layer)), k, n_draws, seed)


# --- learned-mask circuits on any parameters -------------------------------------------------------------

def param_names(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Parameter names of ``model``, checked; a module's name stands for its ``weight``
    (``"fc2"`` -> ``"fc2.weight"``), so an MLP circuit's layer names work too."""
    params = dict(model.named_parameters())
    out = []
    for n in names:
        if n in params:
            out.append(n)
        elif f"{n}.weight" in params:
            out.append(f"{n}.weight")
        else:
            shown = list(params) if len(params) <= 40 else list(params)[:40] + ["..."]
            raise ValueError(f"unknown parameter {n!r}: this model's parameters are {shown}")
    if len(set(out)) != len(out):
        raise ValueError(f"parameters named twice: {list(names)}")
    return out


def masked_logits(model: nn.Module, kept: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """The model's output on ``x`` with each named parameter multiplied by its mask in ``kept``
    (bool, or a soft gate in [0, 1], of the parameter's shape), by ``torch.func.functional_call``
    in eval mode; the model's own parameters are untouched. Output as the model's, e.g. (N, C)."""
    names = param_names(model, list(kept))
    params = dict(model.named_parameters())
    subs = {n: p.detach() for n, p in params.items()}
    for n, m in zip(names, kept.values()):
        subs[n] = params[n].detach() * m.to(device=params[n].device, dtype=params[n].dtype)
    with eval_mode(model):
        return functional_call(model, subs, (x.to(_device(model, x)),))


def param_mask_circuit(model: nn.Module, x: Tensor, label: int | None, params: Sequence[str],
                       objective: str | ObjectiveKind = "margin", sparsity: float = 1e-4, steps: int = 300,
                       lr: float = 0.1,
                       init_logit: float = 3.0, threshold: float = 0.5, log_every: int = 10,
                       progress: bool = False) -> MaskCircuit:
    """A learned mask over the chosen parameters of any model that keeps ``objective`` low.

    :func:`modclust.analysis.masks.mask_circuit` for any ``nn.Module``: each entry p of the
    parameters ``params`` (names, or module names for their weights) is multiplied by
    sigmoid(l), the logits l (all starting at ``init_logit``) are trained with full-batch Adam
    on ``objective(masked model on x) + sparsity * sum sigmoid(l)`` for ``steps`` steps, then
    cut at ``threshold``. The masked model runs by ``torch.func.functional_call`` with the
    masked parameters, so no model is rewritten. A masked-out entry is zeroed (zero ablation
    only). ``x`` (N, ...) are the inputs the objective reads: for the default faithful
    "margin", inputs of every class; judge the circuit on held-out inputs of every class with
    :func:`masked_faithfulness`.

    ``kept`` is keyed by parameter name. On the seed's MLP, ``params=["fc2"]`` gives the kept
    mask, losses and history of ``mask_circuit(mlp, x, label, ["fc2"], objective=...)``.
    """
    sparsity, lr, init_logit, steps, log_every, threshold = check_mask_options(sparsity, lr, init_logit, steps,
                                                                               log_every, threshold)
    check_objective(objective)
    if isinstance(params, str) or not list(params):
        raise ValueError(f"give a sequence of at least one parameter name to mask, got {params!r}")
    names = param_names(model, params)
    all_params = dict(model.named_parameters())
    fixed = {n: p.detach() for n, p in all_params.items()}
    x = x.to(_device(model, x))
    with eval_mode(model):
        with torch.no_grad():
            full_logits = model(x)
        obj = objective_from_logits(objective, full_logits, x, label)

        def masked_loss(gates: Sequence[Tensor]) -> Tensor:
            subs = dict(fixed)
            for n, g in zip(names, gates):
                subs[n] = fixed[n] * g.to(fixed[n].dtype)
            return obj.loss(functional_call(model, subs, (obj.x,)))

        gates, soft, final, history = learn_mask(masked_loss, [fixed[n] for n in names], sparsity, steps, lr,
                                                 init_logit, threshold, log_every, progress, f"mask label {obj.label}")
        kept = dict(zip(names, gates))
        full = obj.loss(full_logits).item()
    return MaskCircuit(label=obj.label, baseline="mask", threshold=threshold, layers=names,
                       kept={n: k.cpu() for n, k in kept.items()}, full_loss=full, final_loss=final,
                       objective=obj.name, ablation="zero", means=None, sparsity=sparsity, steps=steps, lr=lr,
                       soft_loss=soft, history=history)


def _per_label(find: Callable[..., Circuit], model: nn.Module, x: Tensor, y: Tensor, params: Sequence[str],
               labels: Sequence[int] | None, objective: str | ObjectiveKind,
               kwargs: Mapping[str, object]) -> list[Circuit]:
    """``find(model, inputs, label, params, objective=..., **kwargs)`` for each label the objective
    makes circuits for (:meth:`ObjectiveKind.labels`), on the inputs it reads."""
    kind = objective_kind(objective)
    return [find(model, kind.inputs(x, y, c), c, params, objective=kind, **kwargs) for c in kind.labels(y, labels)]


def param_mask_circuits(model: nn.Module, x: Tensor, y: Tensor, params: Sequence[str],
                        labels: Sequence[int] | None = None, objective: str | ObjectiveKind = "margin",
                        **kwargs: object) -> list[MaskCircuit]:
    """:func:`param_mask_circuit` for each label (default: every label in ``y``), on the inputs its
    objective reads (all of ``x`` but for "seed"); "kl" gives one circuit, of label None."""
    return _per_label(param_mask_circuit, model, x, y, params, labels, objective, kwargs)  # type: ignore[return-value]


@torch.no_grad()
def param_greedy_circuit(model: nn.Module, x: Tensor, label: int | None, params: Sequence[str],
                         objective: str | ObjectiveKind = "margin", threshold: float = 1e-4,
                         baseline: str = "current",
                         progress: bool = False) -> Circuit:
    """Greedy pruning over the chosen parameters of any model: the plain loop of
    :func:`modclust.analysis.circuits.greedy_circuit`, by ``torch.func.functional_call``.

    The entries of ``params`` (names, or module names for their weights) are visited in the
    order given, each row-major; each is zeroed and stays zeroed if ``objective`` (on the masked
    model's logits for ``x`` (N, ...)) rises by less than ``threshold`` over the reference
    (``baseline``: "current", the seed's rule, or "full"), else it is restored. Zero ablation
    only. An entry that is already zero is not kept and costs nothing (zeroing it changes
    nothing). Every other entry costs one forward pass of the whole model on ``x``, so keep ``x``
    and the searched parameters small (a head of a few thousand weights, a few hundred
    inputs); the seed's MLP has a far faster exact pruner,
    :func:`modclust.analysis.circuits.greedy_circuits_fast`.

    On the seed's MLP, ``params=["fc3"]`` gives exactly the kept mask and losses of
    ``greedy_circuit(mlp, x, label, ["fc3"], objective=...)``. Judge the circuit on held-out
    inputs of every class with :func:`masked_faithfulness`.
    """
    if baseline not in ("current", "full"):
        raise ValueError(f"baseline must be 'current' (the seed's) or 'full' (the follow-up's), got {baseline!r}")
    threshold = check_threshold(threshold)
    check_objective(objective)
    if isinstance(params, str) or not list(params):
        raise ValueError(f"give a sequence of at least one parameter name to prune, got {params!r}")
    names = param_names(model, params)
    subs = {n: p.detach() for n, p in model.named_parameters()}
    for n in names:
        subs[n] = subs[n].clone()
    x = x.to(_device(model, x))
    with eval_mode(model):
        full_logits = model(x)
        obj = objective_from_logits(objective, full_logits, x, label)

        def loss() -> float:
            return obj.loss(functional_call(model, subs, (obj.x,))).item()

        full = obj.loss(full_logits).item()
        ref = full
        bar = progress_bar(sum(subs[n].numel() for n in names), f"prune label {obj.label}", disable=not progress)
        for n in names:
            flat = subs[n].view(-1)
            for j in range(flat.numel()):
                old = flat[j].item()
                if old == 0.0:
                    continue
                flat[j] = 0.0
                new = loss()
                if new - ref < threshold:
                    if baseline == "current":
                        ref = new
                else:
                    flat[j] = old
            bar.update(flat.numel())
        bar.close()
        final = loss()
    return Circuit(obj.label, baseline, threshold, names, {n: (subs[n] != 0).cpu() for n in names}, full, final,
                   obj.name, "zero")


def param_greedy_circuits(model: nn.Module, x: Tensor, y: Tensor, params: Sequence[str],
                          labels: Sequence[int] | None = None, objective: str | ObjectiveKind = "margin",
                          **kwargs: object) -> list[Circuit]:
    """:func:`param_greedy_circuit` for each label (default: every label in ``y``), on the inputs its
    objective reads (all of ``x`` but for "seed"); "kl" gives one circuit, of label None."""
    return _per_label(param_greedy_circuit, model, x, y, params, labels, objective, kwargs)


@torch.no_grad()
def masked_faithfulness(model: nn.Module, circuit: Circuit, x: Tensor, y: Tensor,
                        n_classes: int | None = None) -> Faithfulness:
    """How the model cut down to ``circuit`` (its ``kept`` masks by parameter or module name)
    behaves on inputs ``x`` (N, ...) of every class with labels ``y`` (N,).

    The fields of :func:`modclust.analysis.circuits.faithfulness`: accuracy (overall, per
    class), top-1 agreement with the full model, and for a label's circuit its c-vs-rest
    decisions' agreement with the full model's on all inputs, on those the full model calls c
    and on the rest. An "always c" circuit gets ``agreement_rest`` 0 and ``balanced_agreement``
    0.5 (chance). Judge on inputs the circuit was not searched on.
    """
    _check_xy(x, y)
    with eval_mode(model):
        full = model(x.to(_device(model, x)))
        logits = masked_logits(model, circuit.kept, x)
    full_pred = full.argmax(-1).to(y.device)
    pred = logits.argmax(-1).to(y.device)
    n_classes = int(full.shape[-1]) if n_classes is None else n_classes
    return decision_faithfulness(pred, full_pred, y, circuit.label, circuit.objective, n_classes)
