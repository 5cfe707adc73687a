"""The seed notebook's greedy pruning cell, replayed as written, and the record the paper reads.

The cell saves a weight as ``temp = w.data[i, j]``: a view of the weight, not its value. After
``w.data[i, j] = 0`` the view reads zero, so its "restore" writes zero back, and every visited
weight ends up zeroed whatever the cell decided. (Its printed class-wise accuracy, 1.0 for class
0 and 0 elsewhere, is what an all-zero last layer gives: equal logits, argmax 0.)
:func:`modclust.analysis.circuits.greedy_circuit` saves the value (``.item()``) and restores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from modclust.analysis.ablation import classwise_accuracy
from modclust.analysis.circuits import check_prune_args, check_threshold, greedy_circuit, label_loss
from modclust.analysis.objectives import check_has_examples, check_label
from modclust.core.model import MLP
from modclust.core.train import TrainResult


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
    """The seed notebook's greedy pruning cell as written (see the module docstring), on the
    inputs ``x`` [n, 784] of class ``label``, over the weights of ``layer``."""
    check_prune_args(model, [layer], "current", threshold)  # a clear error for an unknown layer or threshold
    threshold = check_threshold(threshold)
    label = check_label(label, model.widths[-1])
    x = x.flatten(1)
    check_has_examples(len(x), label, "x")
    pruned = MLP(model.widths).to(model.fc1.weight.device)
    pruned.set_weights(model.weights())
    w = getattr(pruned, layer).weight
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


def seed_cell_record(run: TrainResult, test_x: Tensor, test_y: Tensor, label: int, threshold: float = 1e-4,
                     n_classes: int = 10) -> dict[str, Any]:
    """The cell replayed on ``run``'s last layer for ``label`` (on that label's test images, as the
    notebook did), beside what :func:`greedy_circuit` keeps on the same inputs: the ``seed_cell``
    record of ``circuits.json`` that the paper's sentence reads
    (:func:`modclust.paper.numbers.seed_cell_sentence`)."""
    last = run.model.layer_names[-1]
    x_label = test_x[test_y == label]
    cell = seed_cell_prune(run.model, x_label, label, last, threshold)
    ours = greedy_circuit(run.model, x_label, label, layers=[last], threshold=threshold, baseline="current")
    return {**cell.to_dict(), "visited": cell.decided_pruned + cell.decided_kept, "ours_kept": ours.size,
            "classwise_acc": classwise_accuracy(cell.pruned, test_x, test_y, n_classes),
            "lam": run.config.lam, "seed": run.config.seed}
