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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modclust.analysis.any_model import ablate, faithfulness, mask_circuits, spectral_null, unit_selectivity
from modclust.analysis.circuits import Circuit, circuit_iou, cluster_share, greedy_circuits_fast, mask_iou
from modclust.analysis.sparsity import live_mask, proportional_floor
from modclust.analysis.selectivity import cluster_selectivity
from modclust.analysis.semanticity import layer_activations
from modclust.analysis.spectral import ncut, weight_clusterability
from modclust.core.data import Dataset, balanced_indices
from modclust.core.model import layer_names
from modclust.core.partition import Partition
from modclust.core.progress import track
from modclust.core.train import TrainResult, run_name
from modclust.experiments.grid import paired_difference, summary_table
from modclust.experiments.mlp_study import MlpSettings
from modclust.experiments.stage_results import BeyondResults


def _ablation_summary(result: TrainResult, part: Partition, data: Dataset, layer: str) -> dict[str, Any]:
    ab = ablate(result.model, part, layer, data.test_x, data.test_y, data.n_classes)
    return {"full_acc": ab.full_acc, "off_acc": ab.off_acc, "on_acc": ab.on_acc,
            "off_classwise": ab.off_classwise, "on_classwise": ab.on_classwise}


def spectral_baseline(result: TrainResult, data: Dataset, layer: str, n_draws: int, seed: int = 0) -> dict[str, Any]:
    """Spectral clusters of a trained layer vs its fixed blocks, each with C, n-cut and ablations."""
    w = getattr(result.model, layer).weight.detach().cpu()
    blocks = result.blocks(layer)
    null = spectral_null(result.model, layer, blocks.k, n_draws=n_draws, seed=seed)
    found = Partition.from_dict(null.partition)
    spectral = {k: v for k, v in null.to_dict().items() if k != "partition"}
    spectral.update({"partition": null.partition, "sizes": [[len(r), len(c)] for r, c in zip(found.rows, found.cols)],
                     "ablation": _ablation_summary(result, found, data, layer)})
    return {"layer": layer,
            "spectral": spectral,
            "blocks": {"c": weight_clusterability(w, blocks), "ncut": ncut(w, blocks),
                       "ablation": _ablation_summary(result, blocks, data, layer)}}


def _offdiag_mean(m: torch.Tensor) -> float:
    n = m.shape[0]
    if n < 2:
        return float("nan")
    vals = m[~torch.eye(n, dtype=torch.bool)]
    vals = vals[~vals.isnan()]
    return float(vals.mean()) if len(vals) else float("nan")


def _method_summary(result: TrainResult, circs: Sequence[Circuit], part: Partition | None, share_layer: str,
                    data: Dataset) -> dict[str, Any]:
    iou = circuit_iou(circs)
    faith = [faithfulness(result.model, c, data.test_x, data.test_y).to_dict() for c in circs]
    out: dict[str, Any] = {"sizes": [c.size for c in circs], "size_per_layer": [c.size_per_layer for c in circs],
                           "final_loss": [c.final_loss for c in circs], "full_loss": [c.full_loss for c in circs],
                           "iou": iou.tolist(), "mean_iou": _offdiag_mean(iou), "faithfulness": faith}
    if part is not None and all(share_layer in c.kept for c in circs):
        shares = [cluster_share(c, part, share_layer) for c in circs]
        out["share"] = [s.to_dict() for s in shares]
        # the share of a circuit spread over the blocks in proportion to their live weights
        out["share_floor"] = proportional_floor(live_mask(getattr(result.model, share_layer).weight), part)
    return out


def circuit_analysis(result: TrainResult, data: Dataset, settings: BeyondSettings, objective: str,
                     labels: Sequence[int] | None = None, share_layer: str = "fc2", search: torch.Tensor | None = None
                     ) -> tuple[dict[str, Any], list[tuple[str, Circuit]]]:
    """Greedy and learned-mask circuits of each label for ``objective``: sizes, overlap, agreement,
    cluster share, faithfulness; over ``settings.circuit_layers``, with its threshold, baseline,
    mask sparsity and steps, and ablation.

    Circuits are searched on the training images ``search`` (indices; default: the whole test set,
    as the seed did) and their faithfulness is judged on the test set. With ``mask_sparsity``
    equal to greedy's threshold (the default settings), both keep a weight when dropping it costs
    more than that much loss, so their sizes are comparable. Returns the JSON-ready summary and
    the circuits, as (method, circuit) pairs.
    """
    st, layers, ablation = settings, list(settings.circuit_layers), settings.ablation
    labels = list(range(data.n_classes)) if not labels else [int(c) for c in labels]
    x, y = (data.test_x, data.test_y) if search is None else (data.train_x[search], data.train_y[search])
    part = result.blocks(share_layer) if share_layer in layers else None
    found = greedy_circuits_fast(result.model, x, y, labels=labels, layers=layers, threshold=st.threshold,
                                 baseline=st.baseline, objective=objective, ablation=ablation)[0]  # the batched pruner
    greedy = [found[c] for c in labels]
    masks = mask_circuits(result.model, layers, x, y, labels, objective=objective, sparsity=st.mask_sparsity,
                          steps=st.mask_steps, ablation=ablation)
    agree = [mask_iou(torch.cat([g.kept[n].flatten() for n in layers]), torch.cat([m.kept[n].flatten() for n in layers]))
             for g, m in zip(greedy, masks)]
    summary = {"labels": labels, "layers": layers, "share_layer": share_layer if part else None,
               "objective": objective, "ablation": ablation,
               "greedy": _method_summary(result, greedy, part, share_layer, data),
               "mask": _method_summary(result, masks, part, share_layer, data),
               "greedy_vs_mask_iou": agree}
    return summary, [("greedy", c) for c in greedy] + [("mask", c) for c in masks]


