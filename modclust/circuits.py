"""Circuits: search-space pruning by clusters, and greedy per-label pruning (CCR).

Greedy pruning visits weights in a fixed order (the given layers in turn, each row-major),
zeroes each one and keeps it zeroed if the label's loss rises by less than ``threshold``
over a reference loss, else restores it. The reference is the current loss
(``baseline="current"``, the seed's rule, so the loss can drift up by many small steps) or the
full model's loss (``baseline="full"``, the published follow-up's rule). What survives is the
circuit. Only the layers from the one being pruned onwards are recomputed per candidate, which
changes nothing in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from modclust.model import MLP, forward
from modclust.partition import Partition


def search_space_pruned(widths: Sequence[int], partition: Partition, layer: str = "fc2") -> list[float]:
    """Per cluster: the fraction of parameters removed when a circuit is kept to that cluster.

    The circuit keeps the cluster's block U_c x V_c of ``layer``, the rows V_c of the layer
    before (the units feeding the cluster), the columns U_c of the layer after (the units it
    feeds), and every other layer whole. For the seed's 4 blocks of 16 on fc2: 76.40 %.
    """
    shapes = [(b, a) for a, b in zip(widths[:-1], widths[1:])]
    names = [f"fc{i + 1}" for i in range(len(shapes))]
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r}: this MLP has {names}")
    i = names.index(layer)
    partition.check_fits(torch.empty(shapes[i]), layer)
    total = sum(o * n for o, n in shapes)
    out = []
    for rows, cols in zip(partition.rows, partition.cols):
        kept = 0
        for j, (o, n) in enumerate(shapes):
            if j == i:
                kept += len(rows) * len(cols)
            elif j == i - 1:
                kept += len(cols) * n
            elif j == i + 1:
                kept += o * len(rows)
            else:
                kept += o * n
        out.append((total - kept) / total)
    return out


def label_loss(weights: Sequence[Tensor], x: Tensor, label: int) -> Tensor:
    """Mean cross-entropy of the logits towards ``label`` (the seed's ``fast_label_loss``)."""
    logits = forward(weights, x)
    return F.cross_entropy(logits, torch.full((x.shape[0],), label, device=x.device))


@dataclass
class Circuit:
    """The weights that survive greedy pruning for one label."""

    label: int
    baseline: str
    threshold: float
    layers: list[str]
    kept: dict[str, Tensor]  # bool mask per pruned layer, True = in the circuit
    full_loss: float
    final_loss: float

    @property
    def size_per_layer(self) -> dict[str, int]:
        return {name: int(m.sum()) for name, m in self.kept.items()}

    @property
    def size(self) -> int:
        return sum(self.size_per_layer.values())

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "baseline": self.baseline, "threshold": self.threshold,
                "layers": self.layers, "size": self.size, "size_per_layer": self.size_per_layer,
                "full_loss": self.full_loss, "final_loss": self.final_loss}


def _check_prune_args(model: MLP, layers: Sequence[str] | None, baseline: str) -> list[str]:
    if baseline not in ("current", "full"):
        raise ValueError(f"baseline must be 'current' (the seed's) or 'full' (the follow-up's), got {baseline!r}")
    names = list(model.layer_names if layers is None else layers)
    for name in names:
        model.layer_index(name)
    return names


@torch.no_grad()
def greedy_circuit(model: MLP, x: Tensor, label: int, layers: Sequence[str] | None = None,
                   threshold: float = 1e-4, baseline: str = "current", progress: bool = False) -> Circuit:
    """Greedy per-label pruning, one candidate at a time (the plain loop)."""
    names = _check_prune_args(model, layers, baseline)
    weights = [w.detach().clone() for w in model.weights()]
    x = x.flatten(1)
    full = label_loss(weights, x, label).item()
    ref = full
    kept: dict[str, Tensor] = {}
    total = sum(weights[model.layer_index(n)].numel() for n in names)
    bar = tqdm(total=total, desc=f"prune label {label}", disable=not progress, mininterval=0.5)
    for name in names:
        li = model.layer_index(name)
        # Inputs to layer li do not change while it is pruned: compute them once.
        h = forward(weights[:li], x) if li > 0 else x
        if li > 0:
            h = torch.relu(h)
        rest = weights[li:]
        w = rest[0]
        flat = w.view(-1)
        for j in range(flat.numel()):
            old = flat[j].item()
            flat[j] = 0.0
            loss = label_loss(rest, h, label).item()
            if loss - ref < threshold:
                if baseline == "current":
                    ref = loss
            else:
                flat[j] = old
        kept[name] = w != 0
        bar.update(flat.numel())
    bar.close()
    final = label_loss(weights, x, label).item()
    return Circuit(label, baseline, threshold, names, {n: m.cpu() for n, m in kept.items()}, full, final)


