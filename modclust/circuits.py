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