def selectivity_analysis(result: TrainResult, data: Dataset, layers: Sequence[str], cluster_layer: str,
                         n_bins: int) -> dict[str, Any]:
    """Per-unit selectivity and MI of each layer, and per cluster of ``cluster_layer``'s output units."""
    x, y = data.test_x, data.test_y
    units = {name: unit_selectivity(result.model, name, x, y, data.n_classes, n_bins).to_dict() for name in layers}
    acts = layer_activations(result.model, x, cluster_layer).cpu()
    clusters = cluster_selectivity(acts, y.cpu(), result.blocks(cluster_layer).rows, data.n_classes, n_bins)
    return {"units": units, "cluster_layer": cluster_layer, "clusters": clusters.to_dict()}


# --- Flat rows (one per run) for summaries over seeds ----------------------------------------

def _nanmean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if v is not None and v == v]
    return sum(vals) / len(vals) if vals else float("nan")


def spectral_row(res: dict[str, Any]) -> dict[str, float]:
    """Scalars of ``spectral_baseline``: found vs block C and n-cut, z-scores, mean ablations."""
    s, b = res["spectral"], res["blocks"]
    return {"spectral_c": s["c"], "spectral_ncut": s["ncut"], "z_c": s["z_c"], "z_ncut": s["z_ncut"],
            "null_c": _nanmean(s["null_c"]), "null_ncut": _nanmean(s["null_ncut"]),
            "blocks_c": b["c"], "blocks_ncut": b["ncut"], "spectral_k": s["k"],
            "spectral_off": _nanmean(s["ablation"]["off_acc"]), "spectral_on": _nanmean(s["ablation"]["on_acc"]),
            "blocks_off": _nanmean(b["ablation"]["off_acc"]), "blocks_on": _nanmean(b["ablation"]["on_acc"])}


def circuit_row(res: dict[str, Any]) -> dict[str, float]:
    """Scalars of ``circuit_analysis``: mean size, overlap and dominant-cluster share per method."""
    row: dict[str, float] = {"greedy_vs_mask_iou": _nanmean(res["greedy_vs_mask_iou"])}
    for method in ("greedy", "mask"):
        m = res[method]
        row[f"{method}_size"] = _nanmean(m["sizes"])
        row[f"{method}_iou"] = m["mean_iou"]
        row[f"{method}_loss"] = _nanmean(m["final_loss"])
        for key in ("agreement", "balanced_agreement", "share_c"):
            row[f"{method}_{key}"] = _nanmean([f[key] for f in m["faithfulness"]])
        if "share" in m:
            row[f"{method}_share"] = _nanmean([s["share"] for s in m["share"]])
            row[f"{method}_inside_any"] = _nanmean([s["inside_any"] for s in m["share"]])
            row["share_floor"] = m["share_floor"]
    return row


def selectivity_row(res: dict[str, Any]) -> dict[str, float]:
    """Scalars of ``selectivity_analysis``: mean unit selectivity / MI per layer, and per cluster."""
    row = {}
    for layer, u in res["units"].items():
        row[f"sel_{layer}"] = u["mean_selectivity"]
        row[f"mi_{layer}"] = u["mean_mi"]
        row[f"dead_{layer}"] = u["dead_share"]
        row[f"sel_live_{layer}"] = u["live_selectivity"]
    c = res["clusters"]
    row["cluster_sel"] = _nanmean(c["selectivity"])
    row["cluster_mi"] = _nanmean(c["mi"])
    return row


# --- The whole stage: sweep, then the deeper analyses on lambda = 0 and the main lambda -------

@dataclass(frozen=True)
class BeyondSettings:
    """What :func:`run_beyond` analyses and how: stage 1's ``main_lambda`` and ``analysis_layers``
    (the layer set of its grid, a :func:`~modclust.core.model.layers_label`), and stage 6's
    settings, the fields of the same names of :class:`~modclust.experiments.mlp_study.MlpSettings`
    (which holds their defaults and checks them). Build it with :meth:`of`."""

    main_lambda: float
    analysis_layers: str
    null_draws: int
    circuit_layers: tuple[str, ...]
    labels: tuple[int, ...]
    threshold: float
    baseline: str
    mask_sparsity: float
    mask_steps: int
    selectivity_bins: int
    faithful_objective: str
    ablation: str
    search_per_class: int
    search_seed: int

    @classmethod
    def of(cls, settings: MlpSettings, main_lambda: float, analysis_layers: str) -> BeyondSettings:
        """Stage 6's settings from the study's, for the runs stage 1 trained at ``main_lambda``
        on ``analysis_layers`` (train.json's: they are what was trained)."""
        taken = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)
                 if f.name not in ("main_lambda", "analysis_layers")}
        return cls(main_lambda=main_lambda, analysis_layers=analysis_layers, **taken)


