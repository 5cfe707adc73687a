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

from modclust.analysis.circuits import Circuit, circuit_iou, cluster_share, faithfulness, greedy_circuits_fast, mask_iou
from modclust.core.data import balanced_indices
from modclust.core.data import Dataset
from modclust.analysis.ablation import ablate
from modclust.analysis.semanticity import layer_activations
from modclust.analysis.masks import mask_circuits
from modclust.core.partition import Partition
from modclust.analysis.selectivity import cluster_selectivity, unit_selectivity
from modclust.analysis.spectral import ncut, spectral_null, weight_clusterability
from modclust.core.train import TrainResult


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


def greedy_circuits(result: TrainResult, x: torch.Tensor, y: torch.Tensor, labels: Sequence[int],
                    layers: Sequence[str], threshold: float = 1e-4, baseline: str = "current",
                    objective: str = "seed", ablation: str = "zero") -> list[Circuit]:
    """Greedy circuits of the labels searched on ``x, y`` (the batched pruner: same circuits, faster)."""
    found = greedy_circuits_fast(result.model, x, y, labels=list(labels), layers=list(layers),
                                 threshold=threshold, baseline=baseline, objective=objective, ablation=ablation)[0]
    return [found[c] for c in labels]


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
    return out


def circuit_analysis(result: TrainResult, data: Dataset, labels: Sequence[int] | None = None,
                     layers: Sequence[str] = ("fc2", "fc3"), threshold: float = 1e-4, baseline: str = "current",
                     mask_sparsity: float = 1e-4, mask_steps: int = 300, share_layer: str = "fc2",
                     objective: str = "seed", ablation: str = "zero", search: torch.Tensor | None = None
                     ) -> tuple[dict[str, Any], list[tuple[str, Circuit]]]:
    """Greedy and learned-mask circuits of each label: sizes, overlap, agreement, cluster share, faithfulness.

    Circuits are searched on the training images ``search`` (indices; default: the whole test set,
    as the seed did) and their faithfulness is judged on the test set. ``mask_sparsity`` defaults
    to greedy's threshold: both then keep a weight when dropping it costs more than that much
    loss, so their sizes are comparable. Returns the JSON-ready summary and the circuits, as
    (method, circuit) pairs.
    """
    labels = list(range(data.n_classes)) if not labels else [int(c) for c in labels]
    x, y = (data.test_x, data.test_y) if search is None else (data.train_x[search], data.train_y[search])
    part = blocks_of(result, share_layer) if share_layer in layers else None
    greedy = greedy_circuits(result, x, y, labels, layers, threshold, baseline, objective, ablation)
    masks = mask_circuits(result.model, x, y, labels, layers=list(layers), sparsity=mask_sparsity, steps=mask_steps,
                          objective=objective, ablation=ablation)
    agree = [mask_iou(torch.cat([g.kept[n].flatten() for n in layers]), torch.cat([m.kept[n].flatten() for n in layers]))
             for g, m in zip(greedy, masks)]
    summary = {"labels": labels, "layers": list(layers), "share_layer": share_layer if part else None,
               "objective": objective, "ablation": ablation,
               "greedy": _method_summary(result, greedy, part, share_layer, data),
               "mask": _method_summary(result, masks, part, share_layer, data),
               "greedy_vs_mask_iou": agree}
    return summary, [("greedy", c) for c in greedy] + [("mask", c) for c in masks]


def selectivity_analysis(result: TrainResult, data: Dataset, layers: Sequence[str] = ("fc1", "fc2"),
                         cluster_layer: str = "fc2", n_bins: int = 10) -> dict[str, Any]:
    """Per-unit selectivity and MI of each layer, and per cluster of ``cluster_layer``'s output units."""
    x, y = data.test_x, data.test_y
    units = {name: unit_selectivity(result.model, x, y, name, data.n_classes, n_bins).to_dict() for name in layers}
    acts = layer_activations(result.model, x, cluster_layer).cpu()
    clusters = cluster_selectivity(acts, y.cpu(), blocks_of(result, cluster_layer).rows, data.n_classes, n_bins)
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
            row["share_chance"] = m["share"][0]["chance"]
    return row