@dataclass
class SeedCellResult:
    """What the seed notebook's pruning cell did to one layer (see :func:`seed_cell_prune`)."""

    label: int
    layer: str
    decided_pruned: int  # candidates the cell decided to zero
    decided_kept: int  # candidates it decided to restore
    nonzero_after: int  # weights of the layer still nonzero when it is done
    pruned: MLP  # the model as the cell leaves it

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "layer": self.layer, "decided_pruned": self.decided_pruned,
                "decided_kept": self.decided_kept, "nonzero_after": self.nonzero_after}


@torch.no_grad()
def seed_cell_prune(model: MLP, x: Tensor, label: int, layer: str = "fc3", threshold: float = 1e-4) -> SeedCellResult:
    """The seed notebook's greedy pruning cell as written, to show what its printed result meant.

    The cell saves a weight as ``temp = w.data[i, j]``: a view of the weight, not its value. After
    ``w.data[i, j] = 0`` the view reads zero, so its "restore" writes zero back, and every
    visited weight ends up zeroed whatever the cell decided. (Its printed class-wise accuracy,
    1.0 for class 0 and 0 elsewhere, is what an all-zero last layer gives: equal logits, argmax 0.)
    :func:`greedy_circuit` saves the value (``.item()``) and restores it.
    """
    pruned = MLP(model.widths).to(model.fc1.weight.device)
    pruned.set_weights(model.weights())
    pruned.layer_index(layer)  # a clear error for an unknown layer
    w = getattr(pruned, layer).weight
    x = x.flatten(1)
    curr = label_loss(pruned.weights(), x, label)
    n_pruned = n_kept = 0
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            temp = w.data[i, j]  # the seed's line: a 0-d view of the weight
            w.data[i, j] = 0
            loss = label_loss(pruned.weights(), x, label)
            if loss - curr < threshold:
                n_pruned += 1
                curr = loss
            else:
                w.data[i, j] = temp  # writes back what the view now reads: zero
                n_kept += 1
    return SeedCellResult(label, layer, n_pruned, n_kept, int((w != 0).sum()), pruned)


# --- Fast greedy pruning ---------------------------------------------------------------------
#
# The same greedy loop as ``greedy_circuit``, but a candidate costs only what zeroing one weight
# changes. Zeroing W_l[i, j] moves column i of layer l's pre-activation by -W_l[i, j] * a_l[:, j]
# (a_l = the layer's input); if l is the last layer only logit column i changes, otherwise the
# next pre-activation changes by the rank-one term dh_i (outer) W_{l+1}[:, i] and the layers
# after it are recomputed from there. Every (model, label) pair is one "problem" with its own
# weight state; all problems visit the same candidate at once, as one batched step.
#
# Float: the accept/reject rule compares a loss difference with a threshold, so a different
# rounding could flip a decision. The batched state is kept, and candidates are evaluated, in
# float64 whatever the model's dtype; every candidate whose difference lies
# within a small band around the threshold (``tol``, by default 64 machine epsilons of the
# model's dtype times 1 + |loss|: measured float32 loss errors are ~2 epsilons, and the band is
# far narrower than the threshold) is re-decided with exactly the plain loop's arithmetic: the
# same weights in the model's dtype, the same layer split, ``label_loss(...).item()`` and the
# same Python comparison. Outside the band both rules agree, so the kept masks are identical to
# ``greedy_circuit``'s, in float32 as in float64.


def _eps_tol(dtype: torch.dtype) -> float:
    return max(64 * torch.finfo(dtype).eps, 1e-12)


