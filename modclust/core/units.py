"""Clusters of units, for any model: k sets of output units per layer, and the partitions they imply.

A *unit* is one output feature of an ``nn.Linear`` (a transformer MLP's hidden neurons are
``nn.Linear`` outputs too) or one output channel of an ``nn.Conv2d``. :class:`UnitClusters`
holds, per clustered layer (named as in ``model.named_modules()``), its k clusters of output
units::

    groups = {"fc1": ((0, 1, ..., 15), ..., (48, ..., 63)), "fc2": (...), ...}

and from it each clustered weight's row/column :class:`~modclust.core.partition.Partition`
follows, consistent through the network:

- rows (the weight's output units) are the layer's own clusters;
- columns (its input units) are the clusters of the clustered layer it reads: the output
  clusters of one layer are the input clusters of the next. When a ``Linear`` reads a
  ``Conv2d``'s output flattened from [C, H, W] to C * H * W features (``nn.Flatten`` on NCHW,
  channel-major), feature f belongs to channel f // (H * W) and so to that channel's cluster;
- a layer that reads no clustered layer (the first layer, reading pixels or embeddings, or a
  layer after an unclustered one) gets k equal contiguous blocks of its inputs, or the column
  clusters given in ``inputs``.

Cluster c of the rows is paired with cluster c of the columns, so every layer has the same k.
Every unit of a clustered layer (and every input unit of a layer reading no clustered layer)
lies in exactly one cluster.

Which layer reads which (the *wiring*) comes from one of three places, in this order:

1. ``wiring=``: a list of layer names in the order they read one another (a chain: each reads
   the one before it, the first reads the model's input), or a mapping ``{layer: the layer it
   reads, or None}``;
2. ``example_input=``: one forward pass of the model on it, whose autograd graph is traced
   (:func:`trace_wiring`). Layers are found by their weight tensors, not by module hooks, so a
   model whose forward uses the weights functionally is traced as well as one that calls its
   modules, and the graph between two layers shows whether an operation there moves units;
3. the seed's :class:`~modclust.core.model.MLP`, whose chain ``fc1 .. fcL`` is known.

The trace only accepts a layer whose input units are one clustered layer's units in place: a
layer that reads a sum, product or concatenation of several layers (a residual stream that a
clustered layer writes to, a gated MLP), or reads one through an operation that moves units
(a permute, transpose, concatenation, indexing, an unknown matrix product such as attention),
is an error that says to pass ``wiring`` or to leave the layer out. Elementwise operations
(activations, bias adds, masks), norms, pooling, dropout and flattening keep units in place.
The trace knows operations by their autograd node's name; a custom autograd function that
permutes features is not recognised, so check the wiring (``UnitClusters.reads``) of such a model.

Tensor shapes below: a Linear's weight is [out, in] and its units are the last dim of its
output [..., out]; a Conv2d's weight is [out, in, kh, kw] and its units are dim 1 of its output
[N, out, H, W]. Grouped convolutions (``groups > 1``) are refused: their weight [out, in / groups,
kh, kw] does not connect every output channel to every input channel.

Example::

    x = images[:2]                                                # [2, 1, 28, 28], any batch the model takes
    clusters = UnitClusters.equal(cnn, ["conv2", "fc1"], 4, x)    # conv2 reads conv1 (unclustered): equal in-blocks
    clusters.groups["conv2"]                                      # ((0, ..., 7), ..., (24, ..., 31))
    parts = clusters.partitions(cnn)                              # {"conv2": Partition((32, 16)), "fc1": ...}
    opt = Modularity.for_model(cnn, clusters, torch.optim.SGD, alpha=20, lr=1e-3)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from modclust.core.checks import check_choice, check_int, check_ints
from modclust.core.model import MLP
from modclust.core.partition import Partition

Groups = tuple[tuple[int, ...], ...]
"""k clusters of unit indices: ``groups[c]`` lists cluster c's units, in increasing order."""

GroupsLike = Sequence[Sequence[int]]
Wiring = Sequence[str] | Mapping[str, str | None]

_KINDS = "nn.Linear or nn.Conv2d (groups=1)"
_SHOWN = 12  # names listed in a message before "... (N in all)"


# modules and their units ------------------------------------------------------------------------