def selectivity_row(res: dict[str, Any]) -> dict[str, float]:
    """Scalars of ``selectivity_analysis``: mean unit selectivity / MI per layer, and per cluster."""
    row = {}
    for layer, u in res["units"].items():
        row[f"sel_{layer}"] = u["mean_selectivity"]
        row[f"mi_{layer}"] = u["mean_mi"]
    c = res["clusters"]
    row["cluster_sel"] = _nanmean(c["selectivity"])
    row["cluster_mi"] = _nanmean(c["mi"])
    return row


# --- Figures (matplotlib, for the paper) ----------------------------------------------------

def pareto_figure(records: Sequence[dict[str, Any]], c_key: str = "C_clustered", acc_key: str = "test_acc"):
    """Accuracy against clusterability: runs as faint dots, each (layers, lambda) as its mean with
    95 % intervals on both axes, and the Pareto frontier of those means (a single run's luck
    should not define the frontier)."""
    import matplotlib.pyplot as plt

    from modclust.experiments.sweep import pareto_front, summarize

    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    rows = summarize([r for r in records if r.get(c_key) is not None], metrics=[c_key, acc_key])
    for layers in dict.fromkeys(r["layers"] for r in records):
        rs = [r for r in records if r["layers"] == layers and r.get(c_key) is not None]
        dots = ax.scatter([r[c_key] for r in rs], [r[acc_key] for r in rs], s=4, alpha=0.3)
        ms = [row for row in rows if row["layers"] == layers]
        half = lambda iv: 0.0 if iv["n"] < 2 else (iv["hi"] - iv["lo"]) / 2  # noqa: E731
        ax.errorbar([m[c_key]["mean"] for m in ms], [m[acc_key]["mean"] for m in ms],
                    xerr=[half(m[c_key]) for m in ms], yerr=[half(m[acc_key]) for m in ms], fmt="o", markersize=3,
                    color=dots.get_facecolor()[0][:3], label=f"loss on {layers}")
    means = [(row[c_key]["mean"], row[acc_key]["mean"]) for row in rows]
    front = [means[i] for i in pareto_front(means)]
    if front:
        ax.plot(*zip(*front), color="black", lw=0.8, label="Pareto frontier (means)")
    ax.set_xlabel(f"clusterability ({c_key})")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize="small")
    return fig


def iou_figure(iou_by_title: dict[str, Sequence[Sequence[float]]], class_names: Sequence[str]):
    """Side-by-side heatmaps of circuit IoU between labels, on one colour scale.

    The diagonal (always 1) is left blank so the scale resolves the overlaps that matter.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(iou_by_title)
    mats = {t: np.asarray(m, dtype=float) for t, m in iou_by_title.items()}
    for m in mats.values():
        np.fill_diagonal(m, np.nan)
    top = max([float(np.nanmax(m)) for m in mats.values() if np.isfinite(m).any()] + [1e-6])
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 2.8), squeeze=False)
    for ax, (title, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m, vmin=0, vmax=top, cmap="viridis")
        ax.grid(False)
        ax.set_title(title, fontsize="small")
        ticks = range(len(m))
        ax.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90, fontsize="x-small")
        ax.set_yticks(ticks, [class_names[i] for i in ticks], fontsize="x-small")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="IoU between labels")
    return fig


def profile_figure(profiles: dict[str, Sequence[Sequence[float]]], class_names: Sequence[str]):
    """Per-cluster class profiles (rows: clusters, columns: classes) side by side."""
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(profiles)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 1.8), squeeze=False)
    for ax, (title, p) in zip(axes[0], profiles.items()):
        p = np.asarray(p, dtype=float)
        im = ax.imshow(p, aspect="auto", cmap="magma", vmin=0)
        ax.grid(False)
        ax.set_title(title, fontsize="small")
        ax.set_xticks(range(p.shape[1]), class_names, rotation=90, fontsize="x-small")
        ax.set_yticks(range(p.shape[0]), [f"cluster {i + 1}" for i in range(p.shape[0])], fontsize="x-small")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


# --- Paper numbers: LaTeX macros and data-dependent sentences from beyond.json ---------------

_WORDS = {"fc1": "FcOne", "fc2": "FcTwo", "fc3": "FcThree", "all": "All"}


def _fmt(x: float, digits: int) -> str:
    if x != x:
        return "n/a"
    s = f"{x:.{digits}f}"
    return s.replace("-", "\\ensuremath{-}", 1) if s.startswith("-") else s


def _pm(values: Sequence[float], digits: int = 2) -> str:
    """``mean ± half-width`` of the 95 % t-interval over seeds (the mean alone for one seed)."""
    from modclust.core.stats import mean_ci

    vals = [float(v) for v in values if v == v]
    if not vals:
        return "n/a"
    iv = mean_ci(vals)
    if iv.n < 2:
        return _fmt(iv.mean, digits)
    return f"{_fmt(iv.mean, digits)}\\,\\ensuremath{{\\pm}}\\,{_fmt((iv.hi - iv.lo) / 2, digits)}"


def _sign_word(values: Sequence[float], above: str, below: str, neither: str) -> str:
    """Which side of 0 the seeds' 95 % interval lies on (``neither`` when it straddles 0)."""
    from modclust.core.stats import mean_ci

    vals = [float(v) for v in values if v == v]
    if len(vals) < 2:
        return neither
    iv = mean_ci(vals)
    return above if iv.lo > 0 else below if iv.hi < 0 else neither


