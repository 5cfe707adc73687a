"""What a circuit must preserve: per-label objectives, and how pruned weights are ablated.

A circuit search (greedy pruning, learned masks) removes weights while an *objective* stays low.
The objective decides what the circuit is a circuit *of*:

``"seed"``
    The seed notebook's: the mean cross-entropy towards label c on the images of class c only.
    Kept so the seed can be reproduced, but it is **degenerate**: a network that answers c for
    every input minimises it, so pruning is free to delete everything that recognises the other
    classes, and on trained MNIST models it does (the pruned network assigns every test image
    to c).

``"margin"`` (the faithful per-label objective)
    The circuit must keep the full model's own c-vs-rest decisions on inputs of *every* class.
    With logits z, the decision margin m = z_c - max_{j != c} z_j is positive exactly when the
    network answers c, and the objective is its logistic loss against the full model's decision
    t = [argmax_j z^full_j == c]:

        L_c = 1/2 mean_{t=1} softplus(-m) + 1/2 mean_{t=0} softplus(m).

    Every flipped decision costs at least log 2 (times its weight), so a circuit with a low L_c
    keeps the decisions, with margins like the full model's. The two halves are weighted equally
    (class-balanced: the full model says "c" for about a tenth of the inputs), so neither
    "always c" nor "never c" can satisfy it: each pays log 2 or more on half of the objective.
    Using the full model's decisions rather than the true labels asks the circuit to be faithful
    to the model (mistakes included), not to be a better classifier. (The softmax log-odds
    z_c - logsumexp_{j != c} z_j is the smoother choice, but its sign is not the decision: with
    nine close rivals, z_c can be the largest logit at log-odds -2. On our one-epoch models its
    circuits answered c for 92 % of the test images while keeping that loss low.)

``"kl"`` (the whole function)
    KL(p_full || p_circuit), the mean over inputs of every class of the KL divergence between
    the full model's and the circuit's output distributions. It has no label: its circuit is the
    reference for how small the network's whole function can be.

Each objective is a weighted sum over its inputs of a per-input loss, ``sum_n w_n f(z_n)``,
with the weights summing to 1. Each objective is an :class:`ObjectiveKind` object (``SEED``,
``MARGIN``, ``KL``; :func:`objective_kind` maps the names presets and results use to them) that
says which labels it makes circuits for, which inputs it reads, and computes its loss for logits
with any leading dims, so one definition serves the plain loop, the batched pruner (float64,
many problems at once) and the learned masks (autograd).

Ablation: a pruned weight is set to zero (``"zero"``, the default and the seed's choice) or
replaced by its mean contribution (``"mean"``): W_ij a_j(x) becomes W_ij mean_x a_j, with the
mean taken over the objective's inputs under the full model. The constant lands in a bias of
the layer's pre-activation, so a mean-ablated circuit of this bias-free MLP carries biases. The
choice is known to move circuit metrics, so it is reported with every circuit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from modclust.core.checks import check_int
from modclust.core.model import forward

ABLATIONS = ("zero", "mean")


def check_label(label: object, n_outputs: int | None = None) -> int:
    """A circuit's label as an int: whole, >= 0 and, given ``n_outputs``, an output of the model."""
    if n_outputs is None:
        return check_int("label", label, 0, hint="a class index")
    return check_int("label", label, 0, n_outputs - 1, hint=f"an output of this model, which has {n_outputs}")


def check_has_examples(n: int, label: int | None, what: str = "the inputs") -> None:
    """The one error for a circuit search with nothing to read: a label with no examples."""
    if n == 0:
        which = "any label" if label is None else f"label {label}"
        raise ValueError(f"no examples of {which} in {what}: a circuit needs at least one input to read "
                         "(for the 'seed' objective, the images of that class); pick labels present in the data")


def _lse(z: Tensor, unshifted: bool) -> Tensor:
    # exp-sum-log without the max shift is several times faster than logsumexp on a short last
    # dim; float64 overflows only past logits of ~700, and ObjectiveKind.loss then redoes it stably
    return z.exp().sum(-1).log() if unshifted else torch.logsumexp(z, -1)


def _label_column(logits: Tensor, label: Tensor | int) -> Tensor:
    """z_c for each row: (..., N)."""
    if isinstance(label, int):
        return logits[..., label]
    idx = label.reshape(*label.shape, 1, 1).expand(*logits.shape[:-1], 1)
    return logits.gather(-1, idx).squeeze(-1)


def _share(mask: Tensor, of: Tensor) -> float:
    n = int(of.sum())
    return float("nan") if n == 0 else int((mask & of).sum()) / n