def run_beyond(data: Dataset, runs: Sequence[TrainResult], records: Sequence[dict[str, Any]],
               settings: BeyondSettings, progress: bool = True) -> tuple[BeyondResults, list[dict[str, Any]]]:
    """Every stage-6 analysis of the sweep's trained runs; returns its result and the circuits.

    ``runs`` and ``records`` are the sweep of the train stage (:func:`modclust.experiments.grid.load_sweep`:
    every layer set x lambda x seed, one :func:`~modclust.experiments.grid.run_record` each).
    The spectral, circuit and selectivity analyses use the runs of the layer set
    ``settings.analysis_layers`` at lambda 0 and ``settings.main_lambda``. Circuits are found for
    ``settings.faithful_objective`` (the headline: ``circuits``) and for the seed's objective
    (``seed_circuits``), searched on ``settings.search_per_class`` training images per class and
    judged on the test set. Also returns one record per circuit (for ``circuits.pt``).
    """
    st = settings
    if len(runs) != len(records) or not runs:
        raise ValueError(f"run_beyond needs the sweep's runs and one record each (got {len(runs)} and {len(records)})")
    base = dataclasses.replace(runs[0].config, lam=0.0, seed=0)
    widths = base.widths
    main = float(st.main_lambda)
    lams = sorted({float(r["lam"]) for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    set_labels = list(dict.fromkeys(r["layers"] for r in records))
    if main not in lams or 0.0 not in lams or st.analysis_layers not in set_labels:
        raise ValueError(f"the sweep must hold lambda 0 and main_lambda {main:g} on the layer set "
                         f"{st.analysis_layers!r}; it has lambdas {lams} and layer sets {set_labels}")
    names = layer_names(widths)
    first = st.analysis_layers
    pair = [r for r, rec in zip(runs, records) if rec["lam"] in (0.0, main) and rec["layers"] == first]
    spec_layer = "fc2" if "fc2" in names else names[0]
    circ_labels = [int(c) for c in st.labels] if st.labels else list(range(data.n_classes))
    sel_layers = names[:-1]

    search = balanced_indices(data.train_y, st.search_per_class, seed=st.search_seed, n_classes=data.n_classes)
    search = search.to(data.device)
    spectral, sel = [], []
    circ: dict[str, list[dict[str, Any]]] = {st.faithful_objective: [], "seed": []}
    circuit_records: list[dict[str, Any]] = []
    for r in track(pair, desc="stage 6 analyses", disable=not progress):
        tag = {"lam": r.config.lam, "seed": r.config.seed, "layers": first}
        spectral.append({**tag, **spectral_baseline(r, data, spec_layer, st.null_draws, seed=r.config.seed)})
        for objective in circ:
            summary, found = circuit_analysis(r, data, st, objective, circ_labels, search=search)
            circ[objective].append({**tag, **summary})
            circuit_records += [c.to_record(f"{run_name(r.config)}_{first}", r.config.lam,
                                            r.config.seed, method) for method, c in found]
        sel.append({**tag, **selectivity_analysis(r, data, sel_layers, spec_layer, st.selectivity_bins)})
    rows = lambda runs, fn: [{"lam": x["lam"], "seed": x["seed"], "layers": first, **fn(x)} for x in runs]  # noqa: E731
    out = BeyondResults(
        dataset=data.name, main_lambda=main, lambdas=lams, seeds=seeds,
        layer_sets=set_labels, config=base.to_dict(),
        records=list(records),
        summary=summary_table(records, metrics=["test_acc", "C_clustered"] + [f"C_{n}" for n in names]),
        paired_accuracy=paired_difference(records, "test_acc", baseline_lam=0.0),
        spectral={"layer": spec_layer, "null_draws": st.null_draws, "rows": rows(spectral, spectral_row),
                  "runs": spectral},
        circuits={"layers": list(st.circuit_layers), "labels": circ_labels, "threshold": st.threshold,
                  "baseline": st.baseline, "mask_sparsity": st.mask_sparsity, "mask_steps": st.mask_steps,
                  "objective": st.faithful_objective, "ablation": st.ablation,
                  "search": {"split": "train", "per_class": st.search_per_class, "seed": st.search_seed},
                  "rows": rows(circ[st.faithful_objective], circuit_row), "runs": circ[st.faithful_objective]},
        seed_circuits={"objective": "seed", "rows": rows(circ["seed"], circuit_row), "runs": circ["seed"]},
        selectivity={"layers": sel_layers, "cluster_layer": spec_layer, "bins": st.selectivity_bins,
                     "rows": rows(sel, selectivity_row), "runs": sel},
    )
    return out, circuit_records