def _col(rows: Sequence[dict[str, Any]], key: str, lam: float) -> list[float]:
    """The seeds' values of ``key`` at ``lam``, in seed order; undefined ones (None, nan) left out."""
    values = (r.get(key) for r in sorted(rows, key=lambda r: r["seed"]) if r["lam"] == lam)
    return [v for v in values if v is not None and v == v]


def beyond_macros(res: dict[str, Any]) -> dict[str, str]:
    """LaTeX macro values (name -> text) for the paper from ``beyond.json``; names are letters only.

    Every sentence whose direction depends on the data is chosen from the intervals over seeds
    (``stats.compare`` for two groups, the sign of a 95 % interval for a difference), so a
    rerun with other parameters cannot leave a false claim.
    """
    from modclust.core.stats import compare

    main = float(res["main_lambda"])
    m: dict[str, str] = {"BeyondSeeds": str(len(res["seeds"])),
                         "BeyondLambdas": ", ".join(f"{v:g}" for v in res["lambdas"]),
                         "BeyondMainLambda": f"{main:g}"}
    for d in res["paired_accuracy"]:
        if d["lam"] != main or d["layers"] not in _WORDS:
            continue
        name = _WORDS[d["layers"]]
        iv = d["difference"]
        m[f"AccDiff{name}"] = (f"{_fmt(100 * iv['mean'], 1)}" if iv["n"] < 2 or iv["hi"] != iv["hi"] else
                               f"{_fmt(100 * iv['mean'], 1)}\\,\\ensuremath{{\\pm}}\\,{_fmt(100 * (iv['hi'] - iv['lo']) / 2, 1)}")
        word = {"higher": "more accurate than", "lower": "less accurate than"}
        diffs = [a["test_acc"] - b["test_acc"] for a in res["records"] for b in res["records"]
                 if a["layers"] == d["layers"] and a["lam"] == main and b["layers"] == d["layers"]
                 and b["lam"] == 0.0 and a["seed"] == b["seed"]]
        m[f"AccSentence{name}"] = _sign_word(diffs, word["higher"], word["lower"], "as accurate as (within noise)")
    rec = res["records"]
    for layers in dict.fromkeys(r["layers"] for r in rec):
        if layers not in _WORDS:
            continue
        m[f"C{_WORDS[layers]}Main"] = _pm([r["C_clustered"] for r in rec if r["layers"] == layers and r["lam"] == main])
    sp = res["spectral"]["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for key, name, digits in (("spectral_c", "SpectralC", 2), ("null_c", "NullC", 2), ("z_c", "SpectralZ", 1),
                                  ("z_ncut", "NcutZ", 1), ("blocks_c", "BlocksC", 2)):
            m[f"{name}{tag}"] = _pm(_col(sp, key, lam), digits)
    m["SpectralSentence"] = _sign_word(_col(sp, "z_c", 0.0), "more clusterable than", "less clusterable than",
                                       "no more clusterable than")
    cr = res["circuits"]["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for key, name, digits in (("greedy_size", "GreedySize", 0), ("mask_size", "MaskSize", 0),
                                  ("greedy_iou", "GreedyIoU", 2), ("mask_iou", "MaskIoU", 2),
                                  ("greedy_vs_mask_iou", "GreedyMaskAgree", 2), ("greedy_share", "GreedyShare", 2),
                                  ("mask_share", "MaskShare", 2), ("share_chance", "ShareChance", 2)):
            if any(key in r for r in cr):
                m[f"{name}{tag}"] = _pm(_col(cr, key, lam), digits)
    words = {"higher": "larger", "lower": "smaller", "indistinguishable": "no different (within noise)"}
    for key, name in (("greedy_size", "GreedySize"), ("mask_size", "MaskSize"), ("greedy_iou", "GreedyIoU"),
                      ("mask_iou", "MaskIoU")):
        m[f"{name}Sentence"] = words[compare(_col(cr, key, main), _col(cr, key, 0.0))]
    pct = lambda vals: _pm([100 * v for v in vals], 1) + "\\,\\%"  # noqa: E731
    sc = res["seed_circuits"]["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for key, name in (("greedy_agreement", "GreedyAgree"), ("mask_agreement", "MaskAgree")):
            m[f"{name}{tag}"] = pct(_col(cr, key, lam))
        m[f"SeedGreedyIoU{tag}"] = _pm(_col(sc, "greedy_iou", lam), 2)
        m[f"SeedMaskShareC{tag}"] = pct(_col(sc, "mask_share_c", lam))
        m[f"SeedGreedyShareC{tag}"] = pct(_col(sc, "greedy_share_c", lam))
    sr = res["selectivity"]["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for layer in res["selectivity"]["layers"]:
            w = _WORDS.get(layer)
            if w:
                m[f"Sel{w}{tag}"] = _pm(_col(sr, f"sel_{layer}", lam))
                m[f"Mi{w}{tag}"] = _pm(_col(sr, f"mi_{layer}", lam))
        m[f"ClusterSel{tag}"] = _pm(_col(sr, "cluster_sel", lam))
        m[f"ClusterMi{tag}"] = _pm(_col(sr, "cluster_mi", lam))
    more = {"higher": "more", "lower": "less", "indistinguishable": "no more and no less (within noise)"}
    for key, name in (("cluster_sel", "ClusterSelSentence"), ("sel_fc2", "SelFcTwoSentence")):
        m[name] = more[compare(_col(sr, key, main), _col(sr, key, 0.0))]
    return m


def macros_tex(macros: dict[str, str], source: str = "notebooks/06_beyond.ipynb") -> str:
    """``\\newcommand`` lines for the macros (the paper ``\\input``s the file)."""
    import re

    bad = [k for k in macros if not re.fullmatch(r"[A-Za-z]+", k)]
    if bad:
        raise ValueError(f"LaTeX macro names take letters only: {bad}")
    lines = [f"% Generated by the paper pipeline ({source}). Do not edit."]
    lines += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in macros.items()]
    return "\n".join(lines) + "\n"


# --- The whole stage: sweep, then the deeper analyses on lambda = 0 and the main lambda -------

def run_beyond(data: Dataset, base: Any, sweep_lambdas: Sequence[float], seeds: Sequence[int],
               layer_sets: Sequence[Any] = ("fc2", "all"), main_lambda: float = 15.0, null_draws: int = 20,
               circuit_layers: Sequence[str] = ("fc2", "fc3"), labels: Sequence[int] | None = None,
               threshold: float = 1e-4, baseline: str = "current", mask_sparsity: float = 1e-4,
               mask_steps: int = 300, selectivity_bins: int = 10, progress: bool = True,
               faithful_objective: str = "margin", ablation: str = "zero", search_per_class: int = 50,
               search_seed: int = 0) -> tuple[dict[str, Any], list[TrainResult], list[dict[str, Any]]]:
    """Train the sweep and run every analysis; returns the JSON-ready results and the trained runs.

    ``base`` is the TrainConfig every run derives from. The sweep covers ``sweep_lambdas``
    (plus 0 and ``main_lambda``) x ``seeds`` x ``layer_sets``; spectral, circuit and selectivity
    analyses use the runs of the first layer set at lambda 0 and ``main_lambda``. Circuits are
    found for ``faithful_objective`` (the headline: ``circuits``) and for the seed's objective
    (``seed_circuits``), searched on ``search_per_class`` training images per class and judged on
    the test set. Also returns one record per circuit (for ``circuits.pt``).
    """
    from tqdm.auto import tqdm

    from modclust.experiments.sweep import (layers_label, paired_difference, record, resolve_layers, summarize,
                                sweep_configs, train_sweep)

    widths = base.widths
    main = float(main_lambda)
    lams = sorted({float(v) for v in sweep_lambdas} | {0.0, main})
    configs = sweep_configs(lams, seeds, layer_sets, base)
    results = train_sweep(configs, data, progress=progress)
    records = [record(r) for r in results]
    set_labels = [layers_label(resolve_layers(ls, widths), widths) for ls in layer_sets]
    names = [f"fc{i + 1}" for i in range(len(widths) - 1)]
    first = set_labels[0]
    pair = [r for r, rec in zip(results, records) if rec["lam"] in (0.0, main) and rec["layers"] == first]
    spec_layer = "fc2" if "fc2" in names else names[0]
    circ_labels = [int(c) for c in labels] if labels else list(range(data.n_classes))
    sel_layers = names[:-1]

    search = balanced_indices(data.train_y, search_per_class, seed=search_seed, n_classes=data.n_classes)
    search = search.to(data.device)
    spectral, sel = [], []
    circ: dict[str, list[dict[str, Any]]] = {faithful_objective: [], "seed": []}
    circuit_records: list[dict[str, Any]] = []
    for r in tqdm(pair, desc="analyses", disable=not progress):
        tag = {"lam": r.config.lam, "seed": r.config.seed, "layers": first}
        spectral.append({**tag, **spectral_baseline(r, data, spec_layer, null_draws, seed=r.config.seed)})
        for objective in circ:
            summary, found = circuit_analysis(r, data, circ_labels, circuit_layers, threshold, baseline, mask_sparsity,
                                              mask_steps, objective=objective, ablation=ablation, search=search)
            circ[objective].append({**tag, **summary})
            circuit_records += [c.to_record(f"lam{r.config.lam:g}_seed{r.config.seed}_{first}", r.config.lam,
                                            r.config.seed, method) for method, c in found]
        sel.append({**tag, **selectivity_analysis(r, data, sel_layers, spec_layer, selectivity_bins)})
    rows = lambda runs, fn: [{"lam": x["lam"], "seed": x["seed"], "layers": first, **fn(x)} for x in runs]  # noqa: E731
    out = {
        "dataset": data.name, "main_lambda": main, "lambdas": lams, "seeds": [int(s) for s in seeds],
        "layer_sets": set_labels, "config": base.to_dict(),
        "records": records,
        "summary": summarize(records, metrics=["test_acc", "C_clustered"] + [f"C_{n}" for n in names]),
        "paired_accuracy": paired_difference(records, "test_acc", baseline_lam=0.0),
        "spectral": {"layer": spec_layer, "null_draws": null_draws, "rows": rows(spectral, spectral_row),
                     "runs": spectral},
        "circuits": {"layers": list(circuit_layers), "labels": circ_labels, "threshold": threshold,
                     "baseline": baseline, "mask_sparsity": mask_sparsity, "mask_steps": mask_steps,
                     "objective": faithful_objective, "ablation": ablation,
                     "search": {"split": "train", "per_class": search_per_class, "seed": search_seed},
                     "rows": rows(circ[faithful_objective], circuit_row), "runs": circ[faithful_objective]},
        "seed_circuits": {"objective": "seed", "rows": rows(circ["seed"], circuit_row), "runs": circ["seed"]},
        "selectivity": {"layers": sel_layers, "cluster_layer": spec_layer, "bins": selectivity_bins,
                        "rows": rows(sel, selectivity_row), "runs": sel},
    }
    return out, results, circuit_records
