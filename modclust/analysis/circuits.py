"""Circuits: search-space pruning by clusters, greedy per-label pruning (CCR), and faithfulness.

Greedy pruning visits weights in a fixed order (the given layers in turn, each row-major),
removes each one and keeps it removed if the objective rises by less than ``threshold``
over a reference loss, else restores it. The objective (the seed's, the faithful c-vs-rest
margin, or the KL to the full model) and the ablation (zero or mean) are those of
:mod:`modclust.analysis.objectives`; :func:`faithfulness_mlp` judges a circuit on held-out inputs of every
class. The reference is the current loss
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

from modclust.core.checks import check_float
from modclust.analysis.ablation import classwise_correct
from modclust.core.model import MLP, check_widths, forward, layer_shapes
from modclust.analysis.objectives import (Objective, ObjectiveKind, ablation_means, check_objective, circuit_weights,
                                          make_objective, objective_kind)
from modclust.core.partition import Partition
from modclust.core.progress import bar as progress_bar


def search_space_pruned(widths: Sequence[int], partition: Partition, layer: str = "fc2") -> list[float]:
    """Per cluster: the fraction of parameters removed when a circuit is kept to that cluster.

    The circuit keeps the cluster's block U_c x V_c of ``layer``, the rows V_c of the layer
    before (the units feeding the cluster), the columns U_c of the layer after (the units it
    feeds), and every other layer whole. For the seed's 4 blocks of 16 on fc2: 76.40 %.
    """
    by_name = layer_shapes(check_widths(widths))
    names, shapes = list(by_name), list(by_name.values())
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
    """The weights that survive a circuit search for one label (``label`` None: the whole function).

    ``objective`` and ``ablation`` say what the search kept low and how pruned weights were
    removed (:mod:`modclust.analysis.objectives`); under mean ablation ``means`` holds, per pruned layer,
    the mean input its pruned weights' contributions were replaced with.
    """

    label: int | None
    baseline: str
    threshold: float
    layers: list[str]
    kept: dict[str, Tensor]  # bool mask per pruned layer, True = in the circuit
    full_loss: float
    final_loss: float
    objective: str = "seed"
    ablation: str = "zero"
    means: dict[str, Tensor] | None = None

    @property
    def size_per_layer(self) -> dict[str, int]:
        return {name: int(m.sum()) for name, m in self.kept.items()}

    @property
    def size(self) -> int:
        return sum(self.size_per_layer.values())

    def to_record(self, run: str, lam: float, seed: int, method: str = "greedy") -> dict[str, object]:
        """The circuit as a record of a ``circuits.pt`` file: plain values and tensors only, so the
        file loads with ``torch.load(path, weights_only=True)``, and enough to cut the model
        ``run`` down to the circuit again (its kept masks, and its means under mean ablation)."""
        rec: dict[str, object] = {"run": run, "lam": lam, "seed": seed, "label": self.label, "objective": self.objective,
                                  "method": method, "ablation": self.ablation, "threshold": self.threshold,
                                  "baseline": self.baseline, "size": self.size,
                                  "kept": {n: m.clone() for n, m in self.kept.items()}}
        if self.means is not None:
            rec["means"] = dict(self.means)
        return rec

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "objective": self.objective, "ablation": self.ablation,
                "baseline": self.baseline, "threshold": self.threshold, "layers": self.layers, "size": self.size,
                "size_per_layer": self.size_per_layer, "full_loss": self.full_loss, "final_loss": self.final_loss}


def check_prune_args(model: MLP, layers: Sequence[str] | None, baseline: str, threshold: float,
                      objective: str | ObjectiveKind = "seed", ablation: str = "zero") -> list[str]:
    """The checks every circuit search shares: baseline, threshold, objective, ablation and layers.

    Returns the layer names to prune (every layer for None).
    """
    if baseline not in ("current", "full"):
        raise ValueError(f"baseline must be 'current' (the seed's) or 'full' (the follow-up's), got {baseline!r}")
    check_threshold(threshold)
    check_objective(objective, ablation)
    names = list(model.layer_names if layers is None else layers)
    if not names:
        raise ValueError(f"give at least one layer to prune (this MLP has {model.layer_names})")
    for name in names:
        model.layer_index(name)
    return names


def check_threshold(threshold: float) -> float:
    """Greedy pruning's threshold: a finite number >= 0 (nan would keep or drop everything)."""
    return check_float("threshold", threshold, 0.0, hint="the loss rise a pruned weight may cost")