def _fast_prune(weight_sets: Sequence[Sequence[Tensor]], inputs: Sequence[Tensor], labels: Sequence[int],
                layer_ids: Sequence[int], threshold: float, baseline: str, progress: bool,
                tol: float | None) -> list[tuple[list[Tensor], float, float]]:
    """Greedy pruning of many problems at once; per problem: final weights, full and final loss."""
    n_prob = len(inputs)
    n_layers = len(weight_sets[0])
    last = n_layers - 1
    dev = inputs[0].device
    dtype = weight_sets[0][0].dtype
    tol = _eps_tol(dtype) if tol is None else tol
    f64 = torch.float64
    current = baseline == "current"

    # The plain loop's weights, stacked (P, out, in) in the model's dtype: the exact re-check
    # reads its state from here.
    wp = [torch.stack([ws[k].detach() for ws in weight_sets]).clone() for k in range(n_layers)]
    xs = [x.flatten(1) for x in inputs]
    full_plain = [label_loss([w[p] for w in wp], xs[p], labels[p]).item() for p in range(n_prob)]

    # Batched float64 state: inputs padded to the largest label set, padding masked in the loss.
    counts = torch.tensor([len(x) for x in xs], device=dev)
    n_max = int(counts.max())
    big_x = torch.zeros(n_prob, n_max, xs[0].shape[1], dtype=f64, device=dev)
    for p, x in enumerate(xs):
        big_x[p, :len(x)] = x.to(f64)
    valid = (torch.arange(n_max, device=dev) < counts[:, None]).to(f64)  # (P, N)
    inv_n = 1.0 / counts.to(f64)
    lab = torch.tensor(list(labels), device=dev)
    prob = torch.arange(n_prob, device=dev)
    w64 = [w.to(f64) for w in wp]

    def loss_of(logits: Tensor) -> Tensor:  # (P, N, C) -> (P,) mean CE over the valid rows
        # exp-sum-log without the max shift is several times faster than logsumexp on a short
        # last dim; float64 overflows only past logits of ~700 (an inf loss), and then the
        # stable form runs. Every example of a problem has the problem's label.
        def mean_nll(lse: Tensor) -> Tensor:
            return ((lse - logits[prob, :, lab]) * valid).sum(-1) * inv_n

        loss = mean_nll(logits.exp().sum(-1).log())
        return loss if bool(torch.isfinite(loss).all()) else mean_nll(torch.logsumexp(logits, -1))

    acts: list[Tensor] = [big_x]  # acts[k]: the input of layer k
    pre: list[Tensor] = []  # pre[k]: layer k's pre-activation (the logits for the last)
    for k in range(n_layers):
        pre.append(torch.bmm(acts[k], w64[k].mT))
        if k < last:
            acts.append(torch.relu(pre[k]))
    # the logits live class-major in memory (a (P, C, N) tensor seen as (P, N, C)): a candidate's
    # rank-one update, its exp and its sum over classes then run along contiguous examples, and
    # elementwise results keep that layout
    pre[last] = pre[last].mT.contiguous().mT
    full64 = loss_of(pre[last])
    ref64 = full64.clone()
    ref_plain: list[float | None] = list(full_plain)  # current baseline's exact reference, None = recompute

    h_cache: dict[int, Tensor] = {}

    def plain_input(p: int, layer: int) -> Tensor:
        """What the plain loop feeds layer ``layer`` for problem p (computed once per layer)."""
        if p not in h_cache:
            h_cache[p] = torch.relu(forward([w[p] for w in wp[:layer]], xs[p])) if layer > 0 else xs[p]
        return h_cache[p]

    def plain_loss(p: int, layer: int, flat_index: int | None) -> float:
        rest = [w[p].clone() for w in wp[layer:]]
        if flat_index is not None:
            rest[0].view(-1)[flat_index] = 0.0
        return label_loss(rest, plain_input(p, layer), labels[p]).item()

    def decide_exactly(p: int, li: int, flat_index: int) -> bool:
        """The plain loop's own decision for problem p's candidate (and its reference update)."""
        new = plain_loss(p, li, flat_index)
        if current:
            if ref_plain[p] is None:
                ref_plain[p] = plain_loss(p, li, None)
            base = ref_plain[p]
        else:
            base = full_plain[p]
        ok = new - base < threshold
        if ok and current:
            ref_plain[p] = new
        return ok

    def one_candidate(li: int, i: int, j: int) -> Tensor:
        """Evaluate and decide one candidate for every problem; returns the accept mask (P,)."""
        nonlocal ref64
        n_in = wp[li].shape[2]
        w = w64[li][:, i, j].clone()  # (P,)
        pre_i = pre_t[:, i] if li < last else pre[li][:, :, i]
        col = pre_i - a_in_t[:, j] * w[:, None]  # (P, N)
        new_pre: list[Tensor] = []  # the candidate's pre-activations of layers li+1 .. last
        if li == last:
            logits = pre[li].clone()
            logits[:, :, i] = col
        else:
            logits = torch.addcmul(pre[li + 1], (torch.relu(col) - a_out_t[:, i])[:, :, None],
                                   w64[li + 1][:, None, :, i])
            new_pre.append(logits)
            for k in range(li + 2, n_layers):
                logits = torch.bmm(torch.relu(logits), w64[k].mT)
                new_pre.append(logits)
        loss = loss_of(logits)
        ref = ref64 if current else full64
        diff = loss - ref
        accept = diff < threshold
        near = (diff - threshold).abs() <= tol * (1.0 + ref.abs())
        for p in near.nonzero().flatten().tolist():
            accept[p] = decide_exactly(p, li, i * n_in + j)
        if bool(accept.any()):
            if current:  # a fast accept leaves the exact reference to be recomputed when needed
                for p in (accept & ~near).nonzero().flatten().tolist():
                    ref_plain[p] = None
                ref64 = torch.where(accept, loss, ref64)
            w64[li][:, i, j] = torch.where(accept, 0.0, w)
            wp[li][:, i, j] = torch.where(accept, zero, wp[li][:, i, j])
            # the layers after li take the candidate's values already computed above
            if li < last:
                pre_t[:, i] = torch.where(accept[:, None], col, pre_i)
                a_out_t[:, i] = torch.relu(pre_t[:, i])
            else:
                pre[li][:, :, i] = torch.where(accept[:, None], col, pre_i)
            keep = accept[:, None, None]
            for k, z in enumerate(new_pre, start=li + 1):
                pre[k] = torch.where(keep, z, pre[k])
                if k < last:
                    acts[k + 1] = torch.relu(pre[k])
        return accept

    zero = torch.zeros((), dtype=dtype, device=dev)
    total = sum(wp[k][0].numel() for k in layer_ids)
    bar = tqdm(total=total * n_prob, desc=f"prune {n_prob} label circuit{'s' if n_prob > 1 else ''}",
               disable=not progress, mininterval=0.5)
    for li in layer_ids:
        h_cache.clear()
        # While layer li is pruned, the columns its candidates read and write (input unit j,
        # output unit i) are kept as contiguous rows: transposed copies, written back after it.
        a_in_t = acts[li].mT.contiguous()  # (P, in, N)
        if li < last:
            pre_t, a_out_t = pre[li].mT.contiguous(), acts[li + 1].mT.contiguous()  # (P, out, N)
        n_out, n_in = wp[li].shape[1:]
        for i in range(n_out):
            for j in range(n_in):
                one_candidate(li, i, j)
            bar.update(n_in * n_prob)
        if li < last:
            pre[li], acts[li + 1] = pre_t.mT, a_out_t.mT
    bar.close()
    out = []
    for p in range(n_prob):
        ws = [w[p].clone() for w in wp]
        out.append((ws, full_plain[p], label_loss(ws, xs[p], labels[p]).item()))
    return out