def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "") if names else "none"


def supported_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's modules whose output units can be clustered, by name: ``nn.Linear`` and
    ``nn.Conv2d`` with ``groups=1`` (subclasses included), in ``named_modules()`` order."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)}


def layer_module(model: nn.Module, name: str) -> nn.Linear | nn.Conv2d:
    """The module ``name`` of ``model``, checked to be a layer whose units can be clustered."""
    if not isinstance(name, str):
        raise TypeError(f"a layer is named by a string, as in model.named_modules(), got {name!r}")
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"{name!r} is not a module of this model: name layers as model.named_modules() does; "
                         f"its layers with clusterable units are {_listing(list(supported_layers(model)))}")
    m = modules[name]
    if isinstance(m, nn.Conv2d) and m.groups != 1:
        raise TypeError(f"module {name!r} is a grouped convolution (groups={m.groups}), which is not supported: "
                        f"its weight does not connect every output channel to every input channel; leave "
                        f"{name!r} out of the clustered layers")
    if not isinstance(m, (nn.Linear, nn.Conv2d)):
        raise TypeError(f"module {name!r} is a {type(m).__name__}: clusters are sets of output units of "
                        f"{_KINDS} layers; leave {name!r} out, or name one of "
                        f"{_listing(list(supported_layers(model)))}")
    if m.weight.ndim not in (2, 4) or 0 in m.weight.shape:
        raise ValueError(f"module {name!r} has a weight of shape {tuple(m.weight.shape)}: run one forward pass "
                         "first if it is a lazy module")
    return m


def unit_counts(model: nn.Module, name: str) -> tuple[int, int]:
    """(out units, in units) of layer ``name``: (out_features, in_features) or (out_channels, in_channels)."""
    w = layer_module(model, name).weight  # [out, in] or [out, in, kh, kw]
    return int(w.shape[0]), int(w.shape[1])


def _features_per_unit(model: nn.Module, layer: str, source: str) -> int:
    """How many of ``layer``'s input units each output unit of ``source`` (the layer it reads) becomes:
    1 when units pass in place, H * W when a Linear reads a Conv2d's flattened [C, H, W] output."""
    n_in = unit_counts(model, layer)[1]
    n_src = unit_counts(model, source)[0]
    if n_in == n_src:
        return 1
    if isinstance(layer_module(model, layer), nn.Linear) and isinstance(layer_module(model, source), nn.Conv2d) \
            and n_in % n_src == 0:
        return n_in // n_src
    raise ValueError(f"layer {layer!r} has {n_in} input units but reads {source!r}, which has {n_src} output "
                     f"units: only the same units, or a Linear reading a Conv2d's channels flattened "
                     f"(channel-major, in_features = channels x H x W), can be mapped; fix the wiring or "
                     f"leave {layer!r} out")


def _expand(groups: Groups, per_unit: int) -> Groups:
    """Clusters of a source's units as clusters of a reader's inputs, ``per_unit`` features per unit."""
    if per_unit == 1:
        return groups
    return tuple(tuple(u * per_unit + t for u in g for t in range(per_unit)) for g in groups)


def _equal_groups(n: int, k: int) -> Groups:
    """k contiguous near-equal clusters of n units (the first ones one larger): Partition.equal_blocks's rows."""
    return Partition.equal_blocks((n, k), k).rows


def _as_groups(where: str, groups: Any) -> Groups:
    """``groups`` as a tuple of tuples of ints (each sorted); shape-only checks."""
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise TypeError(f"{where} must be a sequence of clusters, each a sequence of unit indices, got {groups!r}")
    return tuple(tuple(sorted(check_ints(f"{where}[{c}]", g, 0, hint="unit indices"))) for c, g in enumerate(groups))