def check_tol(tol: float | None) -> float | None:
    """The fast pruner's re-check band: None (the default) or a finite number >= 0."""
    return None if tol is None else check_float("tol", tol, 0.0, hint="None picks one that suits the dtype")


def pruned_layer_means(means: Sequence[Tensor] | None, model: MLP, names: Sequence[str]) -> dict[str, Tensor] | None:
    return None if means is None else {n: means[model.layer_index(n)].cpu() for n in names}


@torch.no_grad()
def greedy_circuit(model: MLP, x: Tensor, label: int | None, layers: Sequence[str] | None = None,
                   threshold: float = 1e-4, baseline: str = "current", progress: bool = False,
                   objective: str | ObjectiveKind = "seed", ablation: str = "zero") -> Circuit:
    """Greedy pruning for one label, one candidate at a time (the plain loop).

    ``x`` are the inputs the objective reads: for ``"seed"`` the images of class ``label``, for
    ``"margin"`` and ``"kl"`` inputs of every class (see :mod:`modclust.analysis.objectives`).
    """
    names = check_prune_args(model, layers, baseline, threshold, objective, ablation)
    threshold = check_threshold(threshold)  # a Python float: numpy's would make numpy bools of decisions
    weights = [w.detach().clone() for w in model.weights()]
    obj = make_objective(objective, weights, x.to(weights[0]), label)
    means = ablation_means(weights, obj.x, ablation)
    biases = None if means is None else [torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) for w in weights]
    full = obj.loss(forward(weights, obj.x)).item()
    ref = full
    kept: dict[str, Tensor] = {}
    total = sum(weights[model.layer_index(n)].numel() for n in names)
    bar = progress_bar(total, f"prune label {obj.label}", disable=not progress)
    for name in names:
        li = model.layer_index(name)
        # Inputs to layer li do not change while it is pruned: compute them once.
        h = torch.relu(forward(weights[:li], obj.x, None if biases is None else biases[:li])) if li > 0 else obj.x
        rest = weights[li:]
        rest_b = None if biases is None else biases[li:]
        w = rest[0]
        flat = w.view(-1)
        n_in = w.shape[1]
        for j in range(flat.numel()):
            old = flat[j].item()
            if rest_b is not None:  # mean ablation: the weight's mean contribution moves into the bias
                i = j // n_in
                b_old = rest_b[0][i].clone()
                rest_b[0][i] = b_old + w[i, j % n_in] * means[li][j % n_in]  # type: ignore[index]
            flat[j] = 0.0
            loss = obj.loss(forward(rest, h, rest_b)).item()
            if loss - ref < threshold:
                if baseline == "current":
                    ref = loss
            else:
                flat[j] = old
                if rest_b is not None:
                    rest_b[0][i] = b_old
        kept[name] = w != 0
        bar.update(flat.numel())
    bar.close()
    final = obj.loss(forward(weights, obj.x, biases)).item()
    return Circuit(obj.label, baseline, threshold, names, {n: m.cpu() for n, m in kept.items()}, full, final,
                   obj.name, ablation, pruned_layer_means(means, model, names))


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


FAST_CHUNK = 200
"""The most problems (model x label) :func:`greedy_circuits_fast` prunes as one batch."""


def _batched_inputs(xs: Sequence[Tensor], n_max: int, dev: torch.device) -> Tensor:
    """(P, n_max, in) float64: each problem's inputs, zero-padded (only needed to prune the first layer)."""
    out = torch.zeros(len(xs), n_max, xs[0].shape[1], dtype=torch.float64, device=dev)
    for p, x in enumerate(xs):
        out[p, :len(x)] = x.to(torch.float64)
    return out


