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
with the weights summing to 1. :func:`objective_loss` computes it for logits with any leading
dims, so one definition serves the plain loop, the batched pruner (float64, many problems at
once) and the learned masks (autograd).

Ablation: a pruned weight is set to zero (``"zero"``, the default and the seed's choice) or
replaced by its mean contribution (``"mean"``): W_ij a_j(x) becomes W_ij mean_x a_j, with the
mean taken over the objective's inputs under the full model. The constant lands in a bias of
the layer's pre-activation, so a mean-ablated circuit of this bias-free MLP carries biases. The
choice is known to move circuit metrics, so it is reported with every circuit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from modclust.core.checks import check_int
from modclust.core.model import forward

OBJECTIVES = ("seed", "margin", "kl")
ABLATIONS = ("zero", "mean")
LABEL_FREE = ("kl",)  # objectives whose circuit is one per model, not one per label


def check_objective(objective: str, ablation: str = "zero") -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES} ('seed' is the seed notebook's, degenerate; "
                         f"'margin' keeps the c-vs-rest decisions; 'kl' the whole output), got {objective!r}")
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be 'zero' (pruned weights set to 0) or 'mean' (replaced by their mean "
                         f"contribution), got {ablation!r}")


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
    # dim; float64 overflows only past logits of ~700, and objective_loss then redoes it stably
    return z.exp().sum(-1).log() if unshifted else torch.logsumexp(z, -1)


def objective_loss(kind: str, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                   weight: Tensor, offset: Tensor | float = 0.0, unshifted: bool = False) -> Tensor:
    """``sum_n weight_n f(logits_n)`` for logits (..., N, C): shape (...).

    ``label``: an int, or a (...) long tensor of per-problem labels (unused by "kl").
    ``target``: "margin": (..., N) the full model's decisions as 0./1.; "kl": (..., N, C) its
    probabilities; "seed": unused. ``weight``: (..., N), summing to 1 over N. ``offset``: added
    (for "kl", sum_n w_n sum_j p log p, which makes the loss a KL divergence).
    ``unshifted``: a faster log-sum-exp for float64 (the result is recomputed stably if it
    overflows).
    """
    if unshifted:
        out = _objective_loss(kind, logits, label, target, weight, offset, True)
        if bool(torch.isfinite(out).all()):
            return out
    return _objective_loss(kind, logits, label, target, weight, offset, False)


def _label_column(logits: Tensor, label: Tensor | int) -> Tensor:
    """z_c for each row: (..., N)."""
    if isinstance(label, int):
        return logits[..., label]
    idx = label.reshape(*label.shape, 1, 1).expand(*logits.shape[:-1], 1)
    return logits.gather(-1, idx).squeeze(-1)


def _objective_loss(kind: str, logits: Tensor, label: Tensor | int | None, target: Tensor | None,
                    weight: Tensor, offset: Tensor | float, unshifted: bool) -> Tensor:
    if kind == "seed":
        per = _lse(logits, unshifted) - _label_column(logits, label)  # type: ignore[arg-type]
    elif kind == "margin":
        n_classes = logits.shape[-1]
        if isinstance(label, int):
            is_c = (torch.arange(n_classes, device=logits.device) == label)[None]  # (1, C)
        else:
            is_c = torch.arange(n_classes, device=logits.device) == label[..., None, None]  # type: ignore[index]  # (..., 1, C)
        rival = logits.masked_fill(is_c, float("-inf")).amax(-1)  # max_{j != c} z_j
        m = _label_column(logits, label) - rival  # type: ignore[arg-type]  # > 0 exactly when argmax is c
        # the logistic loss of the decision margin: t softplus(-m) + (1 - t) softplus(m)
        per = F.softplus(m) - target * m  # type: ignore[operator]
    elif kind == "kl":
        per = _lse(logits, unshifted) - (target * logits).sum(-1)  # type: ignore[operator]
    else:
        check_objective(kind)
        raise AssertionError
    return (weight * per).sum(-1) + offset


@dataclass
class Objective:
    """One circuit search's objective: the inputs it reads and what it asks of the logits.

    ``x`` (N, d_in) are the inputs; ``weight`` (N,) their weights (summing to 1); ``target`` the
    full model's decisions (margin, (N,)) or probabilities (kl, (N, C)); ``offset`` the constant
    that makes "kl" a divergence. ``label`` is None for "kl".
    """

    kind: str
    label: int | None
    x: Tensor
    weight: Tensor
    target: Tensor | None
    offset: float

    def loss(self, logits: Tensor) -> Tensor:
        """The objective of logits (N, C): a 0-d tensor."""
        return objective_loss(self.kind, logits, self.label, self.target, self.weight, self.offset)


def objective_from_logits(kind: str, full_logits: Tensor, x: Tensor, label: int | None) -> Objective:
    """The objective ``kind`` for ``label`` on inputs ``x`` (N, ...), from the full model's logits
    (N, C) on them: any model's (``modclust.analysis.any_model``) or the MLP's (:func:`make_objective`).

    "margin" (the faithful one) weighs the inputs the full model calls ``label`` and the rest
    half each, so a constant "always c" pays at least log 2 / 2; "kl" has no label; "seed" reads
    ``x`` as the label's images. ``Objective.x`` is ``x`` as given.
    """
    check_objective(kind)
    if full_logits.ndim != 2 or len(full_logits) != len(x):
        raise ValueError(f"full_logits must be (N, C) for the N inputs, got {tuple(full_logits.shape)} for {len(x)}")
    n = len(x)
    if kind in LABEL_FREE:
        label = None
    elif label is None:
        raise ValueError(f"the {kind!r} objective is per label: give the label")
    else:
        label = check_label(label, int(full_logits.shape[-1]))
    check_has_examples(n, label, f"the inputs of the {kind!r} objective")
    full = full_logits.detach()
    dtype = full.dtype
    weight = torch.full((n,), 1.0 / n, dtype=dtype, device=full.device)
    target: Tensor | None = None
    offset = 0.0
    if kind == "margin":
        target = (full.argmax(-1) == label).to(dtype)
        n_pos = int(target.sum())
        if 0 < n_pos < n:
            weight = torch.where(target > 0, 0.5 / n_pos, 0.5 / (n - n_pos)).to(dtype)
    elif kind == "kl":
        target = torch.softmax(full, -1)
        logp = torch.log_softmax(full, -1)
        offset = float((weight * (target * logp).sum(-1)).sum())
    return Objective(kind, label, x, weight, target, offset)


def make_objective(kind: str, weights: Sequence[Tensor], x: Tensor, label: int | None) -> Objective:
    """The objective ``kind`` for ``label`` on inputs ``x``, against the full model ``weights``.

    ``x`` are the inputs the objective reads: for "seed", the images of class ``label``; for
    "margin" and "kl", inputs of every class (a class-balanced set is best).
    """
    check_objective(kind)
    x = x.flatten(1)
    with torch.no_grad():
        full = forward([w.detach() for w in weights], x)  # (N, C)
    return objective_from_logits(kind, full, x, label)


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