def _check_cover(where: str, groups: Groups, n: int, k: int, fix: str) -> None:
    """Every one of the n units in exactly one of the k clusters, none empty."""
    if len(groups) != k:
        raise ValueError(f"{where} has {len(groups)} clusters, but every layer needs the same k={k}: {fix}")
    seen: dict[int, int] = {}
    for c, g in enumerate(groups):
        if not g:
            raise ValueError(f"{where}: cluster {c} is empty; every cluster needs at least one unit: {fix}")
        for u in g:
            if u >= n:
                raise ValueError(f"{where}: unit {u} of cluster {c} is out of range (units run 0..{n - 1}): {fix}")
            if u in seen:
                raise ValueError(f"{where}: unit {u} is in cluster {seen[u]} and cluster {c}; every unit "
                                 f"belongs to exactly one cluster: {fix}")
            seen[u] = c
    if len(seen) != n:
        missing = [u for u in range(n) if u not in seen]
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        raise ValueError(f"{where}: {len(missing)} of its {n} units are in no cluster ({shown}); every unit "
                         f"belongs to exactly one cluster: {fix}")


# the wiring: which layer reads which --------------------------------------------------------------

# autograd nodes that hand a tensor on unchanged but for its shape, dtype or copy (a weight on its
# way to the product that applies it)
_VIEWS = frozenset({"T", "Transpose", "Permute", "View", "ReshapeAlias", "UnsafeView", "Reshape", "Expand",
                    "ToCopy", "Clone", "Alias", "Unsqueeze", "Squeeze", "Contiguous"})
# autograd nodes that move, select, combine or mix units along the feature dims
_MOVERS = frozenset({"T", "Transpose", "Permute", "Cat", "Stack", "Index", "IndexSelect", "Gather", "Scatter",
                     "Select", "Slice", "Split", "SplitWithSizes", "Unbind", "Roll", "Flip", "Mm", "Bmm", "Addmm",
                     "Addbmm", "Baddbmm", "Mv", "Dot", "Matmul", "Convolution", "Embedding", "PixelShuffle",
                     "PixelUnshuffle", "ChannelShuffle", "Im2Col", "Col2Im", "Sort", "Topk", "Cumsum", "Cumprod",
                     "Diagonal", "Repeat", "Narrow", "Take", "TakeAlongDim", "Einsum", "Linear", "Tensordot"})


_INPUT = "the model's input"


def _kind(fn: Any) -> str:
    """An autograd node's operation: ``MmBackward0`` -> ``"Mm"``."""
    name = type(fn).__name__.rstrip("0123456789")
    return name[:-len("Backward")] if name.endswith("Backward") else name


def _leaf(fn: Any, depth: int = 4) -> Tensor | None:
    """The parameter (a leaf tensor) an autograd edge leads to through views only, else None."""
    while fn is not None and depth >= 0:
        kind = _kind(fn)
        if kind == "AccumulateGrad":
            return fn.variable
        if kind not in _VIEWS:
            return None
        nexts = [f for f, _ in fn.next_functions if f is not None]
        if len(nexts) != 1:
            return None
        fn, depth = nexts[0], depth - 1
    return None


