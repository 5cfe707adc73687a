"""The analyses of a trained model, for any ``nn.Module``: one public function per analysis.

Each analysis is one function that takes the model first, then what it ablates or measures,
then the data, and works on any model through forward hooks on its named modules (no
per-model rewrite). For the seed's bias-free :class:`~modclust.core.model.MLP` on its
``fc1 .. fcL`` layers a small dispatcher (:func:`mlp_fast_path`) sends the call to the MLP's
fast kernel instead (a batched ablation, the batched exact greedy pruner, ...), which gives
the same numbers (tested in ``tests/test_any_model.py``):

- :func:`ablate`: cluster OFF / ON, overall and class-wise (MLP kernel:
  :func:`modclust.analysis.ablation.ablate_mlp`);
- :func:`label_semanticity`, :func:`unit_selectivity`: label semanticity, class selectivity
  and mutual information of a module's units, with the math of
  :mod:`modclust.analysis.semanticity` and :mod:`modclust.analysis.selectivity` (MLP:
  :meth:`~modclust.core.model.MLP.activations`, one pass without hooks);
- :func:`spectral_null`: spectral co-clustering of a layer's :func:`connection_matrix` against
  its shuffled null, for Linear, conv and any 2-D weight (on a Linear it is the weight itself);
- :func:`greedy_circuits`, :func:`mask_circuits`, :func:`faithfulness`: greedy and
  learned-mask circuits over any chosen parameters, with the objectives of
  :mod:`modclust.analysis.objectives`, and how faithful a circuit is (MLP kernels:
  :func:`modclust.analysis.circuits.greedy_circuits_fast`,
  :func:`modclust.analysis.masks.mask_circuits_mlp`,
  :func:`modclust.analysis.circuits.faithfulness_mlp`, which also take mean ablation).

Helpers for any model: :func:`unit_activations` (a module's output as ``[N, units]``),
:func:`layer_top_inputs`, :func:`layer_cluster_top_inputs` (max-activating inputs),
:func:`layer_cluster_selectivity`, :func:`connection_matrix`, :func:`layer_spectral_partition`.

A module's unit clusters are k lists of its unit indices, e.g. ``[[0, 1, 2], [3, 4, 5]]`` for
``"conv1"`` (modules named as in ``model.named_modules()``; ``UnitClusters.groups[name]``).

Units. A module's *units* lie along one dim of its output: dim 1 (channels) for conv and batch
norm modules, the last dim (features) for every other module: a Linear's output features,
the hidden neurons of a transformer MLP (``[N, seq, hidden]``). ``unit_dim`` overrides it, e.g.
``unit_dim=1`` to read the channels of a ReLU module that follows a conv. Activations with
more dims than ``[N, units]`` (a conv's ``[N, C, H, W]``, a transformer's ``[N, seq, hidden]``)
are *reduced* over every other dim (space, token positions) by their mean or their max
(``reduce``); results record which (``"none"`` when the output already was ``[N, units]``).

The seed's MLP. Its forward calls its ``fc`` modules, so hooks on them fire, and its ReLUs are
functions (no modules). Its units are read as :meth:`~modclust.core.model.MLP.activations`
gives them: a hidden layer ``fcN``'s after its ReLU, the last layer's logits. With ``post``
and ``unit_dim`` left out that is what the functions here read on an MLP (results record
``post="relu"`` for a hidden layer); ``post=torch.relu`` on the hook path reads the same.

Ablation, as the seed's. :func:`ablate` of a :class:`~modclust.core.partition.Partition`
zeroes the rows U_c and the columns V_c of a layer's weight (the block's output units and
everything feeding them from V_c). The hook path zeroes the layer's output units U_c (forward
hook) *and* its input units V_c (forward pre-hook on the same layer, so only V_c's connections
into this layer are cut, exactly the columns): on the MLP the same decisions as the kernel's.
:func:`ablate` of plain clusters of output units zeroes the rows only.

Every function runs the model in eval mode (and restores each module's mode afterwards), so
dropout and batch norm do not make an analysis random.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from modclust.analysis.ablation import AblationResult, ablate_mlp, classwise_correct
from modclust.analysis.circuits import (Circuit, Faithfulness, check_threshold, check_tol, decision_faithfulness,
                                        faithfulness_mlp, greedy_circuits_fast)
from modclust.analysis.masks import MaskCircuit, check_mask_options, learn_mask, mask_circuits_mlp
from modclust.analysis.objectives import ObjectiveKind, check_objective, objective_from_logits, objective_kind
from modclust.analysis.selectivity import (ClusterSelectivity, UnitSelectivity, cluster_selectivity, live_split,
                                           cluster_top_examples, label_entropy, mutual_information,
                                           selectivity_index)
from modclust.analysis.semanticity import Semanticity, semanticity_from_top_k, top_k_indices
from modclust.analysis.spectral import SpectralNull, matrix_spectral_null, spectral_partition
from modclust.core.checks import check_choice, check_int
from modclust.core.model import MLP
from modclust.core.partition import Partition
from modclust.core.progress import bar as progress_bar

Clusters = Sequence[Sequence[int]]
"""k clusters of one module's unit indices: ``clusters[c]`` lists cluster c's units."""
Post = Callable[[Tensor], Tensor]

REDUCTIONS = ("mean", "max")
# modules whose units (channels) lie along dim 1 of their input and output
CHANNEL_FIRST: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)


# --- models, modules and hooks ----------------------------------------------------------------

def mlp_fast_path(model: nn.Module, layers: str | Sequence[str] | None) -> bool:
    """Whether an analysis of ``layers`` (one module name, several, or None for every layer) of
    ``model`` runs on the seed's MLP's fast kernels: ``model`` is an
    :class:`~modclust.core.model.MLP` with MLP's own forward, and every name is one of its layers
    ``fc1 .. fcL``. Otherwise the analysis takes the general path (hooks, ``functional_call``),
    which works on any model, the MLP included, with the same numbers."""
    if not isinstance(model, MLP) or type(model).forward is not MLP.forward:
        return False
    if layers is None:
        return True
    names = [layers] if isinstance(layers, str) else list(layers)
    return bool(names) and all(isinstance(n, str) and n in model.layer_names for n in names)


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
        "forward uses a module's weights directly cannot be read or ablated with hooks; name a module the "
        "forward calls")


def _post_name(post: Post | None) -> str:
    if post is None:
        return "none"
    return str(getattr(post, "__name__", None) or type(post).__name__)


def _check_xy(x: Tensor, y: Tensor) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need inputs and labels of one nonzero length, got {len(x)} inputs and {len(y)} labels")
    # a finite sum has no nan or inf among its terms (one pass, a fifth of the time of isfinite over
    # every input); a sum that overflows is checked input by input
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"the inputs hold {bad} non-finite values (nan or inf): clean or drop those inputs first")


# --- activations --------------------------------------------------------------------------------

@torch.no_grad()
def _activations(model: nn.Module, x: Tensor, layer: str, reduce: str, post: Post | None,
                 unit_dim: int | None, batch_size: int | None) -> tuple[Tensor, str, str]:
    """(N, units) activations, the reduction taken and the name of the function applied first.

    On the seed's MLP (``post`` and ``unit_dim`` left out) one pass of
    :meth:`~modclust.core.model.MLP.activations`: post-ReLU for a hidden layer, logits last.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    if post is None and unit_dim is None and mlp_fast_path(model, layer):
        mlp: MLP = model  # type: ignore[assignment]
        hidden = mlp.layer_index(layer) < len(mlp.layer_names) - 1
        with eval_mode(mlp):
            acts = mlp.activations(x.to(_device(mlp, x)))[layer]
        return acts, "none", "relu" if hidden else "none"
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
    return torch.cat(parts), how, _post_name(post)