def _first_layer(weight_sets: Sequence[Sequence[Tensor]], xs: Sequence[Tensor], n_max: int, dev: torch.device
                 ) -> Tensor:
    """(P, n_max, out) float64: the first layer's pre-activations of each problem's inputs, zero-padded.

    Problems that read the same inputs through the same first-layer weights (one model's labels
    under the margin and KL objectives, which read the whole search set) share one product.
    """
    out = torch.zeros(len(xs), n_max, weight_sets[0][0].shape[0], dtype=torch.float64, device=dev)
    done: dict[tuple, int] = {}
    for p, (ws, x) in enumerate(zip(weight_sets, xs)):
        w = ws[0]
        key = (w.data_ptr(), tuple(w.shape), tuple(w.stride()), x.data_ptr(), tuple(x.shape), tuple(x.stride()))
        if key in done:
            out[p] = out[done[key]]
        else:
            out[p, :len(x)] = x.to(torch.float64) @ w.to(torch.float64).T
            done[key] = p
    return out


class _FastPruner:
    """Greedy pruning of many problems at once (one objective kind for all): the batched float64
    state, the plain loop's state for the exact re-check, and the candidate loop.

    ``run`` gives, per problem: the final weights, the mean-ablation means (None for zero
    ablation), the full and the final loss.
    """

    def __init__(self, weight_sets: Sequence[Sequence[Tensor]], objectives: Sequence[Objective],
                 layer_ids: Sequence[int], threshold: float, baseline: str, ablation: str, tol: float | None) -> None:
        tol = check_tol(tol)
        self.objectives = objectives
        self.layer_ids = layer_ids
        self.threshold = threshold
        self.n_prob = n_prob = len(objectives)
        self.kind = kind = objectives[0].kind
        self.n_layers = n_layers = len(weight_sets[0])
        self.last = last = n_layers - 1
        self.dev = dev = objectives[0].x.device
        self.dtype = dtype = weight_sets[0][0].dtype
        self.tol = _eps_tol(dtype) if tol is None else tol
        f64 = torch.float64
        self.current = baseline == "current"
        self.mean = mean = ablation == "mean"

        # The plain loop's state, stacked (P, out, in) in the model's dtype: the exact re-check
        # reads its weights (and, under mean ablation, its biases and means) from here.
        self.wp = wp = [torch.stack([ws[k].detach() for ws in weight_sets]).clone() for k in range(n_layers)]
        self.xs = xs = [o.x for o in objectives]
        self.means_p = means_p = [ablation_means(ws, o.x, ablation) for ws, o in zip(weight_sets, objectives)]
        if mean:
            # (P, in) each layer's mean input
            self.abar_p = abar_p = [torch.stack([m[k] for m in means_p]) for k in range(n_layers)]  # type: ignore[index]
            self.abar64 = [a.to(f64) for a in abar_p]
            # (P, out) each layer's bias
            self.bp = bp = [torch.zeros(n_prob, wp[k].shape[1], dtype=dtype, device=dev) for k in range(n_layers)]
            self.b64 = [b.to(f64) for b in bp]
        self.full_plain = full_plain = [o.loss(forward([w[p] for w in wp], o.x)).item()
                                        for p, o in enumerate(objectives)]

        # Batched float64 state: inputs padded to the largest input set; padding has weight 0.
        counts = [len(x) for x in xs]
        n_max = max(counts)
        self.weight64 = weight64 = torch.zeros(n_prob, n_max, dtype=f64, device=dev)
        for p, o in enumerate(objectives):
            weight64[p, :counts[p]] = o.weight.to(f64)
        self.target64 = None
        if objectives[0].target is not None:
            self.target64 = torch.zeros(n_prob, n_max, *objectives[0].target.shape[1:], dtype=f64, device=dev)
            for p, o in enumerate(objectives):
                self.target64[p, :counts[p]] = o.target.to(f64)  # type: ignore[union-attr]
        self.lab = kind.stacked_labels([o.label for o in objectives], dev)
        self.offset64 = torch.tensor([o.offset for o in objectives], dtype=f64, device=dev)

        # acts[k]: layer k's input; pre[k]: layer k's pre-activation (logits last)
        self.acts = acts = [_batched_inputs(xs, n_max, dev) if 0 in layer_ids else torch.empty(0)]
        self.pre = pre = [_first_layer(weight_sets, xs, n_max, dev)]
        for k in range(n_layers):
            if k > 0:
                pre.append(torch.bmm(acts[k], wp[k].to(f64).mT))
            if k < last:
                acts.append(torch.relu(pre[k]))
        self.w64 = [w.to(f64) for w in wp]
        # the logits live class-major in memory (a (P, C, N) tensor seen as (P, N, C)): a candidate's
        # rank-one update, its exp and its sum over classes then run along contiguous examples, and
        # elementwise results keep that layout
        pre[last] = pre[last].mT.contiguous().mT
        self.full64 = self.loss_of(pre[last])
        self.ref64 = self.full64.clone()
        self.ref_plain: list[float | None] = list(full_plain)  # current baseline's exact reference, None = recompute
        self.h_cache: dict[int, Tensor] = {}
        # While a layer is pruned, the columns its candidates read and write (input unit j, output
        # unit i) are kept as contiguous rows: transposed copies (P, in, N) and (P, out, N).
        self.a_in_t = self.pre_t = self.a_out_t = torch.empty(0)

    def loss_of(self, logits: Tensor) -> Tensor:  # (P, N, C) -> (P,)
        return self.kind.loss(logits, self.lab, self.target64, self.weight64, self.offset64, unshifted=True)

    def plain_biases(self, p: int, lo: int) -> list[Tensor] | None:
        return None if not self.mean else [b[p].clone() for b in self.bp[lo:]]

    def plain_input(self, p: int, layer: int) -> Tensor:
        """What the plain loop feeds layer ``layer`` for problem p (computed once per layer)."""
        if p not in self.h_cache:
            bs = None if not self.mean else [b[p] for b in self.bp[:layer]]
            self.h_cache[p] = (torch.relu(forward([w[p] for w in self.wp[:layer]], self.xs[p], bs)) if layer > 0
                               else self.xs[p])
        return self.h_cache[p]

    def plain_loss(self, p: int, layer: int, flat_index: int | None) -> float:
        rest = [w[p].clone() for w in self.wp[layer:]]
        rest_b = self.plain_biases(p, layer)
        if flat_index is not None:
            i, j = divmod(flat_index, rest[0].shape[1])
            if rest_b is not None:
                rest_b[0][i] = rest_b[0][i] + rest[0][i, j] * self.abar_p[layer][p, j]
            rest[0][i, j] = 0.0
        return self.objectives[p].loss(forward(rest, self.plain_input(p, layer), rest_b)).item()

    def decide_exactly(self, p: int, li: int, flat_index: int) -> bool:
        """The plain loop's own decision for problem p's candidate (and its reference update)."""
        new = self.plain_loss(p, li, flat_index)
        if self.current:
            if self.ref_plain[p] is None:
                self.ref_plain[p] = self.plain_loss(p, li, None)
            base = self.ref_plain[p]
        else:
            base = self.full_plain[p]
        ok = new - base < self.threshold  # type: ignore[operator]
        if ok and self.current:
            self.ref_plain[p] = new
        return ok

    def one_candidate(self, li: int, i: int, j: int) -> Tensor:
        """Evaluate and decide one candidate for every problem; returns the accept mask (P,)."""
        last, pre, w64, mean, current = self.last, self.pre, self.w64, self.mean, self.current
        wp, threshold = self.wp, self.threshold
        pre_t, a_out_t = self.pre_t, self.a_out_t
        n_in = wp[li].shape[2]
        w = w64[li][:, i, j].clone()  # (P,)
        pre_i = pre_t[:, i] if li < last else pre[li][:, :, i]
        # zeroing moves the pre-activation by -w * a_j; mean ablation adds back w * mean(a_j)
        a_j = self.a_in_t[:, j] - self.abar64[li][:, j, None] if mean else self.a_in_t[:, j]
        col = pre_i - a_j * w[:, None]  # (P, N)
        new_pre: list[Tensor] = []  # the candidate's pre-activations of layers li+1 .. last
        if li == last:
            logits = pre[li].clone()
            logits[:, :, i] = col
        else:
            logits = torch.addcmul(pre[li + 1], (torch.relu(col) - a_out_t[:, i])[:, :, None],
                                   w64[li + 1][:, None, :, i])
            new_pre.append(logits)
            for k in range(li + 2, self.n_layers):
                logits = torch.bmm(torch.relu(logits), w64[k].mT)
                if mean:
                    logits = logits + self.b64[k][:, None, :]
                new_pre.append(logits)
        loss = self.loss_of(logits)
        ref = self.ref64 if current else self.full64
        diff = loss - ref
        accept = diff < threshold
        near = (diff - threshold).abs() <= self.tol * (1.0 + ref.abs())
        for p in near.nonzero().flatten().tolist():
            accept[p] = self.decide_exactly(p, li, i * n_in + j)
        if bool(accept.any()):
            if current:  # a fast accept leaves the exact reference to be recomputed when needed
                for p in (accept & ~near).nonzero().flatten().tolist():
                    self.ref_plain[p] = None
                self.ref64 = torch.where(accept, loss, self.ref64)
            if mean:
                b64, bp, abar64, abar_p = self.b64, self.bp, self.abar64, self.abar_p
                b64[li][:, i] = torch.where(accept, b64[li][:, i] + w * abar64[li][:, j], b64[li][:, i])
                bp[li][:, i] = torch.where(accept, bp[li][:, i] + wp[li][:, i, j] * abar_p[li][:, j], bp[li][:, i])
            w64[li][:, i, j] = torch.where(accept, 0.0, w)
            wp[li][:, i, j] = torch.where(accept, self.zero, wp[li][:, i, j])
            # the layers after li take the candidate's values already computed above
            if li < last:
                pre_t[:, i] = torch.where(accept[:, None], col, pre_i)
                a_out_t[:, i] = torch.relu(pre_t[:, i])
            else:
                pre[li][:, :, i] = torch.where(accept[:, None], col, pre_i)
            keep = accept[:, None, None]
            acts = self.acts
            for k, z in enumerate(new_pre, start=li + 1):
                pre[k] = torch.where(keep, z, pre[k])
                if k < last:
                    acts[k + 1] = torch.relu(pre[k])
        return accept

    def run(self, progress: bool) -> list[tuple[list[Tensor], list[Tensor] | None, float, float]]:
        """Visit every candidate of the layers in turn; the result per problem (see the class)."""
        wp, pre, acts, last, n_prob = self.wp, self.pre, self.acts, self.last, self.n_prob
        self.zero = torch.zeros((), dtype=self.dtype, device=self.dev)
        total = sum(wp[k][0].numel() for k in self.layer_ids)
        bar = progress_bar(total * n_prob, f"prune {n_prob} {self.kind.name} circuit{'s' if n_prob > 1 else ''}",
                           disable=not progress)
        for li in self.layer_ids:
            self.h_cache.clear()
            self.a_in_t = acts[li].mT.contiguous()  # (P, in, N)
            if li < last:
                self.pre_t, self.a_out_t = pre[li].mT.contiguous(), acts[li + 1].mT.contiguous()  # (P, out, N)
            n_out, n_in = wp[li].shape[1:]
            for i in range(n_out):
                for j in range(n_in):
                    self.one_candidate(li, i, j)
                bar.update(n_in * n_prob)
            if li < last:
                pre[li], acts[li + 1] = self.pre_t.mT, self.a_out_t.mT
        bar.close()
        out = []
        for p, o in enumerate(self.objectives):
            ws = [w[p].clone() for w in wp]
            bs = None if not self.mean else [b[p] for b in self.bp]
            out.append((ws, self.means_p[p], self.full_plain[p], o.loss(forward(ws, o.x, bs)).item()))
        return out


