"""A second circuit-discovery method: learned per-label weight masks (continuous relaxation).

Greedy pruning depends on the order it visits weights. Learning the mask instead (in the
spirit of Csordas et al. 2021) removes that choice: each weight W_ij of the masked layers is
multiplied by sigmoid(l_ij), and the logits are trained with Adam on

    CE(masked model on the label's images, label) + sparsity * sum_ij sigmoid(l_ij)

for a fixed number of full-batch steps, then thresholded at 0.5. ``sparsity`` is the price of
keeping one weight in units of loss, so it plays the role of greedy pruning's ``threshold``:
a weight stays when dropping it would cost more than that. Everything is deterministic (the
logits start equal, the batch is the whole set).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from modclust.circuits import Circuit, label_loss
from modclust.model import MLP, forward


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


def mask_circuit(model: MLP, x: Tensor, label: int, layers: Sequence[str] | None = None, sparsity: float = 1e-4,
                 steps: int = 300, lr: float = 0.1, init_logit: float = 3.0, threshold: float = 0.5,
                 log_every: int = 10, progress: bool = False) -> MaskCircuit:
    """Learn a weight mask that keeps the model's loss towards ``label`` on ``x`` with few weights."""
    if sparsity < 0 or steps < 0 or lr <= 0:
        raise ValueError("sparsity and steps must be >= 0 and lr > 0")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a cut on sigmoid(logit), so it must lie in (0, 1), got {threshold}")
    names = list(model.layer_names if layers is None else layers)
    idx = [model.layer_index(n) for n in names]
    if not names:
        raise ValueError("mask_circuit needs at least one layer to mask")
    weights = [w.detach().clone() for w in model.weights()]
    x = x.flatten(1).to(weights[0])
    target = torch.full((x.shape[0],), int(label), device=x.device)
    logits = [torch.full_like(weights[i], init_logit, requires_grad=True) for i in idx]
    opt = torch.optim.Adam(logits, lr=lr)
    # The layers before the first masked one never change: run them once.
    first = min(idx)
    h = torch.relu(forward(weights[:first], x)) if first > 0 else x

    def masked(gates: list[Tensor]) -> list[Tensor]:
        ws = list(weights)
        for i, g in zip(idx, gates):
            ws[i] = weights[i] * g
        return ws[first:]

    history: list[float] = []
    for step in tqdm(range(steps), desc=f"mask label {label}", disable=not progress, mininterval=0.5):
        gates = [torch.sigmoid(lg) for lg in logits]
        ce = F.cross_entropy(forward(masked(gates), h), target)
        objective = ce + sparsity * sum(g.sum() for g in gates)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        if step % log_every == 0:
            history.append(objective.item())
    with torch.no_grad():
        gates = [torch.sigmoid(lg) for lg in logits]
        soft = F.cross_entropy(forward(masked(gates), h), target).item()
        kept = {n: g > threshold for n, g in zip(names, gates)}
        final = label_loss(masked([k.to(weights[0]) for k in kept.values()]), h, label).item()
        full = label_loss(weights, x, label).item()
    return MaskCircuit(label=int(label), baseline="mask", threshold=threshold, layers=names,
                       kept={n: k.cpu() for n, k in kept.items()}, full_loss=full, final_loss=final,
                       sparsity=sparsity, steps=steps, lr=lr, soft_loss=soft, history=history)


def mask_circuits(model: MLP, x: Tensor, y: Tensor, labels: Sequence[int] | None = None,
                  **kwargs: object) -> list[MaskCircuit]:
    """``mask_circuit`` for each label (default: every label in ``y``) on that label's examples."""
    labels = sorted(int(v) for v in torch.unique(y)) if labels is None else list(labels)
    out = []
    for c in labels:
        xs = x[y == c]
        if len(xs) == 0:
            raise ValueError(f"no examples of label {c} to learn its circuit on")
        out.append(mask_circuit(model, xs, c, **kwargs))  # type: ignore[arg-type]
    return out