def unit_activations(model: nn.Module, x: Tensor, layer: str, reduce: str = "mean", post: Post | None = None,
                     unit_dim: int | None = None, batch_size: int | None = None) -> Tensor:
    """(N, units) activations of module ``layer``'s units on inputs ``x`` (N, ...), read by a forward hook.

    ``post`` (e.g. ``torch.relu`` for a Linear or conv followed by a ReLU) is applied to the
    module's output first. A conv's output (N, C, H, W) is then reduced over space to (N, C)
    by its spatial mean (``reduce="mean"``) or max (``"max"``); a transformer MLP's
    (N, seq, hidden) over token positions to (N, hidden). An (N, units) output is returned as
    is. On the seed's MLP, ``unit_activations(mlp, x, "fc2")`` is fc2 after its ReLU (see the
    module doc), as :func:`modclust.analysis.semanticity.layer_activations` gives it, and
    ``post=torch.relu`` reads the same by a hook.
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


def ablate(model: nn.Module, clusters: Partition | Clusters, layer: str, x: Tensor, y: Tensor,
           n_classes: int = 10, unit_dim: int | None = None, batch_size: int | None = None) -> AblationResult:
    """Turn each cluster of module ``layer`` OFF and ON; accuracy overall and per class.

    ``clusters`` is either a :class:`~modclust.core.partition.Partition` of the layer's weight
    (rows U_c: its output units, columns V_c: its input units; for a conv, output and input
    channels) or k lists of the module's output units (Linear features, conv channels, ...).
    OFF ablates cluster c, ON every cluster but c (units in no cluster always stay); the model's
    decision is ``model(x).argmax(-1)`` for inputs ``x`` (N, ...) and labels ``y`` (N,).

    A partition is ablated by zeroing its rows U_c and columns V_c: on the seed's MLP (a
    partition of one of its ``fc`` layers) by the batched kernel
    :func:`modclust.analysis.ablation.ablate_mlp`, which zeroes the weight's entries, one forward
    pass for all 2k copies; on any other model with a forward hook that sets the output units
    U_c to exactly 0 and a forward pre-hook that sets the input units V_c to 0. On a bias-free
    Linear the two are the same (tested on fc1, fc2 and fc3 in float32 and float64). (With a bias,
    zeroing an output also removes its bias, which zeroing the weight's row would not.) Plain
    clusters of output units are zeroed by the forward hook alone (the weight's rows only).

    The result has ``off_acc[c]``, ``on_acc[c]``, their class-wise lists (``n_classes`` each), and
    the full model's. The hook path runs one forward pass over ``x`` per ablated copy (1 + 2k
    passes), in chunks of ``batch_size`` inputs (None: all at once).
    """
    _check_xy(x, y)
    n_classes = check_int("n_classes", n_classes, 1)
    if isinstance(clusters, Partition) and unit_dim is None and mlp_fast_path(model, layer):
        return ablate_mlp(model, clusters, x, y, layer, n_classes)  # type: ignore[arg-type]
    module = find_module(model, layer)
    dim = units_dim(module, unit_dim)
    n_out, n_in = _unit_counts(model, module, layer, dim, x)
    input_clusters: Clusters | None = None
    if isinstance(clusters, Partition):
        if clusters.shape != (n_out, n_in):
            raise ValueError(f"partition of shape {clusters.shape} does not match module {layer!r} with {n_out} "
                             f"output and {n_in} input units: build the partition for this layer")
        clusters, input_clusters = clusters.rows, clusters.cols
    outs = _check_clusters("clusters", clusters, n_out)
    ins: list[list[int]] | None = None
    if input_clusters is not None:  # n_in is known: the partition's shape matched it
        ins = _check_clusters("input_clusters", input_clusters, int(n_in))  # type: ignore[arg-type]
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


def label_semanticity(model: nn.Module, layer: str, x: Tensor, y: Tensor, k: int = 50, n_classes: int = 10,
                      reduce: str = "mean", post: Post | None = None, unit_dim: int | None = None,
                      batch_size: int | None = None) -> LayerSemanticity:
    """Label semanticity of module ``layer``'s units over inputs ``x`` (N, ...), labels ``y`` (N,).

    The seed's "rough sense of interpretability": ``1 - mean_u(u / n_classes)`` with u the number
    of distinct labels among unit u's top-k inputs (:mod:`modclust.analysis.semanticity`), on
    activations read as :func:`unit_activations` reads them. On the seed's MLP a hidden layer's
    units are read after their ReLU, in one pass without hooks (see the module doc).
    """
    _check_xy(x, y)
    n_classes = check_int("n_classes", n_classes, 1)
    acts, how, post_name = _activations(model, x, layer, reduce, post, unit_dim, batch_size)
    sem = semanticity_from_top_k(top_k_indices(acts, k), y.to(acts.device), n_classes, layer)
    return LayerSemanticity(**asdict(sem), reduce=how, post=post_name)


def unit_selectivity(model: nn.Module, layer: str, x: Tensor, y: Tensor, n_classes: int = 10, n_bins: int = 10,
                     reduce: str = "mean", post: Post | None = None, unit_dim: int | None = None,
                     batch_size: int | None = None) -> LayerSelectivity:
    """Class selectivity and mutual information (bits) of each of module ``layer``'s units.

    The math of :mod:`modclust.analysis.selectivity` over every input ``x`` (N, ...) with labels
    ``y`` (N,). Selectivity is meant for non-negative activations: on the seed's MLP a hidden
    layer is read after its ReLU (see the module doc); on another model pass
    ``post=torch.relu`` for a layer followed by a ReLU, or name the ReLU module itself. Units
    that never fire are kept (selectivity 0, MI 0): dropping them would flatter a layer.
    """
    _check_xy(x, y)
    n_classes = check_int("n_classes", n_classes, 1)
    n_bins = check_int("n_bins", n_bins, 1)
    acts, how, post_name = _activations(model, x, layer, reduce, post, unit_dim, batch_size)
    acts, y = acts.cpu(), y.cpu()
    sel = selectivity_index(acts, y, n_classes)
    mi = mutual_information(acts, y, n_classes, n_bins)
    return LayerSelectivity(layer, sel.tolist(), mi.tolist(), float(sel.mean()), float(mi.mean()),
                            label_entropy(y, n_classes), n_bins, *live_split(acts, sel), reduce=how, post=post_name)


def layer_cluster_selectivity(model: nn.Module, x: Tensor, y: Tensor, clusters: Clusters, layer: str,
                              n_classes: int = 10, n_bins: int = 10, reduce: str = "mean",
                              post: Post | None = None, unit_dim: int | None = None,
                              batch_size: int | None = None) -> LayerClusterSelectivity:
    """Class profile, selectivity and MI of each cluster of module ``layer``'s units (and the mean
    of its units' own), as :func:`modclust.analysis.selectivity.cluster_selectivity` on the
    activations read by a hook."""
    _check_xy(x, y)
    acts, how, post_name = _activations(model, x, layer, reduce, post, unit_dim, batch_size)
    res = cluster_selectivity(acts.cpu(), y.cpu(), clusters, n_classes, n_bins)
    return LayerClusterSelectivity(**asdict(res), layer=layer, reduce=how, post=post_name)


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
    units' clusters to pass to :func:`ablate` (``partition.rows``) or, the partition itself, its
    blocks.
    """
    return spectral_partition(connection_matrix(find_module(model, layer)), k, seed)


def spectral_null(model: nn.Module, layer: str, k: int, n_draws: int = 20, seed: int = 0) -> SpectralNull:
    """Spectral co-clustering of module ``layer``'s :func:`connection_matrix` into (at most) k
    clusters, scored against ``n_draws`` reclustered entry-shuffled copies: z-scores and p-values
    of C and n-cut (:func:`modclust.analysis.spectral.matrix_spectral_null`).

    For a conv the shuffled matrix is that of the kernels' norms, so the null keeps the
    distribution of channel-to-channel strengths. On a Linear (the seed's MLP's ``fc`` layers)
    the matrix is the weight itself. The same seed gives the same clusters, draws and scores.
    """
    return matrix_spectral_null(connection_matrix(find_module(model, layer)), k, n_draws, seed)


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


def _param_mask_circuit(model: nn.Module, x: Tensor, label: int | None, params: Sequence[str],
                        objective: str | ObjectiveKind = "margin", sparsity: float = 1e-4, steps: int = 300,
                        lr: float = 0.1,
                       init_logit: float = 3.0, threshold: float = 0.5, log_every: int = 10,
                       progress: bool = False) -> MaskCircuit:
    """:func:`mask_circuits`' general path for one label: a learned mask over the chosen
    parameters of any model, zero ablation only.

    Each entry p of the parameters ``params`` (names, or module names for their weights) is
    multiplied by sigmoid(l), the logits l are trained by
    :func:`modclust.analysis.masks.learn_mask` on ``objective(masked model on x)``, then cut at
    ``threshold``. The masked model runs by ``torch.func.functional_call`` with the masked
    parameters, so no model is rewritten. ``kept`` is keyed by parameter name.
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


@torch.no_grad()
def _param_greedy_circuit(model: nn.Module, x: Tensor, label: int | None, params: Sequence[str],
                          objective: str | ObjectiveKind = "margin", threshold: float = 1e-4,
                          baseline: str = "current",
                         progress: bool = False) -> Circuit:
    """:func:`greedy_circuits`' general path for one label: the plain greedy loop of
    :func:`modclust.analysis.circuits.greedy_circuit` over the chosen parameters of any model, by
    ``torch.func.functional_call``, zero ablation only.

    The entries of ``params`` (names, or module names for their weights) are visited in the
    order given, each row-major; each is zeroed and stays zeroed if ``objective`` (on the masked
    model's logits for ``x`` (N, ...)) rises by less than ``threshold`` over the reference
    (``baseline``: "current", the seed's rule, or "full"), else it is restored. An entry that is
    already zero is not kept and costs nothing (zeroing it changes nothing). Every other entry
    costs one forward pass of the whole model on ``x``, so keep ``x`` and the searched parameters
    small (a head of a few thousand weights, a few hundred inputs).
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


# --- circuits: one function each, the MLP's fast kernels where they apply ----------------------------

def _check_params(params: Sequence[str] | None, what: str) -> None:
    if isinstance(params, str) or (params is not None and not list(params)):
        raise ValueError(f"give a sequence of at least one parameter or layer name to {what} (None: every layer of "
                         f"the seed's MLP), got {params!r}")


def greedy_circuits(model: nn.Module, params: Sequence[str] | None, x: Tensor, y: Tensor,
                    labels: Sequence[int] | None = None, objective: str | ObjectiveKind = "margin",
                    threshold: float = 1e-4,
                    baseline: str = "current", ablation: str = "zero", progress: bool = False,
                    tol: float | None = None) -> list[Circuit]:
    """Greedy per-label circuits over the chosen parameters of ``model``, searched on ``x`` (N, ...), ``y`` (N,).

    For each label (default: every label in ``y``; a label-free objective, "kl", gives one
    circuit of label None) the entries of ``params`` (parameter names, or module names for their
    weights; None: every layer of the seed's MLP) are visited in the order given, each
    row-major; each is removed and stays removed if ``objective`` (on the inputs it reads:
    the label's images for "seed", all of ``x`` otherwise,
    :meth:`modclust.analysis.objectives.ObjectiveKind.inputs`) rises by less than ``threshold`` over
    the reference (``baseline``: "current", the seed's rule, or "full"), else it is restored.

    On the seed's MLP with layer names (``["fc2", "fc3"]``) this runs the batched exact pruner
    :func:`modclust.analysis.circuits.greedy_circuits_fast` (the same circuits as the plain loop,
    faster; ``tol`` is its re-check band; ``ablation="mean"`` is available there only) and
    ``kept`` is keyed by layer name. Otherwise (any model, or parameter names such as
    ``"fc2.weight"``) it runs the plain loop by ``torch.func.functional_call``, one forward pass
    of the whole model per entry, zero ablation only, and ``kept`` is keyed by parameter name.
    Judge the circuits on held-out inputs of every class with :func:`faithfulness`.
    """
    _check_params(params, "prune")
    if mlp_fast_path(model, params):
        mlp: MLP = model  # type: ignore[assignment]
        found = greedy_circuits_fast(mlp, x, y, labels=labels, layers=params, threshold=threshold, baseline=baseline,
                                     progress=progress, tol=tol, objective=objective, ablation=ablation)[0]
        return list(found.values())
    if params is None:
        raise ValueError("params=None (every layer) is for the seed's MLP only: name the parameters to prune")
    if ablation != "zero":
        raise ValueError(f"ablation {ablation!r} is for the seed's MLP's fc layers only; on this model or these "
                         "parameters circuits use zero ablation")
    check_tol(tol)
    kind = objective_kind(objective)
    return [_param_greedy_circuit(model, kind.inputs(x, y, c), c, params, objective=kind, threshold=threshold,
                                  baseline=baseline, progress=progress)
            for c in kind.labels(y, labels)]


def mask_circuits(model: nn.Module, params: Sequence[str] | None, x: Tensor, y: Tensor,
                  labels: Sequence[int] | None = None, objective: str | ObjectiveKind = "margin",
                  sparsity: float = 1e-4,
                  steps: int = 300, lr: float = 0.1, init_logit: float = 3.0, threshold: float = 0.5,
                  log_every: int = 10, ablation: str = "zero", progress: bool = False) -> list[MaskCircuit]:
    """Learned-mask per-label circuits over the chosen parameters of ``model``, searched on ``x``, ``y``.

    For each label (as :func:`greedy_circuits`, on the inputs its objective reads) each entry p
    of ``params`` (parameter names, or module names for their weights; None: every layer of the
    seed's MLP) is multiplied by sigmoid(l); the logits l (all starting at ``init_logit``) are
    trained with full-batch Adam on ``objective(masked model) + sparsity * sum sigmoid(l)`` for
    ``steps`` steps, then cut at ``threshold`` (:mod:`modclust.analysis.masks`).

    On the seed's MLP with layer names this runs :func:`modclust.analysis.masks.mask_circuits_mlp`
    (which also takes ``ablation="mean"``; ``kept`` by layer name); otherwise the masked model
    runs by ``torch.func.functional_call`` (zero ablation; ``kept`` by parameter name), with the
    same masks, losses and history on the MLP. Judge the circuits with :func:`faithfulness`.
    """
    _check_params(params, "mask")
    if mlp_fast_path(model, params):
        mlp: MLP = model  # type: ignore[assignment]
        return mask_circuits_mlp(mlp, x, y, labels, objective, layers=params, sparsity=sparsity, steps=steps, lr=lr,
                                 init_logit=init_logit, threshold=threshold, log_every=log_every, progress=progress,
                                 ablation=ablation)
    if params is None:
        raise ValueError("params=None (every layer) is for the seed's MLP only: name the parameters to mask")
    if ablation != "zero":
        raise ValueError(f"ablation {ablation!r} is for the seed's MLP's fc layers only; on this model or these "
                         "parameters circuits use zero ablation")
    kind = objective_kind(objective)
    return [_param_mask_circuit(model, kind.inputs(x, y, c), c, params, objective=kind, sparsity=sparsity, steps=steps,
                                lr=lr, init_logit=init_logit, threshold=threshold, log_every=log_every,
                                progress=progress)
            for c in kind.labels(y, labels)]


@torch.no_grad()
def faithfulness(model: nn.Module, circuit: Circuit, x: Tensor, y: Tensor,
                 n_classes: int | None = None) -> Faithfulness:
    """How the model cut down to ``circuit`` (its ``kept`` masks by parameter or module name)
    behaves on inputs ``x`` (N, ...) of every class with labels ``y`` (N,).

    The fields of :class:`modclust.analysis.circuits.Faithfulness`: accuracy (overall, per
    class), top-1 agreement with the full model, and for a label's circuit its c-vs-rest
    decisions' agreement with the full model's on all inputs, on those the full model calls c
    and on the rest. An "always c" circuit gets ``agreement_rest`` 0 and ``balanced_agreement``
    0.5 (chance). Judge on inputs the circuit was not searched on.

    On the seed's MLP, for a circuit of its ``fc`` layers, this runs
    :func:`modclust.analysis.circuits.faithfulness_mlp` (zero or mean ablation, as the circuit
    was searched); otherwise the cut-down model runs by ``torch.func.functional_call`` with the
    masked parameters (zero ablation), the same numbers on the MLP.
    """
    _check_xy(x, y)
    if mlp_fast_path(model, list(circuit.kept)):
        return faithfulness_mlp(model, circuit, x, y, n_classes)  # type: ignore[arg-type]
    if circuit.ablation != "zero":
        raise ValueError(f"a circuit searched under {circuit.ablation!r} ablation can be judged only on the seed's "
                         "MLP it was searched on, keyed by its fc layer names (the path that applies its means)")
    with eval_mode(model):
        full = model(x.to(_device(model, x)))
        logits = masked_logits(model, circuit.kept, x)
    full_pred = full.argmax(-1).to(y.device)
    pred = logits.argmax(-1).to(y.device)
    n_classes = int(full.shape[-1]) if n_classes is None else n_classes
    return decision_faithfulness(pred, full_pred, y, circuit.label, circuit.objective, n_classes)