def _fast_prune(weight_sets: Sequence[Sequence[Tensor]], objectives: Sequence[Objective], layer_ids: Sequence[int],
                threshold: float, baseline: str, ablation: str, progress: bool, tol: float | None
                ) -> list[tuple[list[Tensor], list[Tensor] | None, float, float]]:
    """Greedy pruning of many problems at once (one objective kind for all): :class:`_FastPruner`.

    Per problem: the final weights, the mean-ablation means (None for zero ablation), the full
    and the final loss.
    """
    return _FastPruner(weight_sets, objectives, layer_ids, threshold, baseline, ablation, tol).run(progress)


def circuit_labels(objective: str | ObjectiveKind, y: Tensor, labels: Sequence[int] | None) -> list[int | None]:
    """The labels to find circuits for: [None] for a label-free objective, else ``labels`` or every label in y."""
    return objective_kind(objective).labels(y, labels)


def objective_inputs(objective: str | ObjectiveKind, x: Tensor, y: Tensor, label: int | None) -> Tensor:
    """The inputs ``objective`` reads for ``label``: the label's images for "seed", all of ``x`` otherwise."""
    return objective_kind(objective).inputs(x, y, label)


@torch.no_grad()
def greedy_circuits_fast(models: MLP | Sequence[MLP], x: Tensor, y: Tensor, labels: Sequence[int] | None = None,
                         layers: Sequence[str] | None = None, threshold: float = 1e-4,
                         baseline: str = "current", progress: bool = False, tol: float | None = None,
                         objective: str | ObjectiveKind = "seed", ablation: str = "zero"
                         ) -> list[dict[int | None, Circuit]]:
    """Greedy circuits of every label for every model, all pruned together.

    For each model, ``{label: circuit}`` with each circuit identical to ``greedy_circuit(model,
    inputs, label, layers, threshold, baseline, objective=objective, ablation=ablation)``, where
    ``inputs`` is ``x[y == label]`` for the seed's objective and all of ``x`` for the others (see
    :func:`objective_inputs`). A label-free objective ("kl") gives one circuit per model, under
    the key None. Models must share their widths. ``labels`` defaults to every label present in
    ``y``. ``tol`` is the band around the threshold whose candidates are re-decided with the
    plain loop's exact arithmetic (see the notes above); the default suits float32 and float64.
    """
    model_list = [models] if isinstance(models, MLP) else list(models)
    if not model_list:
        return []
    for m in model_list[1:]:
        if m.widths != model_list[0].widths:
            raise ValueError(f"models pruned together must share widths ({model_list[0].widths} vs {m.widths})")
    names = check_prune_args(model_list[0], layers, baseline, threshold, objective, ablation)
    threshold = check_threshold(threshold)
    check_tol(tol)
    kind = objective_kind(objective)
    label_list = kind.labels(y, labels)
    inputs = [kind.inputs(x.flatten(1), y, c) for c in label_list]
    weight_sets = [[w.detach() for w in m.weights()] for m in model_list for _ in label_list]
    objectives = [make_objective(kind, ws, inputs[p % len(label_list)].to(ws[0]), label_list[p % len(label_list)])
                  for p, ws in enumerate(weight_sets)]
    layer_ids = [model_list[0].layer_index(n) for n in names]
    # Problems are independent: pruned in chunks, whose per-candidate tensors stay small enough
    # to run from cache (550 problems at once ran 1.5x slower per problem than 200 here).
    results = []
    for lo in range(0, len(objectives), FAST_CHUNK):
        hi = lo + FAST_CHUNK
        results += _fast_prune(weight_sets[lo:hi], objectives[lo:hi], layer_ids, threshold, baseline, ablation,
                               progress, tol)
    out: list[dict[int | None, Circuit]] = []
    for mi in range(len(model_list)):
        circuits: dict[int | None, Circuit] = {}
        for ci, c in enumerate(label_list):
            ws, means, full, final = results[mi * len(label_list) + ci]
            kept = {n: (ws[li] != 0).cpu() for n, li in zip(names, layer_ids)}
            circuits[c] = Circuit(c, baseline, threshold, names, kept, full, final, kind.name, ablation,
                                  pruned_layer_means(means, model_list[0], names))
        out.append(circuits)
    return out