@torch.no_grad()
def greedy_circuits_fast(models: MLP | Sequence[MLP], x: Tensor, y: Tensor, labels: Sequence[int] | None = None,
                         layers: Sequence[str] | None = None, threshold: float = 1e-4,
                         baseline: str = "current", progress: bool = False,
                         tol: float | None = None) -> list[dict[int, Circuit]]:
    """Greedy circuits of every label for every model, all pruned together.

    For each model, ``{label: circuit}`` with each circuit identical to
    ``greedy_circuit(model, x[y == label], label, layers, threshold, baseline)``. Models must
    share their widths. ``labels`` defaults to every label present in ``y``. ``tol`` is the
    band around the threshold whose candidates are re-decided with the plain loop's exact
    arithmetic (see the notes above); the default suits float32 and float64 models.
    """
    model_list = [models] if isinstance(models, MLP) else list(models)
    if not model_list:
        return []
    for m in model_list[1:]:
        if m.widths != model_list[0].widths:
            raise ValueError(f"models pruned together must share widths ({model_list[0].widths} vs {m.widths})")
    names = _check_prune_args(model_list[0], layers, baseline)
    label_list = sorted(set(y.tolist())) if labels is None else [int(c) for c in labels]
    inputs = []
    for c in label_list:
        xc = x[y == c]
        if len(xc) == 0:
            raise ValueError(f"no examples of label {c} in the data")
        inputs.append(xc)
    weight_sets = [[w.detach() for w in m.weights()] for m in model_list for _ in label_list]
    layer_ids = [model_list[0].layer_index(n) for n in names]
    results = _fast_prune(weight_sets, inputs * len(model_list), label_list * len(model_list), layer_ids,
                          threshold, baseline, progress, tol)
    out: list[dict[int, Circuit]] = []
    for mi in range(len(model_list)):
        circuits = {}
        for ci, c in enumerate(label_list):
            ws, full, final = results[mi * len(label_list) + ci]
            kept = {n: (ws[li] != 0).cpu() for n, li in zip(names, layer_ids)}
            circuits[c] = Circuit(c, baseline, threshold, names, kept, full, final)
        out.append(circuits)
    return out