def _nanmean_pair(a: float, b: float) -> float:
    vals = [v for v in (a, b) if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


@dataclass(frozen=True)
class Decisions:
    """How a cut-down model's c-vs-rest decisions (argmax == c) compare with the full model's:
    the fields of the same names of :class:`modclust.analysis.circuits.Faithfulness` (nan for a
    label-free objective, whose circuit has no label to decide on)."""

    share_c: float
    full_share_c: float
    agreement: float
    agreement_c: float
    agreement_rest: float
    balanced_agreement: float


_NO_DECISIONS = Decisions(*([float("nan")] * 6))


@dataclass(frozen=True)
class ObjectiveKind:
    """What a circuit is a circuit *of*: one of ``seed``, ``margin`` and ``kl`` (see above).

    A kind says which labels it makes circuits for (:meth:`labels`), which inputs a circuit of a
    label reads (:meth:`inputs`), how the full model's logits on them weight and target the
    loss (:meth:`bind`), the loss of logits with any leading dims (:meth:`loss`, one definition
    for the plain loop, the batched pruner and the learned masks) and how a circuit's decisions
    are judged (:meth:`decisions`). ``name`` is the string presets, results and records use.
    """

    name: ClassVar[str] = ""
    label_free: ClassVar[bool] = False  # one circuit per model (label None), not one per label

    def __str__(self) -> str:
        return self.name

    def labels(self, y: Tensor, labels: Sequence[int] | None) -> list[int | None]:
        """The labels to find circuits for: ``labels``, or every label in ``y`` (None)."""
        if labels is None:
            return sorted(set(y.tolist()))
        if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
            raise TypeError(f"labels must be a sequence of class indices (or None for every label in y), "
                            f"got {labels!r}")
        return [check_label(c) for c in labels]

    def inputs(self, x: Tensor, y: Tensor, label: int | None) -> Tensor:
        """The inputs the circuit of ``label`` reads, from inputs ``x`` of every class, labels ``y``."""
        return x

    def circuit_label(self, label: object, n_outputs: int) -> int | None:
        """``label`` checked against a model with ``n_outputs`` outputs (None for a label-free kind)."""
        if label is None:
            raise ValueError(f"the {self.name!r} objective is per label: give the label")
        return check_label(label, n_outputs)

    def stacked_labels(self, labels: Sequence[int | None], device: torch.device) -> Tensor | None:
        """The labels of many problems as the batched loss reads them: a (P,) long tensor."""
        return torch.tensor([int(c) for c in labels], device=device)  # type: ignore[arg-type]

    def targets(self, full: Tensor, label: int | None, weight: Tensor) -> tuple[Tensor, Tensor | None, float]:
        """The weights, target and offset of the loss, from the full model's logits ``full`` (N, C)
        and uniform weights ``weight`` (N,)."""
        return weight, None, 0.0

    def per_input(self, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                  unshifted: bool) -> Tensor:
        """The per-input loss f(logits_n): (..., N)."""
        raise NotImplementedError

    def loss(self, logits: Tensor, label: Tensor | int | None, target: Tensor | None, weight: Tensor,
             offset: Tensor | float = 0.0, unshifted: bool = False) -> Tensor:
        """``sum_n weight_n f(logits_n)`` for logits (..., N, C): shape (...).

        ``label``: an int, or a (...) long tensor of per-problem labels (unused by "kl").
        ``target``: "margin": (..., N) the full model's decisions as 0./1.; "kl": (..., N, C)
        its probabilities; "seed": unused. ``weight``: (..., N), summing to 1 over N.
        ``offset``: added (for "kl", sum_n w_n sum_j p log p, which makes the loss a KL
        divergence). ``unshifted``: a faster log-sum-exp for float64 (the result is recomputed
        stably if it overflows).
        """
        if unshifted:
            out = (weight * self.per_input(logits, label, target, True)).sum(-1) + offset
            if bool(torch.isfinite(out).all()):
                return out
        return (weight * self.per_input(logits, label, target, False)).sum(-1) + offset

    def decisions(self, pred: Tensor, full_pred: Tensor, label: int | None) -> Decisions:
        """The c-vs-rest decisions of the cut-down model (predictions ``pred`` (N,)) against the
        full model's (``full_pred``), for a circuit of ``label``."""
        if label is None:
            return _NO_DECISIONS
        c = int(label)
        says_c, full_c = pred == c, full_pred == c
        same = says_c == full_c
        everything = torch.ones_like(same)
        agree_c, agree_rest = _share(same, full_c), _share(same, ~full_c)
        balanced = _nanmean_pair(agree_c, agree_rest)
        return Decisions(_share(says_c, everything), _share(full_c, everything), _share(same, everything), agree_c,
                         agree_rest, balanced)


@dataclass(frozen=True)
class SeedObjective(ObjectiveKind):
    """The seed's: the mean cross-entropy towards the label, on the images of that label only."""

    name: ClassVar[str] = "seed"

    def inputs(self, x: Tensor, y: Tensor, label: int | None) -> Tensor:
        xc = x[y == label]
        check_has_examples(len(xc), label, "the data")
        return xc

    def per_input(self, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                  unshifted: bool) -> Tensor:
        return _lse(logits, unshifted) - _label_column(logits, label)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MarginObjective(ObjectiveKind):
    """The faithful per-label one: the logistic loss of the c-vs-rest decision margin against the
    full model's decisions, the two sides weighted half each."""

    name: ClassVar[str] = "margin"

    def targets(self, full: Tensor, label: int | None, weight: Tensor) -> tuple[Tensor, Tensor | None, float]:
        n = len(full)
        target = (full.argmax(-1) == label).to(full.dtype)
        n_pos = int(target.sum())
        if 0 < n_pos < n:
            weight = torch.where(target > 0, 0.5 / n_pos, 0.5 / (n - n_pos)).to(full.dtype)
        return weight, target, 0.0

    def per_input(self, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                  unshifted: bool) -> Tensor:
        n_classes = logits.shape[-1]
        if isinstance(label, int):
            is_c = (torch.arange(n_classes, device=logits.device) == label)[None]  # (1, C)
        else:
            # (..., 1, C)
            is_c = torch.arange(n_classes, device=logits.device) == label[..., None, None]  # type: ignore[index]
        rival = logits.masked_fill(is_c, float("-inf")).amax(-1)  # max_{j != c} z_j
        m = _label_column(logits, label) - rival  # type: ignore[arg-type]  # > 0 exactly when argmax is c
        # the logistic loss of the decision margin: t softplus(-m) + (1 - t) softplus(m)
        return F.softplus(m) - target * m  # type: ignore[operator]


@dataclass(frozen=True)
class KLObjective(ObjectiveKind):
    """The whole function: KL(p_full || p_circuit) on inputs of every class; no label."""

    name: ClassVar[str] = "kl"
    label_free: ClassVar[bool] = True

    def labels(self, y: Tensor, labels: Sequence[int] | None) -> list[int | None]:
        return [None]

    def circuit_label(self, label: object, n_outputs: int) -> int | None:
        return None

    def stacked_labels(self, labels: Sequence[int | None], device: torch.device) -> Tensor | None:
        return None

    def targets(self, full: Tensor, label: int | None, weight: Tensor) -> tuple[Tensor, Tensor | None, float]:
        target = torch.softmax(full, -1)
        logp = torch.log_softmax(full, -1)
        return weight, target, float((weight * (target * logp).sum(-1)).sum())

    def per_input(self, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                  unshifted: bool) -> Tensor:
        return _lse(logits, unshifted) - (target * logits).sum(-1)  # type: ignore[operator]

    def decisions(self, pred: Tensor, full_pred: Tensor, label: int | None) -> Decisions:
        return _NO_DECISIONS


SEED, MARGIN, KL = SeedObjective(), MarginObjective(), KLObjective()
KINDS: dict[str, ObjectiveKind] = {k.name: k for k in (SEED, MARGIN, KL)}
"""The objective kinds by the name presets, results and records use."""
OBJECTIVES = tuple(KINDS)
LABEL_FREE = tuple(n for n, k in KINDS.items() if k.label_free)  # kinds whose circuit is one per model


def objective_kind(objective: str | ObjectiveKind) -> ObjectiveKind:
    """The kind named ``objective`` ("seed", "margin", "kl"), or ``objective`` itself if it is one."""
    if isinstance(objective, ObjectiveKind):
        return objective
    if isinstance(objective, str) and objective in KINDS:
        return KINDS[objective]
    raise ValueError(f"objective must be one of {OBJECTIVES} ('seed' is the seed notebook's, degenerate; "
                     f"'margin' keeps the c-vs-rest decisions; 'kl' the whole output), got {objective!r}")


def check_objective(objective: str | ObjectiveKind, ablation: str = "zero") -> ObjectiveKind:
    """The objective's kind (see :func:`objective_kind`), with ``ablation`` checked."""
    kind = objective_kind(objective)
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be 'zero' (pruned weights set to 0) or 'mean' (replaced by their mean "
                         f"contribution), got {ablation!r}")
    return kind


def objective_loss(kind: str | ObjectiveKind, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                   weight: Tensor, offset: Tensor | float = 0.0, unshifted: bool = False) -> Tensor:
    """:meth:`ObjectiveKind.loss` of the kind ``kind`` (a name or a kind)."""
    return objective_kind(kind).loss(logits, label, target, weight, offset, unshifted)


@dataclass
class Objective:
    """One circuit search's objective: the inputs it reads and what it asks of the logits.

    ``kind`` is the :class:`ObjectiveKind`; ``x`` (N, d_in) are the inputs; ``weight`` (N,)
    their weights (summing to 1); ``target`` the full model's decisions (margin, (N,)) or
    probabilities (kl, (N, C)); ``offset`` the constant that makes "kl" a divergence. ``label``
    is None for "kl".
    """

    kind: ObjectiveKind
    label: int | None
    x: Tensor
    weight: Tensor
    target: Tensor | None
    offset: float

    @property
    def name(self) -> str:
        return self.kind.name

    def loss(self, logits: Tensor) -> Tensor:
        """The objective of logits (N, C): a 0-d tensor."""
        return self.kind.loss(logits, self.label, self.target, self.weight, self.offset)


def objective_from_logits(kind: str | ObjectiveKind, full_logits: Tensor, x: Tensor, label: int | None) -> Objective:
    """The objective ``kind`` for ``label`` on inputs ``x`` (N, ...), from the full model's logits
    (N, C) on them: any model's (``modclust.analysis.any_model``) or the MLP's (:func:`make_objective`).

    "margin" (the faithful one) weighs the inputs the full model calls ``label`` and the rest
    half each, so a constant "always c" pays at least log 2 / 2; "kl" has no label; "seed" reads
    ``x`` as the label's images. ``Objective.x`` is ``x`` as given.
    """
    rule = objective_kind(kind)
    if full_logits.ndim != 2 or len(full_logits) != len(x):
        raise ValueError(f"full_logits must be (N, C) for the N inputs, got {tuple(full_logits.shape)} for {len(x)}")
    n = len(x)
    label = rule.circuit_label(label, int(full_logits.shape[-1]))
    check_has_examples(n, label, f"the inputs of the {rule.name!r} objective")
    full = full_logits.detach()
    weight = torch.full((n,), 1.0 / n, dtype=full.dtype, device=full.device)
    weight, target, offset = rule.targets(full, label, weight)
    return Objective(rule, label, x, weight, target, offset)


def make_objective(kind: str | ObjectiveKind, weights: Sequence[Tensor], x: Tensor, label: int | None) -> Objective:
    """The objective ``kind`` for ``label`` on inputs ``x``, against the full model ``weights``.

    ``x`` are the inputs the objective reads: for "seed", the images of class ``label``; for
    "margin" and "kl", inputs of every class (a class-balanced set is best).
    """
    rule = objective_kind(kind)
    x = x.flatten(1)
    with torch.no_grad():
        full = forward([w.detach() for w in weights], x)  # (N, C)
    return objective_from_logits(rule, full, x, label)


def ablation_means(weights: Sequence[Tensor], x: Tensor, ablation: str) -> list[Tensor] | None:
    """Per layer, the mean over ``x`` of its input under the full model (None for "zero")."""
    check_objective("seed", ablation)
    if ablation == "zero":
        return None
    means = []
    h = x.flatten(1)
    with torch.no_grad():
        for i, w in enumerate(weights):
            means.append(h.mean(0))
            h = h @ w.detach().transpose(-1, -2)
            if i < len(weights) - 1:
                h = torch.relu(h)
    return means


def circuit_weights(weights: Sequence[Tensor], kept: Sequence[Tensor | None], means: Sequence[Tensor] | None
                    ) -> tuple[list[Tensor], list[Tensor | None] | None]:
    """The circuit's weights (pruned ones zeroed) and, under mean ablation, its biases.

    ``kept`` has one entry per layer: a mask (bool, or a soft gate in [0, 1] for learned masks)
    or None for a layer that is not pruned. The bias of a pruned layer is
    ``(W * (1 - kept)) @ mean_input``: the pruned weights' mean contribution.
    """
    ws: list[Tensor] = []
    bs: list[Tensor | None] = []
    for i, (w, k) in enumerate(zip(weights, kept, strict=True)):
        if k is None:
            ws.append(w)
            bs.append(None)
            continue
        k = k.to(w.dtype)
        ws.append(w * k)
        bs.append(None if means is None else (w * (1 - k)) @ means[i])
    return ws, (None if means is None else bs)