@torch.no_grad()
def greedy_circuit_fast(model: MLP, x: Tensor, label: int | None, layers: Sequence[str] | None = None,
                        threshold: float = 1e-4, baseline: str = "current", progress: bool = False,
                        tol: float | None = None, objective: str | ObjectiveKind = "seed", ablation: str = "zero"
                        ) -> Circuit:
    """``greedy_circuit`` with the fast candidate evaluation: the same arguments, the same circuit."""
    names = check_prune_args(model, layers, baseline, threshold, objective, ablation)
    threshold = check_threshold(threshold)  # a Python float: numpy's would make numpy bools of decisions
    check_tol(tol)
    layer_ids = [model.layer_index(n) for n in names]
    ws0 = [w.detach() for w in model.weights()]
    obj = make_objective(objective, ws0, x.to(ws0[0]), label)
    (ws, means, full, final), = _fast_prune([ws0], [obj], layer_ids, threshold, baseline, ablation, progress, tol)
    kept = {n: (ws[li] != 0).cpu() for n, li in zip(names, layer_ids)}
    return Circuit(obj.label, baseline, threshold, names, kept, full, final, obj.name, ablation,
                   pruned_layer_means(means, model, names))


# --- Faithfulness: does the network cut down to the circuit still do the task? ---------------


