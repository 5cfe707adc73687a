"""Per-run analyses beyond the seed, as JSON-ready dicts for the "beyond" notebook stage.

Each function takes one trained run and the data and returns plain values, so a notebook can
map it over runs and summarise over seeds. They only compose the library's measures:

- ``spectral_baseline``: clusters found after training (spectral co-clustering) against the
  fixed blocks: C, n-cut, z-scores against shuffled weights, and cluster ablations of both;
- ``circuit_analysis``: per-label circuits by greedy pruning and by learned masks, their sizes,
  the IoU between labels, greedy-vs-mask agreement, and the share inside the dominant cluster;
- ``selectivity_analysis``: unit and cluster class selectivity and mutual information.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from modclust import circuits as _circuits
from modclust.circuits import Circuit, circuit_iou, cluster_share, mask_iou
from modclust.data import Dataset
from modclust.evaluate import ablate
from modclust.interpret import layer_activations
from modclust.mask_circuits import mask_circuits
from modclust.partition import Partition
from modclust.selectivity import cluster_selectivity, unit_selectivity
from modclust.spectral import ncut, spectral_null, weight_clusterability
from modclust.train import TrainResult


def blocks_of(result: TrainResult, layer: str) -> Partition:
    """The run's partition of ``layer``, or equal blocks with its k when the layer was not clustered."""
    if layer in result.partitions:
        return result.partitions[layer]
    w = getattr(result.model, layer).weight
    return Partition.equal_blocks(tuple(w.shape), min(result.config.n_clusters, *w.shape))


def _ablation_summary(result: TrainResult, part: Partition, data: Dataset, layer: str) -> dict[str, Any]:
    ab = ablate(result.model, part, data.test_x, data.test_y, layer, data.n_classes)
    return {"full_acc": ab.full_acc, "off_acc": ab.off_acc, "on_acc": ab.on_acc,
            "off_classwise": ab.off_classwise, "on_classwise": ab.on_classwise}


def spectral_baseline(result: TrainResult, data: Dataset, layer: str = "fc2", n_draws: int = 20,
                      seed: int = 0) -> dict[str, Any]:
    """Spectral clusters of a trained layer vs its fixed blocks, each with C, n-cut and ablations."""
    w = getattr(result.model, layer).weight.detach().cpu()
    blocks = blocks_of(result, layer)
    null = spectral_null(w, blocks.k, n_draws=n_draws, seed=seed)
    found = Partition.from_dict(null.partition)
    spectral = {k: v for k, v in null.to_dict().items() if k != "partition"}
    spectral.update({"partition": null.partition, "sizes": [[len(r), len(c)] for r, c in zip(found.rows, found.cols)],
                     "ablation": _ablation_summary(result, found, data, layer)})
    return {"layer": layer,
            "spectral": spectral,
            "blocks": {"c": weight_clusterability(w, blocks), "ncut": ncut(w, blocks),
                       "ablation": _ablation_summary(result, blocks, data, layer)}}


def greedy_circuits(result: TrainResult, data: Dataset, labels: Sequence[int], layers: Sequence[str],
                    threshold: float = 1e-4, baseline: str = "current") -> list[Circuit]:
    """Greedy circuits of the labels on the test set; the library's fast pruner when it has one."""
    x, y = data.test_x, data.test_y
    fast = getattr(_circuits, "greedy_circuits_fast", None)
    if fast is not None:
        found = fast(result.model, x, y, labels=list(labels), layers=list(layers), threshold=threshold,
                     baseline=baseline)[0]
        return [found[c] for c in labels]
    return [_circuits.greedy_circuit(result.model, x[y == c], c, layers=list(layers), threshold=threshold,
                                     baseline=baseline) for c in labels]


def _offdiag_mean(m: torch.Tensor) -> float:
    n = m.shape[0]
    if n < 2:
        return float("nan")
    vals = m[~torch.eye(n, dtype=torch.bool)]
    vals = vals[~vals.isnan()]
    return float(vals.mean()) if len(vals) else float("nan")


def _method_summary(circs: Sequence[Circuit], part: Partition | None, share_layer: str) -> dict[str, Any]:
    iou = circuit_iou(circs)
    out: dict[str, Any] = {"sizes": [c.size for c in circs], "size_per_layer": [c.size_per_layer for c in circs],
                           "final_loss": [c.final_loss for c in circs], "full_loss": [c.full_loss for c in circs],
                           "iou": iou.tolist(), "mean_iou": _offdiag_mean(iou)}
    if part is not None and all(share_layer in c.kept for c in circs):
        shares = [cluster_share(c, part, share_layer) for c in circs]
        out["share"] = [s.to_dict() for s in shares]
    return out


def circuit_analysis(result: TrainResult, data: Dataset, labels: Sequence[int] | None = None,
                     layers: Sequence[str] = ("fc2", "fc3"), threshold: float = 1e-4, baseline: str = "current",
                     mask_sparsity: float = 1e-4, mask_steps: int = 300, share_layer: str = "fc2"
                     ) -> dict[str, Any]:
    """Greedy and learned-mask circuits of each label: sizes, overlap, agreement, cluster share.

    ``mask_sparsity`` defaults to greedy's threshold: both then keep a weight when dropping it
    costs more than that much loss, so their sizes are comparable.
    """
    labels = list(range(data.n_classes)) if not labels else [int(c) for c in labels]
    part = blocks_of(result, share_layer) if share_layer in layers else None
    greedy = greedy_circuits(result, data, labels, layers, threshold, baseline)
    masks = mask_circuits(result.model, data.test_x, data.test_y, labels, layers=list(layers),
                          sparsity=mask_sparsity, steps=mask_steps)
    agree = [mask_iou(torch.cat([g.kept[n].flatten() for n in layers]), torch.cat([m.kept[n].flatten() for n in layers]))
             for g, m in zip(greedy, masks)]
    return {"labels": labels, "layers": list(layers), "share_layer": share_layer if part else None,
            "greedy": _method_summary(greedy, part, share_layer),
            "mask": _method_summary(masks, part, share_layer),
            "greedy_vs_mask_iou": agree}


def selectivity_analysis(result: TrainResult, data: Dataset, layers: Sequence[str] = ("fc1", "fc2"),
                         cluster_layer: str = "fc2", n_bins: int = 10) -> dict[str, Any]:
    """Per-unit selectivity and MI of each layer, and per cluster of ``cluster_layer``'s output units."""
    x, y = data.test_x, data.test_y
    units = {name: unit_selectivity(result.model, x, y, name, data.n_classes, n_bins).to_dict() for name in layers}
    acts = layer_activations(result.model, x, cluster_layer).cpu()
    clusters = cluster_selectivity(acts, y.cpu(), blocks_of(result, cluster_layer).rows, data.n_classes, n_bins)
    return {"units": units, "cluster_layer": cluster_layer, "clusters": clusters.to_dict()}
