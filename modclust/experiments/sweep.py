"""The accuracy / clusterability trade-off: a lambda sweep over seeds, and its Pareto frontier.

One run is not evidence: the seed notebook's "clustered is more accurate" rests on a single
seed. The sweep trains every (lambda, seed, clustered layers) combination, batching those that
share a shape into one ``train_many`` call, and returns one flat record per run so the results
can be tabulated, plotted and summarised with intervals. Runs with the same seed share their
initialisation and data order whatever lambda is, so differences to lambda = 0 are paired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from modclust.core.clusterability import clusterability
from modclust.core.data import Dataset
from modclust.core.partition import Partition
from modclust.core.stats import compare, mean_ci
from modclust.core.train import TrainConfig, TrainResult, train_many

LayerSet = str | Sequence[str]


def resolve_layers(layers: LayerSet, widths: Sequence[int]) -> tuple[str, ...]:
    """A layer set as layer names: ``"all"`` is every Linear layer, a name is that one layer."""
    names = tuple(f"fc{i + 1}" for i in range(len(widths) - 1))
    if layers == "all":
        return names
    chosen = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ValueError(f"layers {unknown} are not layers of this MLP ({list(names)}); use names or 'all'")
    return chosen


def layers_label(clustered: Sequence[str], widths: Sequence[int]) -> str:
    """A short name for a set of clustered layers: "all", "none", or names joined by "+"."""
    if not clustered:
        return "none"
    if tuple(clustered) == resolve_layers("all", widths):
        return "all"
    return "+".join(clustered)


def sweep_configs(lams: Iterable[float], seeds: Iterable[int], layer_sets: Sequence[LayerSet] = ("fc2",),
                  base: TrainConfig | None = None) -> list[TrainConfig]:
    """Every (layers, lambda, seed) combination as a TrainConfig derived from ``base``."""
    base = TrainConfig() if base is None else base
    lams, seeds = [float(v) for v in lams], [int(s) for s in seeds]
    if not lams or not seeds or not layer_sets:
        raise ValueError("a sweep needs at least one lambda, one seed and one layer set")
    return [dataclasses.replace(base, lam=lam, seed=seed, clustered_layers=resolve_layers(ls, base.widths))
            for ls in layer_sets for lam in lams for seed in seeds]


def _group_key(c: TrainConfig) -> tuple:
    return (c.dataset, c.widths, c.batch_size, c.epochs, c.clustered_layers)


def train_sweep(configs: Sequence[TrainConfig], data: Dataset, progress: bool = True) -> list[TrainResult]:
    """Train the configs, one batched ``train_many`` call per group of equal shape; input order kept."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(_group_key(c), []).append(i)
    out: list[TrainResult | None] = [None] * len(configs)
    for idx in groups.values():
        for i, res in zip(idx, train_many([configs[i] for i in idx], data, progress=progress)):
            out[i] = res
    return out  # type: ignore[return-value]


def layer_clusterabilities(result: TrainResult) -> dict[str, float]:
    """C of every layer under its equal-block partition with the run's k (clamped to the layer).

    Measured on every layer, clustered or not, so an unclustered run shows how far each of its
    layers sits from chance (about 1/k).
    """
    out = {}
    for name, w in zip(result.model.layer_names, result.model.weights()):
        w = w.detach()
        part = result.partitions.get(name) or Partition.equal_blocks(w.shape, min(result.config.n_clusters, *w.shape))
        out[name] = float(clusterability(w, part.mask(w.device, w.dtype)))
    return out


def record(result: TrainResult) -> dict[str, Any]:
    """One flat, JSON-ready row for a trained run: its settings, accuracy and C per layer."""
    cfg = result.config
    row: dict[str, Any] = {
        "dataset": cfg.dataset, "lam": cfg.lam, "seed": cfg.seed, "n_clusters": cfg.n_clusters,
        "layers": layers_label(cfg.clustered_layers, cfg.widths), "clustered_layers": list(cfg.clustered_layers),
        "epochs": cfg.epochs, "test_acc": result.test_acc,
    }
    cs = layer_clusterabilities(result)
    row.update({f"C_{name}": c for name, c in cs.items()})
    row["C_clustered"] = (sum(cs[n] for n in cfg.clustered_layers) / len(cfg.clustered_layers)
                          if cfg.clustered_layers else None)
    return row


def run_sweep(lams: Iterable[float], seeds: Iterable[int], data: Dataset, layer_sets: Sequence[LayerSet] = ("fc2",),
              base: TrainConfig | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train the whole sweep and return one record per run (see ``record``)."""
    configs = sweep_configs(lams, seeds, layer_sets, base)
    return [record(r) for r in train_sweep(configs, data, progress=progress)]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both maximised), by x.

    A point is dominated when another is at least as good on both and better on one; equal
    points are all kept. For (clusterability, accuracy) this is the trade-off curve.
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y, best_x = [], float("-inf"), None
    for i in order:
        x, y = points[i]
        if y > best_y or (y == best_y and x == best_x):
            front.append(i)
            if y > best_y:
                best_y, best_x = y, x
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def summarize(records: Sequence[dict[str, Any]], metrics: Sequence[str] = ("test_acc", "C_fc2"),
              by: Sequence[str] = ("layers", "lam")) -> list[dict[str, Any]]:
    """Mean and 95 % t-interval of each metric per group (one row per group, first-seen order)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    rows = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(by, key))
        row["n"] = len(rs)
        for m in metrics:
            vals = [r[m] for r in rs if r.get(m) is not None]
            row[m] = mean_ci(vals).to_dict() if vals else None
        rows.append(row)
    return rows


def paired_difference(records: Sequence[dict[str, Any]], metric: str = "test_acc", baseline_lam: float = 0.0
                      ) -> list[dict[str, Any]]:
    """Per (layers, lambda): metric minus the same seed's value at ``baseline_lam``, with an interval.

    Pairing by seed removes the init and data-order noise the two runs share. ``direction`` is
    "higher" or "lower" when the paired 95 % interval of the difference excludes 0, else
    "indistinguishable" (also with fewer than two seeds); ``welch`` is the unpaired verdict of
    ``stats.compare``, for reference.
    """
    base: dict[tuple, float] = {}
    for r in records:
        if r["lam"] == baseline_lam:
            base[(r["layers"], r["seed"])] = r[metric]
            base.setdefault(("*", r["seed"]), r[metric])  # lam = baseline trains the same whatever the layers
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in records:
        if r["lam"] == baseline_lam:
            continue
        b = base.get((r["layers"], r["seed"]), base.get(("*", r["seed"])))
        if b is None:
            continue
        groups.setdefault((r["layers"], r["lam"]), []).append((r[metric], b))
    rows = []
    for (layers, lam), pairs in groups.items():
        diffs = [a - b for a, b in pairs]
        iv = mean_ci(diffs)
        direction = ("higher" if iv.lo > 0 else "lower" if iv.hi < 0 else "indistinguishable") if iv.n > 1 \
            else "indistinguishable"
        rows.append({"layers": layers, "lam": lam, "metric": metric, "n": len(pairs), "difference": iv.to_dict(),
                     "direction": direction, "welch": compare([a for a, _ in pairs], [b for _, b in pairs])})
    return rows