@torch.no_grad()
def circuit_logits(model: MLP, circuit: Circuit, x: Tensor) -> Tensor:
    """Logits (N, C) of ``model`` with only ``circuit``'s weights left in its pruned layers.

    Pruned weights are removed as the circuit was searched: zeroed, or (mean ablation) replaced
    by their mean contribution.
    """
    weights = [w.detach() for w in model.weights()]
    dev = weights[0].device
    kept = [circuit.kept[n].to(dev) if n in circuit.kept else None for n in model.layer_names]
    means = None
    if circuit.ablation == "mean":
        if circuit.means is None:
            raise ValueError("a mean-ablated circuit needs its means (Circuit.means); this one has none")
        means = [circuit.means[n].to(weights[0]) if n in circuit.means else None for n in model.layer_names]
    ws, bs = circuit_weights(weights, kept, means)  # type: ignore[arg-type]
    return forward(ws, x.flatten(1).to(weights[0]), bs)


@dataclass
class Faithfulness:
    """How the network cut down to a circuit behaves on a set of inputs (of every class).

    ``classwise_acc`` / ``acc``: accuracy of the pruned network against the true labels.
    ``top1_agreement``: the share of inputs where its argmax equals the full model's.
    For a label's circuit (``label`` not None), the c-vs-rest decision (argmax == c):
    ``share_c`` (``full_share_c``) the share of all inputs the pruned (full) network assigns to
    c; ``agreement`` the share of inputs where the pruned network's decision equals the full
    model's; ``agreement_c`` and ``agreement_rest`` the same on the inputs the full model calls
    c and calls something else; ``balanced_agreement`` their mean. A constant "always c" scores
    balanced agreement 0.5 (1 on c, 0 on the rest), as does "never c": 0.5 is chance.
    """

    label: int | None
    objective: str
    classwise_acc: list[float]
    acc: float
    top1_agreement: float
    share_c: float
    full_share_c: float
    agreement: float
    agreement_c: float
    agreement_rest: float
    balanced_agreement: float

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@torch.no_grad()
def faithfulness_mlp(model: MLP, circuit: Circuit, x: Tensor, y: Tensor, n_classes: int | None = None) -> Faithfulness:
    """How faithful ``circuit`` is to ``model`` on inputs ``x`` (labels ``y``): see :class:`Faithfulness`.

    The seed's MLP's kernel (zero or mean ablation) behind the public
    :func:`modclust.analysis.any_model.faithfulness`. Judge on inputs the circuit was not searched
    on (the test set when it was found on training images).
    """
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"faithfulness needs inputs and labels of one nonzero length, got {len(x)} and {len(y)}")
    full_pred = model(x.flatten(1)).argmax(-1)
    pred = circuit_logits(model, circuit, x).argmax(-1)
    n_classes = int(model.widths[-1]) if n_classes is None else n_classes  # checked by classwise_correct
    return decision_faithfulness(pred, full_pred, y, circuit.label, circuit.objective, n_classes)


def decision_faithfulness(pred: Tensor, full_pred: Tensor, y: Tensor, label: int | None,
                          objective: str | ObjectiveKind, n_classes: int) -> Faithfulness:
    """:class:`Faithfulness` from the cut-down model's predictions ``pred`` (N,), the full model's
    ``full_pred`` (N,) and the labels ``y`` (N,), for a circuit of ``label`` (None: label-free);
    ``objective`` judges the decisions (:meth:`ObjectiveKind.decisions`)."""
    kind = objective_kind(objective)
    classwise = classwise_correct(pred, y, n_classes).tolist()
    acc = float((pred == y).double().mean())
    top1 = float((pred == full_pred).double().mean())
    d = kind.decisions(pred, full_pred, label)
    return Faithfulness(None if label is None else int(label), kind.name, classwise, acc, top1, d.share_c,
                        d.full_share_c, d.agreement, d.agreement_c, d.agreement_rest, d.balanced_agreement)


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