def _tensors(out: Any) -> Iterator[Tensor]:
    """Every tensor in a model's output (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(out, Tensor):
        yield out
    elif isinstance(out, Mapping):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _tensors(v)


def trace_wiring(model: nn.Module, example_input: Tensor | tuple[Any, ...],
                 layers: Sequence[str]) -> dict[str, str | None]:
    """Which of ``layers`` each of ``layers`` reads, found from one forward pass on ``example_input``.

    ``example_input`` is a batch the model takes (e.g. [N, 784] images, [N, T] tokens), or a tuple
    of positional arguments. The pass runs in eval mode (batch norms use their running statistics
    and do not update them; dropout is off) with gradients on (every Linear and Conv2d weight
    temporarily requiring grad); each module's mode is restored afterwards.
    Returns ``{layer: the clustered layer it reads, or None}``: None when the layer reads no
    clustered layer (the model's input, or only layers that are not in ``layers``). Raises, saying
    what to do, when a layer is not used, is used more than once, or its input units are not one
    clustered layer's units in place (see the module doc).
    """
    layers = list(layers)
    for name in layers:
        layer_module(model, name)
    stops = {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    weight_of: dict[int, str] = {}
    for name, m in stops.items():
        weight_of.setdefault(id(m.weight), name)
    frozen = [m.weight for m in stops.values() if not m.weight.requires_grad]
    was_training = [(m, m.training) for m in model.modules()]
    try:
        for w in frozen:
            w.requires_grad_(True)
        model.eval()
        with torch.enable_grad():
            args = example_input if isinstance(example_input, tuple) else (example_input,)
            # a float input requires grad, so that what reads it directly is seen to read it
            args = tuple(a.detach().requires_grad_(True) if isinstance(a, Tensor) and a.is_floating_point() else a
                         for a in args)
            out = model(*args)
    finally:
        for w in frozen:
            w.requires_grad_(False)
        for m, mode in was_training:
            m.training = mode
    roots = [t.grad_fn for t in _tensors(out) if t.grad_fn is not None]
    if not roots:
        raise ValueError("the model's output does not depend on its weights through autograd (no grad_fn): the "
                         "wiring cannot be traced; pass wiring=[...] (the layers in the order they read one another)")

    inputs = {id(a) for a in args if isinstance(a, Tensor) and a.requires_grad}

    # every node of the graph that applies a Linear or Conv2d weight, and the edges of its input
    applies: dict[Any, str] = {}
    data_edges: dict[Any, list[Any]] = {}
    seen: set[Any] = set()
    stack = list(roots)
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        hits, data = [], []
        for f, _ in fn.next_functions:
            if f is None:
                continue
            leaf = _leaf(f)
            if leaf is None or id(leaf) in inputs:
                data.append(f)
            elif id(leaf) in weight_of:
                hits.append(weight_of[id(leaf)])
            stack.append(f)
        if len(hits) == 1 and _kind(fn) not in _VIEWS:
            applies[fn] = hits[0]
            data_edges[fn] = data
    uses: dict[str, list[Any]] = {}
    for fn, name in applies.items():
        uses.setdefault(name, []).append(fn)

    clustered = set(layers)
    wiring: dict[str, str | None] = {}
    for name in layers:
        nodes = uses.get(name, [])
        if not nodes:
            raise ValueError(f"layer {name!r} takes no part in the forward pass on this example input (or its "
                             f"weight reaches the output only through operations the trace does not follow): pass "
                             f"wiring=[...] (the layers in the order they read one another)")
        if len(nodes) > 1:
            raise ValueError(f"layer {name!r} is applied {len(nodes)} times in one forward pass (a reused or tied "
                             f"weight): which units it reads is ambiguous; pass wiring={{...}} or leave it out")
        # walk back from the layer's input to what it reads: layers, the model's input, and parameters
        # read through an op that moves units (an embedding); note any such op on the way. A
        # parameter added in place (a bias, a positional embedding) keeps units in place.
        sources: dict[str, str | None] = {}  # what it reads -> the first unit-moving op on the way, if any
        walked: set[tuple[Any, str | None]] = set()
        todo: list[tuple[Any, str | None]] = [(f, None) for f in data_edges[nodes[0]]]
        while todo:
            fn, moved = todo.pop()
            if (fn, moved) in walked:
                continue
            walked.add((fn, moved))
            kind = _kind(fn)
            src = applies.get(fn)
            if src is None and kind == "AccumulateGrad":
                if id(fn.variable) in inputs:
                    src = _INPUT
                elif moved is not None:
                    src = f"a parameter of shape {tuple(fn.variable.shape)}"
                else:
                    continue
            if src is not None:
                if src not in sources or sources[src] is None:
                    sources[src] = moved
                continue
            step = moved or (type(fn).__name__ if kind in _MOVERS else None)
            todo.extend((f, step) for f, _ in fn.next_functions if f is not None)
        read = sorted(s for s in sources if s in clustered)
        if not read:
            wiring[name] = None
            continue
        if len(sources) > 1:
            shown = ", ".join(repr(s) if s in applies.values() else s for s in sorted(sources))
            raise ValueError(f"layer {name!r} reads a combination of {shown} (a sum, product or concatenation, e.g. "
                             f"a residual stream): its input units are no single clustered layer's units; pass "
                             f"wiring={{{name!r}: the layer its inputs follow, or None}} or leave {name!r} out")
        if sources[read[0]] is not None:
            raise ValueError(f"layer {name!r} reads {read[0]!r} through {sources[read[0]]}, which moves, selects or "
                             f"mixes units: its input units are not {read[0]!r}'s in place; pass "
                             f"wiring={{{name!r}: ...}} or leave {name!r} out")
        wiring[name] = read[0]
    return wiring


def _resolve_wiring(model: nn.Module, layers: Sequence[str], example_input: Tensor | tuple[Any, ...] | None,
                    wiring: Wiring | None) -> dict[str, str | None]:
    """``{layer: the clustered layer it reads, or None}`` from ``wiring``, a trace, or the MLP's chain."""
    if wiring is not None and example_input is not None:
        raise ValueError("pass either wiring= or example_input=, not both: the wiring is given or traced")
    if wiring is None and example_input is None:
        if not isinstance(model, MLP):
            raise ValueError("which layer reads which is not known for this model: pass example_input= (a batch the "
                             "model takes, to trace it) or wiring=[...] (the layers in the order they read one "
                             "another)")
        wiring = model.layer_names
    if wiring is None:
        return trace_wiring(model, example_input, layers)  # type: ignore[arg-type]
    clustered = set(layers)
    if isinstance(wiring, Mapping):
        missing = [n for n in layers if n not in wiring]
        if missing:
            raise ValueError(f"wiring says nothing of {_listing(missing)}: give every clustered layer the layer it "
                             f"reads, or None when it reads no clustered layer")
        out: dict[str, str | None] = {}
        for name in layers:
            src = wiring[name]
            if src is not None:
                unit_counts(model, src)  # a layer of this model
            out[name] = src if src in clustered else None
        return out
    if isinstance(wiring, (str, bytes)) or not isinstance(wiring, Iterable):
        raise TypeError(f"wiring must be a list of layer names (a chain) or a mapping {{layer: the layer it reads}}, "
                        f"got {wiring!r}")
    chain = list(wiring)
    for name in chain:
        unit_counts(model, name)
    if len(set(chain)) != len(chain):
        raise ValueError(f"wiring lists a layer twice ({chain}): a chain names each layer once")
    missing = [n for n in layers if n not in chain]
    if missing:
        raise ValueError(f"the chain {chain} lacks the clustered layers {_listing(missing)}: list every layer in the "
                         f"order they read one another, or pass wiring as a mapping")
    return {name: (chain[chain.index(name) - 1] if chain.index(name) > 0 and chain[chain.index(name) - 1] in clustered
                   else None) for name in layers}


def _order(reads: Mapping[str, str | None]) -> list[str]:
    """The layers with every layer after the one it reads (raises on a cycle)."""
    done: list[str] = []
    placed: set[str] = set()
    pending = list(reads)
    while pending:
        ready = [n for n in pending if reads[n] is None or reads[n] in placed]
        if not ready:
            raise ValueError(f"the wiring has a cycle among {_listing(pending)}: each layer must read one that "
                             "comes before it")
        for n in ready:
            done.append(n)
            placed.add(n)
        pending = [n for n in pending if n not in placed]
    return done


# the clusters ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnitClusters:
    """k clusters of output units per layer, and the wiring that makes them each weight's partition.

    ``groups[name]`` is layer ``name``'s k clusters of output-unit indices (the plain mapping other
    code reads); ``reads[name]`` is the clustered layer whose units it reads, or None; and
    ``inputs[name]``, for each layer that reads no clustered layer, the k clusters of its input
    units. Build it with :meth:`equal`, :meth:`explicit` or :meth:`from_partitions`, which check it
    against the model; :meth:`partitions` gives each clustered weight's :class:`Partition`.
    """

    groups: dict[str, Groups]
    reads: dict[str, str | None]
    inputs: dict[str, Groups]

    def __post_init__(self) -> None:
        if not isinstance(self.groups, Mapping) or not self.groups:
            raise ValueError(f"UnitClusters needs at least one layer's clusters, got groups={self.groups!r}")
        object.__setattr__(self, "groups", {n: _as_groups(f"groups[{n!r}]", g) for n, g in self.groups.items()})
        if not isinstance(self.reads, Mapping) or set(self.reads) != set(self.groups):
            raise ValueError("UnitClusters.reads needs one entry per clustered layer (the clustered layer it reads, "
                             "or None): build it with UnitClusters.equal, .explicit or .from_partitions")
        object.__setattr__(self, "reads", {n: self.reads[n] for n in self.groups})
        for n, src in self.reads.items():
            if src is not None and src not in self.groups:
                raise ValueError(f"UnitClusters.reads[{n!r}] = {src!r} is not a clustered layer: a layer that reads "
                                 "an unclustered one reads None")
        roots = {n for n, src in self.reads.items() if src is None}
        if not isinstance(self.inputs, Mapping) or set(self.inputs) != roots:
            raise ValueError(f"UnitClusters.inputs needs the input clusters of exactly the layers that read no "
                             f"clustered layer ({_listing(sorted(roots))}), got {_listing(sorted(self.inputs))}")
        object.__setattr__(self, "inputs", {n: _as_groups(f"inputs[{n!r}]", self.inputs[n])
                                            for n in self.groups if n in roots})
        ks = {n: len(g) for n, g in [*self.groups.items(), *self.inputs.items()]}
        if len(set(ks.values())) != 1:
            raise ValueError(f"every layer needs the same number of clusters k (cluster c of a layer's outputs is "
                             f"paired with cluster c of its inputs), got {ks}")
        _order(self.reads)

    # views ------------------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        """The number of clusters (the same on every layer)."""
        return len(next(iter(self.groups.values())))

    @property
    def layers(self) -> list[str]:
        """The clustered layers' names, in the order given."""
        return list(self.groups)

    def labels(self, name: str) -> list[int]:
        """Each output unit's cluster on layer ``name`` (length: its number of units)."""
        if name not in self.groups:
            raise ValueError(f"{name!r} is not a clustered layer; clustered: {_listing(self.layers)}")
        n = 1 + max((u for g in self.groups[name] for u in g), default=-1)
        out = [-1] * n  # -1 only for a unit in no cluster, which a checked UnitClusters has not
        for c, g in enumerate(self.groups[name]):
            for u in g:
                out[u] = c
        return out

    def input_groups(self, model: nn.Module, name: str) -> Groups:
        """The k clusters of layer ``name``'s input units (its weight's columns; in-channels of a conv)."""
        if name not in self.groups:
            raise ValueError(f"{name!r} is not a clustered layer; clustered: {_listing(self.layers)}")
        src = self.reads[name]
        if src is None:
            return self.inputs[name]
        return _expand(self.groups[src], _features_per_unit(model, name, src))

    def check(self, model: nn.Module) -> None:
        """Raise, saying what to do, unless these clusters fit ``model``: every layer a Linear or
        Conv2d of it, every unit (and every input unit of a layer reading no clustered layer) in
        exactly one of the k clusters, and each reader's inputs mapping onto what it reads."""
        k = self.k
        fix = "give every unit exactly one of the k clusters"
        for name, groups in self.groups.items():
            n_out, n_in = unit_counts(model, name)
            _check_cover(f"layer {name!r} ({n_out} output units)", groups, n_out, k, fix)
            if self.reads[name] is None:
                _check_cover(f"the inputs of layer {name!r} ({n_in} input units)", self.inputs[name], n_in, k, fix)
            else:
                _features_per_unit(model, name, self.reads[name])  # type: ignore[arg-type]

    def partitions(self, model: nn.Module) -> dict[str, Partition]:
        """Each clustered layer's weight partition, by name: rows = its output units' clusters,
        columns = its input units' clusters; shape (out, in) (for a conv, out- by in-channels)."""
        self.check(model)
        return {name: Partition(unit_counts(model, name), groups, self.input_groups(model, name))
                for name, groups in self.groups.items()}

    def weight_partitions(self, model: nn.Module) -> dict[Tensor, Partition]:
        """:meth:`partitions` keyed by each layer's weight tensor, as ``Modularity(partitions=...)`` takes them."""
        return {layer_module(model, name).weight: part for name, part in self.partitions(model).items()}

    def to_dict(self) -> dict[str, Any]:
        return {"groups": {n: [list(g) for g in gs] for n, gs in self.groups.items()},
                "reads": dict(self.reads), "inputs": {n: [list(g) for g in gs] for n, gs in self.inputs.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UnitClusters:
        return cls(dict(d["groups"]), dict(d["reads"]), dict(d["inputs"]))

    # constructors -------------------------------------------------------------------------------------
    @classmethod
    def _build(cls, model: nn.Module, groups: Mapping[str, Groups], reads: Mapping[str, str | None],
               inputs: Mapping[str, GroupsLike] | None, default_inputs: Mapping[str, Groups]) -> UnitClusters:
        given = dict(inputs or {})
        for name in given:
            if name not in groups:
                raise ValueError(f"inputs names {name!r}, which is not a clustered layer; clustered: "
                                 f"{_listing(list(groups))}")
            if reads[name] is not None:
                raise ValueError(f"inputs names {name!r}, but its inputs are the units of {reads[name]!r} and take "
                                 f"that layer's clusters: give inputs only for layers that read no clustered layer")
        roots = {n: (_as_groups(f"inputs[{n!r}]", given[n]) if n in given else default_inputs[n])
                 for n in groups if reads[n] is None}
        clusters = cls(dict(groups), dict(reads), roots)
        clusters.check(model)
        return clusters

    @classmethod
    def equal(cls, model: nn.Module, layers: Sequence[str], k: int,
              example_input: Tensor | tuple[Any, ...] | None = None, *, wiring: Wiring | None = None,
              inputs: Mapping[str, GroupsLike] | None = None) -> UnitClusters:
        """k contiguous near-equal clusters of each layer's output units (the first ones one larger).

        ``layers``: the clustered layers' names (as in ``model.named_modules()``). The wiring comes
        from ``wiring``, else a trace on ``example_input`` ([N, ...], a batch the model takes),
        else, for the seed's MLP, its chain (see the module doc). A layer that reads no clustered
        layer gets k equal blocks of its input units unless ``inputs`` gives its input clusters.
        On the seed's MLP this gives exactly ``Partition.equal_blocks`` on every layer.
        """
        layers = _layer_names(layers)
        k = check_int("k", k, 1, hint="the number of clusters per layer")
        counts = {name: unit_counts(model, name) for name in layers}
        reads = _resolve_wiring(model, layers, example_input, wiring)
        for name, (n_out, n_in) in counts.items():
            if k > n_out:
                raise ValueError(f"cannot cut the {n_out} output units of layer {name!r} into k={k} clusters: lower "
                                 f"k to at most {n_out} or leave {name!r} out of the clustered layers")
            if reads[name] is None and k > n_in and name not in (inputs or {}):
                raise ValueError(f"cannot cut the {n_in} input units of layer {name!r} into k={k} clusters: lower "
                                 f"k to at most {n_in} or leave {name!r} out of the clustered layers")
        groups = {name: _equal_groups(counts[name][0], k) for name in layers}
        default = {name: _equal_groups(counts[name][1], k) for name in layers
                   if reads[name] is None and name not in (inputs or {})}
        return cls._build(model, groups, reads, inputs, default)

    @classmethod
    def explicit(cls, model: nn.Module, groups: Mapping[str, GroupsLike],
                 example_input: Tensor | tuple[Any, ...] | None = None, *, wiring: Wiring | None = None,
                 inputs: Mapping[str, GroupsLike] | None = None) -> UnitClusters:
        """Given clusters, ``{layer: its k clusters of output-unit indices}``, checked: the same k on
        every layer, every unit in exactly one cluster, indices in range. Wiring and ``inputs`` as
        in :meth:`equal` (a layer reading no clustered layer gets k equal blocks by default)."""
        if not isinstance(groups, Mapping) or not groups:
            raise ValueError(f"groups must map each clustered layer's name to its clusters, got {groups!r}")
        layers = _layer_names(list(groups))
        counts = {name: unit_counts(model, name) for name in layers}
        clean = {name: _as_groups(f"groups[{name!r}]", groups[name]) for name in layers}
        k = len(clean[layers[0]])
        for name in layers:
            _check_cover(f"layer {name!r} ({counts[name][0]} output units)", clean[name], counts[name][0], k,
                         "give every unit exactly one of the k clusters, the same k on every layer")
        reads = _resolve_wiring(model, layers, example_input, wiring)
        default = {}
        for name in layers:
            if reads[name] is None and name not in (inputs or {}):
                if k > counts[name][1]:
                    raise ValueError(f"cannot cut the {counts[name][1]} input units of layer {name!r} into k={k} "
                                     f"clusters: give inputs={{{name!r}: ...}} or use fewer clusters")
                default[name] = _equal_groups(counts[name][1], k)
        return cls._build(model, clean, reads, inputs, default)

    @classmethod
    def from_partitions(cls, model: nn.Module, partitions: Mapping[str, Partition],
                        example_input: Tensor | tuple[Any, ...] | None = None, *, wiring: Wiring | None = None,
                        inputs: Mapping[str, GroupsLike] | None = None, unassigned: str = "error",
                        align: bool = True) -> UnitClusters:
        """Clusters from per-layer partitions found after training (e.g. spectral co-clustering).

        Each layer's clusters are its partition's rows; a layer reading no clustered layer takes its
        partition's columns as its input clusters (unless ``inputs`` gives them). Every partition
        must have the layer's weight shape (out, in) and the same k. Units a partition leaves out
        (spectral co-clustering leaves all-zero rows out) are an error with ``unassigned="error"``;
        ``"smallest"`` puts each (in increasing order) into the cluster that is then smallest.

        With ``align`` (default), each layer's cluster labels are permuted, after the layer it
        reads, so that its partition's pairing of rows with columns is kept as far as possible
        (the assignment that maximises how many of its partition's column sets fall in the paired
        cluster of what it reads); without it, row cluster c stays cluster c, whatever it was
        paired with.
        """
        check_choice("unassigned", unassigned, ("error", "smallest"))
        if not isinstance(align, bool):
            raise TypeError(f"align must be True or False, got {align!r}")
        if not isinstance(partitions, Mapping) or not partitions:
            raise ValueError(f"partitions must map each clustered layer's name to its Partition, got {partitions!r}")
        layers = _layer_names(list(partitions))
        for name in layers:
            part = partitions[name]
            if not isinstance(part, Partition):
                raise TypeError(f"partitions[{name!r}] must be a Partition, got {type(part).__name__}")
            if part.shape != unit_counts(model, name):
                raise ValueError(f"partitions[{name!r}] has shape {part.shape}, but layer {name!r}'s (out, in) unit "
                                 f"matrix is {unit_counts(model, name)}: build the partition on this layer's weight")
        ks = {name: partitions[name].k for name in layers}
        if len(set(ks.values())) != 1:
            raise ValueError(f"the partitions have different numbers of clusters {ks} (spectral co-clustering may "
                             f"merge clusters away): UnitClusters needs one k on every layer; recluster, or build the "
                             f"clusters with UnitClusters.explicit")
        reads = _resolve_wiring(model, layers, example_input, wiring)

        def filled(where: str, groups: Groups, n: int) -> Groups:
            covered = {u for g in groups for u in g}
            missing = [u for u in range(n) if u not in covered]
            if not missing:
                return groups
            if unassigned == "error":
                shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
                raise ValueError(f"{where}: {len(missing)} of its {n} units are in no cluster ({shown}); pass "
                                 f"unassigned='smallest' to put each in the smallest cluster, or assign them")
            out = [list(g) for g in groups]
            for u in missing:
                min(out, key=len).append(u)
            return tuple(tuple(sorted(g)) for g in out)

        groups: dict[str, Groups] = {}
        default: dict[str, Groups] = {}
        for name in _order(reads):
            part = partitions[name]
            rows = filled(f"layer {name!r}", part.rows, part.shape[0])
            src = reads[name]
            if src is None:
                groups[name] = rows
                if name not in (inputs or {}):
                    default[name] = filled(f"the inputs of layer {name!r}", part.cols, part.shape[1])
                continue
            if align:
                read = _expand(groups[src], _features_per_unit(model, name, src))
                overlap = np.array([[len(set(cols) & set(g)) for g in read] for cols in part.cols])
                _, to = linear_sum_assignment(-overlap)
                aligned: list[tuple[int, ...]] = [()] * len(rows)
                for c, target in enumerate(to):
                    aligned[int(target)] = rows[c]
                rows = tuple(aligned)
            groups[name] = rows
        return cls._build(model, {n: groups[n] for n in layers}, reads, inputs, default)


def _layer_names(layers: Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        raise TypeError(f"layers must be a sequence of layer names, got the string {layers!r} (write [{layers!r}])")
    out = list(layers)
    if not out:
        raise ValueError("name at least one layer to cluster")
    if len(set(out)) != len(out):
        raise ValueError(f"layers names a layer twice: {out}")
    return out