@torch.no_grad()
def greedy_circuit_fast(model: MLP, x: Tensor, label: int, layers: Sequence[str] | None = None,
                        threshold: float = 1e-4, baseline: str = "current", progress: bool = False,
                        tol: float | None = None) -> Circuit:
    """``greedy_circuit`` with the fast candidate evaluation: the same arguments, the same circuit."""
    names = _check_prune_args(model, layers, baseline)
    layer_ids = [model.layer_index(n) for n in names]
    (ws, full, final), = _fast_prune([[w.detach() for w in model.weights()]], [x], [label], layer_ids,
                                     threshold, baseline, progress, tol)
    kept = {n: (ws[li] != 0).cpu() for n, li in zip(names, layer_ids)}
    return Circuit(label, baseline, threshold, names, kept, full, final)


# --- Circuit overlap between labels, and the share of a circuit inside one cluster ------------
#
# "Disjoint, smaller circuits" made measurable: two labels' circuits overlap by the IoU of their
# kept masks (0 = disjoint, 1 = identical), and a circuit sits inside a cluster to the extent
# that its kept weights of a layer fall in that cluster's block U_c x V_c.


def mask_iou(a: Tensor, b: Tensor) -> float:
    """|a & b| / |a | b| of two boolean masks of one shape; nan when both are empty (undefined)."""
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be compared")
    a, b = a.bool(), b.bool()
    union = int((a | b).sum())
    return float("nan") if union == 0 else int((a & b).sum()) / union


def circuit_iou(circuits: Sequence[Circuit], layers: Sequence[str] | None = None) -> Tensor:
    """(n, n) IoU of the circuits' kept weights, over ``layers`` (default: those all of them pruned)."""
    if not circuits:
        return torch.empty(0, 0, dtype=torch.float64)
    if layers is None:
        layers = [n for n in circuits[0].kept if all(n in c.kept for c in circuits)]
    missing = [(c.label, n) for c in circuits for n in layers if n not in c.kept]
    if missing or not layers:
        raise ValueError(f"circuits must all have masks for the layers compared; missing (label, layer): {missing}")
    flat = [torch.cat([c.kept[n].flatten().bool() for n in layers]) for c in circuits]
    n = len(flat)
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = mask_iou(flat[i], flat[j])
    return out


@dataclass
class ClusterShare:
    """How much of a label's circuit in ``layer`` lies inside one cluster's block.

    ``share``: the largest fraction of the circuit's kept weights of the layer inside a single
    block (``cluster`` is that block); ``inside_any``: the fraction inside any block; ``chance``:
    the largest block's fraction of the matrix, the share of kept weights spread without regard
    to the clusters. nan (and cluster -1) when the circuit keeps nothing in the layer.
    """

    label: int
    layer: str
    cluster: int
    share: float
    inside_any: float
    chance: float
    n_kept: int

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "layer": self.layer, "cluster": self.cluster, "share": self.share,
                "inside_any": self.inside_any, "chance": self.chance, "n_kept": self.n_kept}


def cluster_share(circuit: Circuit, partition: Partition, layer: str = "fc2") -> ClusterShare:
    """The share of ``circuit``'s kept weights of ``layer`` inside its dominant cluster's block."""
    if layer not in circuit.kept:
        raise ValueError(f"the circuit of label {circuit.label} was not pruned on {layer!r} (it has {list(circuit.kept)})")
    kept = circuit.kept[layer].bool().cpu()
    partition.check_fits(kept, layer)
    n_kept = int(kept.sum())
    sizes = [len(r) * len(c) / kept.numel() for r, c in zip(partition.rows, partition.cols)]
    inside = [int(kept[list(r)][:, list(c)].sum()) for r, c in zip(partition.rows, partition.cols)]
    if n_kept == 0:
        return ClusterShare(circuit.label, layer, -1, float("nan"), float("nan"), max(sizes), 0)
    best = max(range(partition.k), key=lambda c: (inside[c], -c))
    return ClusterShare(circuit.label, layer, best, inside[best] / n_kept, sum(inside) / n_kept, max(sizes), n_kept)
