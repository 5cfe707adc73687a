"""A second circuit-discovery method: learned per-label weight masks (continuous relaxation).

Greedy pruning depends on the order it visits weights. Learning the mask instead (in the
spirit of Csordas et al. 2021) removes that choice: each weight W_ij of the masked layers is
multiplied by sigmoid(l_ij), and the logits are trained with Adam on

    objective(masked model) + sparsity * sum_ij sigmoid(l_ij)

for a fixed number of full-batch steps, then thresholded at 0.5. The objective is any of
:mod:`modclust.analysis.objectives` (the seed's CE towards the label on its images, the faithful
c-vs-rest margin, or the KL to the full model), and a masked-out weight is zeroed or, under
mean ablation, replaced by its mean contribution (the soft gate mixes the two). ``sparsity`` is the price of
keeping one weight in units of loss, so it plays the role of greedy pruning's ``threshold``:
a weight stays when dropping it would cost more than that. Everything is deterministic (the
logits start equal, the batch is the whole set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from modclust.core.checks import check_float, check_int, check_open_unit
from modclust.analysis.circuits import Circuit, check_prune_args, pruned_layer_means
from modclust.core.model import MLP, forward
from modclust.core.progress import track
from modclust.analysis.objectives import ObjectiveKind, ablation_means, circuit_weights, make_objective, objective_kind


@dataclass
class MaskCircuit(Circuit):
    """A ``Circuit`` found by a learned mask; ``baseline`` is "mask", ``threshold`` the cut on sigmoid."""

    sparsity: float = 0.0
    steps: int = 0
    lr: float = 0.0
    soft_loss: float = float("nan")  # loss of the relaxed (soft) mask at the end of training
    history: list[float] = field(default_factory=list)  # objective every ``log_every`` steps

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d.update({"sparsity": self.sparsity, "steps": self.steps, "lr": self.lr, "soft_loss": self.soft_loss})
        return d


def check_mask_options(sparsity: float, lr: float, init_logit: float, steps: int, log_every: int,
                       threshold: float) -> tuple[float, float, float, int, int, float]:
    """The options of a learned-mask search, checked (each error names the option and what it means)."""
    return (check_float("sparsity", sparsity, 0.0, hint="the price of keeping one entry, in units of loss"),
            check_float("lr", lr, 0.0, strict_min=True, hint="Adam's learning rate on the mask logits"),
            check_float("init_logit", init_logit, hint="every mask logit's start; sigmoid(3) keeps 95 %"),
            check_int("steps", steps, 0, hint="full-batch Adam steps"),
            check_int("log_every", log_every, 1, hint="steps between logged objective values"),
            check_open_unit("threshold", threshold, hint="a cut on sigmoid(logit)"))


def learn_mask(masked_loss: Callable[[Sequence[Tensor]], Tensor], like: Sequence[Tensor], sparsity: float,
               steps: int, lr: float, init_logit: float, threshold: float, log_every: int, progress: bool,
               desc: str) -> tuple[list[Tensor], float, float, list[float]]:
    """The mask search every learned-mask circuit shares: one logit per entry of each tensor of
    ``like`` (starting at ``init_logit``), trained with full-batch Adam on
    ``masked_loss(sigmoid(logits)) + sparsity * sum sigmoid(logits)``, then cut at ``threshold``.

    Returns the kept masks (bool, shaped as ``like``), the loss of the soft mask and of the cut
    one at the end, and the objective every ``log_every`` steps.
    """
    logits = [torch.full_like(t, init_logit, requires_grad=True) for t in like]
    opt = torch.optim.Adam(logits, lr=lr)
    history: list[float] = []
    for step in track(range(steps), desc=desc, disable=not progress):
        gates = [torch.sigmoid(lg) for lg in logits]
        objective_value = masked_loss(gates) + sparsity * sum(g.sum() for g in gates)
        opt.zero_grad(set_to_none=True)
        objective_value.backward()  # type: ignore[union-attr]
        opt.step()
        if step % log_every == 0:
            history.append(objective_value.item())  # type: ignore[union-attr]
    with torch.no_grad():
        gates = [torch.sigmoid(lg) for lg in logits]
        soft = masked_loss(gates).item()
        kept = [g > threshold for g in gates]
        final = masked_loss(kept).item()
    return kept, soft, final, history


def mask_circuit_mlp(model: MLP, x: Tensor, label: int | None, layers: Sequence[str] | None = None,
                     sparsity: float = 1e-4, steps: int = 300, lr: float = 0.1, init_logit: float = 3.0,
                     threshold: float = 0.5, log_every: int = 10, progress: bool = False,
                     objective: str | ObjectiveKind = "seed", ablation: str = "zero") -> MaskCircuit:
    """Learn a weight mask that keeps ``objective`` low on ``x`` with few weights (the seed's MLP).

    ``x`` are the inputs the objective reads, as for :func:`modclust.analysis.circuits.greedy_circuit`.
    """
    sparsity, lr, init_logit, steps, log_every, threshold = check_mask_options(sparsity, lr, init_logit, steps,
                                                                               log_every, threshold)
    if layers is not None and not list(layers):
        raise ValueError("a mask circuit needs at least one layer to mask")
    names = check_prune_args(model, layers, "full", 0.0, objective, ablation)
    idx = [model.layer_index(n) for n in names]
    weights = [w.detach().clone() for w in model.weights()]
    obj = make_objective(objective, weights, x.to(weights[0]), label)
    means = ablation_means(weights, obj.x, ablation)
    # The layers before the first masked one never change: run them once.
    first = min(idx)
    h = torch.relu(forward(weights[:first], obj.x)) if first > 0 else obj.x

    def masked_loss(gates: Sequence[Tensor]) -> Tensor:
        kept: list[Tensor | None] = [None] * len(weights)
        for i, g in zip(idx, gates):
            kept[i] = g
        ws, bs = circuit_weights(weights, kept, means)
        return obj.loss(forward(ws[first:], h, None if bs is None else bs[first:]))

    gates, soft, final, history = learn_mask(masked_loss, [weights[i] for i in idx], sparsity, steps, lr, init_logit,
                                             threshold, log_every, progress, f"mask label {obj.label}")
    kept = dict(zip(names, gates))
    with torch.no_grad():
        full = obj.loss(forward(weights, obj.x)).item()
    return MaskCircuit(label=obj.label, baseline="mask", threshold=threshold, layers=names,
                       kept={n: k.cpu() for n, k in kept.items()}, full_loss=full, final_loss=final,
                       objective=obj.name, ablation=ablation, means=pruned_layer_means(means, model, names),
                       sparsity=sparsity, steps=steps, lr=lr, soft_loss=soft, history=history)


def mask_circuits_mlp(model: MLP, x: Tensor, y: Tensor, labels: Sequence[int] | None = None,
                      objective: str | ObjectiveKind = "seed", **kwargs: object) -> list[MaskCircuit]:
    """:func:`mask_circuit_mlp` for each label (default: every label in ``y``), on the inputs its objective reads.

    A label-free objective ("kl") gives one circuit, of label None. The seed's MLP's kernel behind
    :func:`modclust.analysis.any_model.mask_circuits` (the public function, for any model).
    """
    kind = objective_kind(objective)
    return [mask_circuit_mlp(model, kind.inputs(x, y, c), c, objective=kind, **kwargs)  # type: ignore[arg-type]
            for c in kind.labels(y, labels)]
