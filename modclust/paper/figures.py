"""The paper's figures: matplotlib vector PDFs (committed style), each with a PNG beside it for the
HTML report, and plotly twins for notebooks.

Each figure takes plain per-seed arrays (what the pipeline's JSON results hold) and draws
means with 95 % intervals over seeds as error bars or bands wherever there are several seeds.
Aggregation helpers that more than one figure needs live here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from matplotlib.collections import LineCollection
from plotly.subplots import make_subplots

from modclust.analysis.ablation import order_by_importance
from modclust.core import stats
from modclust.core.io import atomic_path
from modclust.core.partition import Partition

STYLE = Path(__file__).with_name("modclust.mplstyle")
CLUSTER_COLORS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#222255")
MODEL_COLORS = {"unclustered": "#BB5566", "clustered": "#004488"}


def use_style() -> None:
    """Apply the paper's committed matplotlib style."""
    plt.style.use(str(STYLE))


def cluster_color(c: int) -> str:
    return CLUSTER_COLORS[c % len(CLUSTER_COLORS)]


def lambda_label(lam: float) -> str:
    return "unclustered (λ=0)" if lam == 0 else f"clustered (λ={lam:g})"


def lambda_color(lam: float, lambdas: Sequence[float]) -> str:
    if lam == 0:
        return MODEL_COLORS["unclustered"]
    others = sorted(v for v in lambdas if v != 0)
    if len(others) <= 1:
        return MODEL_COLORS["clustered"]
    cmap = matplotlib.colormaps["viridis"]
    return matplotlib.colors.to_hex(cmap(0.85 * others.index(lam) / (len(others) - 1)))


def mean_and_half(values: np.ndarray, axis: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Mean over ``axis`` and the half-width of its Student-t interval (``stats.t_half_width``;
    0 for one seed)."""
    v = np.asarray(values, dtype=float)
    n = v.shape[axis]
    mean = v.mean(axis)
    std = v.std(axis, ddof=1) if n > 1 else np.zeros_like(mean)
    return mean, stats.t_half_width(std, n, level)


def ranked_ablation(rows: Sequence[Mapping], key: str) -> np.ndarray:
    """(seeds, k, ...) values of ``key`` with each seed's clusters in order of importance
    (``analysis.ablation.order_by_importance``)."""
    return np.stack([np.asarray(r[key])[order_by_importance(r["off_acc"])] for r in rows])


def save(fig: plt.Figure, path: str | os.PathLike[str], close: bool = False) -> Path:
    """Save a vector PDF and, beside it, a PNG of the same figure (``path`` with ``.png``, at the
    style's resolution) that the HTML report shows inline (browsers download a PDF); each written
    atomically. Keeps the figure open (a notebook shows it) unless ``close``; returns the PDF."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="pdf")
    with atomic_path(path.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png")
    if close:
        plt.close(fig)
    return path


# -- matplotlib figures --------------------------------------------------------------------------

def classwise_ablation(off_cw: np.ndarray, on_cw: np.ndarray, full_cw: np.ndarray,
                       class_names: Sequence[str], title_prefix: str = "cluster") -> plt.Figure:
    """Class-wise accuracy with each cluster OFF (left) and ON (right), one row per cluster.

    ``off_cw``/``on_cw`` are (seeds, k, classes), ``full_cw`` (seeds, classes); bars are means
    over seeds with 95 % intervals, the outline is the full model.
    """
    seeds, k, n_cls = off_cw.shape
    fig, axes = plt.subplots(k, 2, figsize=(6.5, 0.95 * k + 0.5), sharex=True, sharey=True, squeeze=False)
    x = np.arange(n_cls)
    full_m, _ = mean_and_half(full_cw)
    for c in range(k):
        for col, (data, mode) in enumerate(((off_cw, "OFF"), (on_cw, "ON"))):
            ax = axes[c, col]
            m, h = mean_and_half(data[:, c])
            ax.bar(x, m, yerr=h if seeds > 1 else None, color=cluster_color(c), width=0.75,
                   error_kw={"elinewidth": 0.7})
            ax.step(np.r_[x - 0.5, n_cls - 0.5], np.r_[full_m, full_m[-1]], where="post",
                    color="black", linewidth=0.6, label="full model")
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{title_prefix} {c + 1} {mode}", loc="left", pad=2)
            if col == 0:
                ax.set_ylabel("accuracy")
    for ax in axes[-1]:
        ax.set_xticks(x, class_names, rotation=45 if max(len(s) for s in class_names) > 2 else 0)
        ax.set_xlabel("class")
    fig.legend(*axes[0, 1].get_legend_handles_labels(), loc="outside upper right")
    return fig


def ablation_matrices(drops: Mapping[str, np.ndarray], class_names: Sequence[str], seeds: Sequence[int]) -> plt.Figure:
    """Per seed and setting, the class x cluster matrix of a cluster OFF: the drop in each class's
    test accuracy when one cluster is turned off (``drops[title]`` is (seeds, k, classes)).

    Clusters are not comparable between seeds (any permutation of the blocks trains the same
    way), so each seed gets its own panel, clusters in their trained order, never averaged; every
    panel shares one colour scale.
    """
    titles = list(drops)
    n_seeds, k, n_cls = next(iter(drops.values())).shape
    top = max(float(np.nanmax(d)) for d in drops.values()) or 1.0
    fig, axes = plt.subplots(n_seeds, len(titles), figsize=(3.2 * len(titles), 0.42 * k * n_seeds + 0.9),
                             squeeze=False, sharex=True)
    for col, title in enumerate(titles):
        for row in range(n_seeds):
            ax = axes[row, col]
            im = ax.imshow(drops[title][row], vmin=0.0, vmax=top, cmap="Reds", aspect="auto")
            ax.grid(False)
            ax.set_yticks(range(k), [str(c + 1) for c in range(k)])
            if row == 0:
                ax.set_title(title, pad=3)
            if col == 0:
                ax.set_ylabel(f"seed {seeds[row]}\ncluster", fontsize="small")
    for ax in axes[-1]:
        ax.set_xticks(range(n_cls), class_names, rotation=45 if max(len(s) for s in class_names) > 2 else 0)
        ax.set_xlabel("class")
    fig.colorbar(im, ax=axes, shrink=0.6, label="accuracy drop, cluster OFF")
    return fig


def _graph_edges(w: np.ndarray, x_in: np.ndarray, x_out: np.ndarray, y_in: float, y_out: float,
                 colors: np.ndarray, keep: float = 0.25) -> LineCollection:
    """The strongest ``keep`` share of a layer's edges (all of them when keep = 1)."""
    out_n, in_n = w.shape
    jj, ii = np.meshgrid(np.arange(in_n), np.arange(out_n))
    ii, jj = ii.ravel(), jj.ravel()
    mag = np.abs(w.ravel()) / (np.abs(w).max() + 1e-12)
    order = np.argsort(mag, kind="stable")  # strongest edges drawn last, on top
    order = order[len(order) - max(1, int(round(keep * len(order)))):]
    ii, jj, mag = ii[order], jj[order], mag[order]
    segs = np.stack([np.c_[x_in[jj], np.full(len(jj), y_in)], np.c_[x_out[ii], np.full(len(ii), y_out)]], 1)
    rgba = matplotlib.colors.to_rgba_array(colors.reshape(out_n * in_n)[order])
    rgba[:, 3] = 0.15 + 0.85 * mag
    styles = ["solid" if s > 0 else (0, (1.5, 1.0)) for s in np.sign(w.ravel()[order])]
    return LineCollection(segs, colors=rgba, linewidths=0.15 + 1.2 * mag, linestyles=styles)


def weight_graph(ax: plt.Axes, w2: np.ndarray, w3: np.ndarray, partition: Partition | None,
                 title: str, class_names: Sequence[str], keep: float = 0.25) -> None:
    """fc2 and fc3 as a layered graph: edges inside a cluster's block in its colour, edges
    between clusters grey; solid = positive, dashed = negative; opacity and width ~ |w|.
    Only the strongest ``keep`` share of each layer's edges is drawn.

    fc3's edges take the colour of the cluster of the fc2 unit they leave.
    """
    n1, n2, n3 = w2.shape[1], w2.shape[0], w3.shape[0]
    xs = [np.linspace(0, 1, n) for n in (n1, n2)] + [np.linspace(0.2, 0.8, n3)]
    grey = "#999999"
    c2 = np.full(w2.shape, grey, dtype=object)
    c3 = np.full(w3.shape, grey, dtype=object)
    row_cluster = np.full(n2, -1)
    col_cluster = np.full(n1, -1)
    if partition is not None:
        for c, (rows, cols) in enumerate(zip(partition.rows, partition.cols)):
            c2[np.ix_(rows, cols)] = cluster_color(c)
            c3[:, list(rows)] = cluster_color(c)
            row_cluster[list(rows)] = c
            col_cluster[list(cols)] = c
    ax.add_collection(_graph_edges(w2, xs[0], xs[1], 0.0, 1.0, c2, keep))
    ax.add_collection(_graph_edges(w3, xs[1], xs[2], 1.0, 2.0, c3, keep))
    for level, (x, cl) in enumerate(((xs[0], col_cluster), (xs[1], row_cluster), (xs[2], np.full(n3, -1)))):
        colors = [cluster_color(c) if c >= 0 else "#666666" for c in cl]
        ax.scatter(x, np.full(len(x), float(level)), s=4, c=colors, zorder=3, linewidths=0)
    for i, name in enumerate(class_names):
        ax.text(xs[2][i], 2.08, name, ha="center", va="bottom", fontsize=5.5, rotation=90 if len(name) > 2 else 0)
    ax.set_yticks([0, 1, 2], ["fc1 out", "fc2 out", "fc3 out"])
    ax.set_xticks([])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.1, 2.5)
    ax.grid(False)
    for s in ("left", "bottom"):
        ax.spines[s].set_visible(False)
    ax.set_title(title, loc="left")


def weight_graphs(panels: Sequence[tuple[str, np.ndarray, np.ndarray, Partition | None]],
                  class_names: Sequence[str]) -> plt.Figure:
    """Side-by-side weight graphs, one per (title, fc2 weight, fc3 weight, partition)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5, 2.6), squeeze=False)
    for ax, (title, w2, w3, part) in zip(axes[0], panels):
        weight_graph(ax, w2, w3, part, title, class_names)
    return fig


def reverse_cumulative(curves: Mapping[str, Mapping[float, np.ndarray]], n_classes: int,
                       lambdas: Sequence[float]) -> plt.Figure:
    """Units whose top-k images hold at least u distinct labels, per layer; mean ± 95 % CI.

    ``curves[layer][lam]`` is (seeds, n_classes): the reverse cumulative counts.
    """
    layers = list(curves)
    fig, axes = plt.subplots(1, len(layers), figsize=(6.5 if len(layers) > 1 else 3.4, 2.3), squeeze=False)
    u = np.arange(1, n_classes + 1)
    for ax, layer in zip(axes[0], layers):
        for lam, vals in curves[layer].items():
            m, h = mean_and_half(vals)
            color = lambda_color(lam, lambdas)
            ax.plot(u, m, marker="o", markersize=2.5, color=color, label=lambda_label(lam))
            ax.fill_between(u, m - h, m + h, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("distinct labels u among a unit's top-k images")
        ax.set_ylabel("units with at least u labels")
        ax.set_xticks(u)
        ax.set_title(layer, loc="left")
    axes[0, 0].legend()
    return fig


def training_curves(epochs_axis: np.ndarray, ce: Mapping[float, np.ndarray], c: Mapping[float, np.ndarray],
                    lambdas: Sequence[float]) -> plt.Figure:
    """Cross-entropy and clusterability C during training, per lambda (mean ± 95 % CI band)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6.5, 2.3))
    for lam in lambdas:
        color = lambda_color(lam, lambdas)
        for ax, series in ((a1, ce), (a2, c)):
            m, h = mean_and_half(series[lam])
            ax.plot(epochs_axis, m, color=color, label=lambda_label(lam))
            ax.fill_between(epochs_axis, m - h, m + h, color=color, alpha=0.2, linewidth=0)
    a1.set_ylabel("training cross-entropy")
    a2.set_ylabel("clusterability C of fc2")
    a2.set_ylim(0, 1.02)
    for ax in (a1, a2):
        ax.set_xlabel("epoch")
    fig.legend(*a1.get_legend_handles_labels(), loc="outside right")  # beside the panels: it covers no curve
    return fig


def tradeoff(lambdas: Sequence[float], acc: Mapping[float, Sequence[float]],
             clus: Mapping[float, Sequence[float]]) -> plt.Figure:
    """Test accuracy and final clusterability against lambda (mean ± 95 % CI over seeds)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6.5, 2.0))
    lams = list(lambdas)
    pos = np.arange(len(lams))
    for ax, data, label in ((a1, acc, "test accuracy"), (a2, clus, "clusterability C of fc2")):
        ms, hs = zip(*(mean_and_half(np.asarray(data[lam])) for lam in lams))
        ax.errorbar(pos, ms, yerr=hs, marker="o", markersize=3, color=MODEL_COLORS["clustered"])
        ax.set_xticks(pos, [f"{lam:g}" for lam in lams])
        ax.set_xlabel("λ")
        ax.set_ylabel(label)
    return fig


def image_grid(images: np.ndarray, labels: np.ndarray, row_titles: Sequence[str],
               class_names: Sequence[str]) -> plt.Figure:
    """Rows of images (rows, n, 28, 28) in [0, 1], each captioned with its label."""
    rows, n = images.shape[:2]
    fig, axes = plt.subplots(rows, n, figsize=(6.5, 6.5 / n * rows * 1.12), squeeze=False,
                             gridspec_kw={"wspace": 0.05, "hspace": 0.25})
    fig.set_layout_engine("none")
    for r in range(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(images[r, i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_color(cluster_color(r))
                s.set_linewidth(1.0)
            ax.set_title(class_names[int(labels[r, i])], fontsize=6, pad=1)
        axes[r, 0].set_ylabel(row_titles[r], fontsize=7, rotation=0, ha="right", va="center")
    return fig


def circuit_sizes(sizes: Mapping[float, np.ndarray], labels: Sequence[int], class_names: Sequence[str],
                  lambdas: Sequence[float]) -> plt.Figure:
    """Per-label greedy circuit size (weights kept), grouped by lambda; ``sizes[lam]`` is (seeds, labels)."""
    fig, ax = plt.subplots(figsize=(6.5, 2.1))
    lams = list(lambdas)
    width = 0.8 / len(lams)
    x = np.arange(len(labels))
    for i, lam in enumerate(lams):
        m, h = mean_and_half(sizes[lam])
        ax.bar(x + (i - (len(lams) - 1) / 2) * width, m, width, yerr=h if sizes[lam].shape[0] > 1 else None,
               color=lambda_color(lam, lams), label=lambda_label(lam), error_kw={"elinewidth": 0.7})
    ax.set_xticks(x, [class_names[c] for c in labels])
    ax.set_xlabel("label")
    ax.set_ylabel("circuit size (weights)")
    ax.legend(ncols=len(lams))
    return fig


def size_faithfulness(curves: Mapping[float, Sequence[Sequence[tuple[float, float]]]], lambdas: Sequence[float],
                      xlabel: str, level: float | None = None) -> plt.Figure:
    """Circuit size against faithfulness over a threshold sweep: one faint line per run, and per
    lambda the mean over seeds at each threshold with 95 % intervals on both axes.

    ``curves[lam]`` holds, per run, its (faithfulness, mean size) points in threshold order.
    ``level``: the faithfulness at which sizes are compared, drawn as a vertical line.
    """
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    lams = list(lambdas)
    for lam in lams:
        color = lambda_color(lam, lams)
        runs = [np.asarray(r, dtype=float) for r in curves[lam]]
        for r in runs:
            ax.plot(r[:, 0], r[:, 1], color=color, lw=0.5, alpha=0.3)
        pts = np.stack(runs)  # (seeds, thresholds, 2)
        (fx, fh), (sx, sh) = mean_and_half(pts[:, :, 0]), mean_and_half(pts[:, :, 1])  # means and half-widths
        ax.errorbar(fx, sx, xerr=fh if len(runs) > 1 else None, yerr=sh if len(runs) > 1 else None, fmt="o-",
                    markersize=3, lw=1, color=color, label=lambda_label(lam))
    if level is not None:
        ax.axvline(level, color="black", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("circuit size (weights)")
    ax.legend(fontsize="small")
    return fig


def _pareto_groups(records: Sequence[Mapping], c_key: str, acc_key: str
                   ) -> tuple[list[Mapping], list[tuple[str, float, stats.Interval, stats.Interval]], list[int]]:
    """The runs with both values, each (layers, lambda)'s mean intervals of both (first-seen order),
    and the indices of those means on their Pareto front (``stats.pareto_front``)."""
    runs = [r for r in records if r.get(c_key) is not None and r.get(acc_key) is not None]
    groups: dict[tuple, list[Mapping]] = {}
    for r in runs:
        groups.setdefault((r["layers"], r["lam"]), []).append(r)
    means = [(layers, lam, stats.mean_ci([r[c_key] for r in rs]), stats.mean_ci([r[acc_key] for r in rs]))
             for (layers, lam), rs in groups.items()]
    return runs, means, stats.pareto_front([(c.mean, a.mean) for _, _, c, a in means])


def _half(iv: stats.Interval) -> float:
    return 0.0 if iv.n < 2 else (iv.hi - iv.lo) / 2


def pareto_figure(records: Sequence[Mapping], c_key: str = "C_clustered", acc_key: str = "test_acc") -> plt.Figure:
    """Accuracy against clusterability: runs as faint dots, each (layers, lambda) as its mean with
    95 % intervals on both axes, and the Pareto frontier of those means (a single run's luck
    should not define the frontier). ``records``: one per run (``experiments.grid.run_record``)."""
    fig, ax = plt.subplots(figsize=(3.4, 2.4))
    runs, means, front = _pareto_groups(records, c_key, acc_key)
    for layers in dict.fromkeys(r["layers"] for r in runs):
        rs = [r for r in runs if r["layers"] == layers]
        dots = ax.scatter([r[c_key] for r in rs], [r[acc_key] for r in rs], s=4, alpha=0.3)
        ms = [(c, a) for ly, _, c, a in means if ly == layers]
        ax.errorbar([c.mean for c, _ in ms], [a.mean for _, a in ms], xerr=[_half(c) for c, _ in ms],
                    yerr=[_half(a) for _, a in ms], fmt="o", markersize=3, color=dots.get_facecolor()[0][:3],
                    label=f"loss on {layers}")
    if front:
        ax.plot([means[i][2].mean for i in front], [means[i][3].mean for i in front], color="black", lw=0.8,
                label="Pareto frontier (means)")
    ax.set_xlabel("clusterability C" if c_key == "C_clustered" else f"clusterability ({c_key.replace('_', ' ')})")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize="small")
    return fig


def iou_figure(iou_by_title: Mapping[str, Sequence[Sequence[float]]], class_names: Sequence[str]) -> plt.Figure:
    """Side-by-side heatmaps of circuit IoU between labels, on one colour scale.

    The diagonal (always 1) is left blank so the scale resolves the overlaps that matter.
    """
    n = len(iou_by_title)
    mats = {t: np.array(m, dtype=float) for t, m in iou_by_title.items()}  # copies: the diagonal is blanked
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


def profile_figure(profiles: Mapping[str, Sequence[Sequence[Sequence[float]]]], class_names: Sequence[str],
                   seeds: Sequence[int]) -> plt.Figure:
    """Per-cluster class profiles (clusters x classes), one row of panels per seed and one column
    per setting (``profiles[title][i]`` is seed ``seeds[i]``'s), all on one colour scale.

    Clusters are not comparable between seeds, so every seed is drawn and none is averaged.
    """
    mats = {t: [np.asarray(p, dtype=float) for p in ps] for t, ps in profiles.items()}
    top = max([float(np.nanmax(p)) for ps in mats.values() for p in ps if np.isfinite(p).any()] + [1e-6])
    n, rows = len(mats), len(seeds)
    fig, axes = plt.subplots(rows, n, figsize=(3.2 * n, 0.9 + 1.1 * rows), squeeze=False, sharex=True)
    for col, (title, ps) in enumerate(mats.items()):
        for row, p in enumerate(ps):
            ax = axes[row, col]
            im = ax.imshow(p, aspect="auto", cmap="magma", vmin=0, vmax=top)
            ax.grid(False)
            if row == 0:
                ax.set_title(title, fontsize="small")
            ax.set_xticks(range(p.shape[1]), class_names, rotation=90, fontsize="x-small")
            ax.set_yticks(range(p.shape[0]), [f"{i + 1}" for i in range(p.shape[0])], fontsize="x-small")
            if col == 0:
                ax.set_ylabel(f"seed {seeds[row]}\ncluster", fontsize="x-small")
    fig.colorbar(im, ax=list(axes.ravel()), shrink=0.6, label="share of the cluster's activation")
    return fig


# -- plotly twins, for exploring in the notebooks ---------------------------------------------

def plotly_classwise(off_cw: np.ndarray, on_cw: np.ndarray, class_names: Sequence[str]):
    """Interactive version of :func:`classwise_ablation` (mean ± 95 % CI over seeds)."""
    k = off_cw.shape[1]
    fig = make_subplots(rows=k, cols=2, shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[f"cluster {c + 1} {m}" for c in range(k) for m in ("OFF", "ON")])
    for c in range(k):
        for col, data in enumerate((off_cw, on_cw)):
            m, h = mean_and_half(data[:, c])
            fig.add_trace(go.Bar(x=list(class_names), y=m, error_y={"type": "data", "array": h},
                                 marker_color=cluster_color(c), showlegend=False), row=c + 1, col=col + 1)
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(height=170 * k, width=800, plot_bgcolor="white",
                      title_text="Class-wise accuracy with each cluster OFF / ON (clusters ranked by importance)")
    return fig


def plotly_lines(x: Sequence[float], series: Mapping[str, np.ndarray], title: str, xlabel: str, ylabel: str,
                 log_y: bool = False):
    """Mean ± 95 % CI lines, one per named (seeds, points) array."""
    fig = go.Figure()
    for name, vals in series.items():
        m, h = mean_and_half(vals)
        fig.add_trace(go.Scatter(x=list(x), y=m, mode="lines+markers" if len(x) <= 20 else "lines", name=name,
                                 error_y={"type": "data", "array": h, "visible": len(x) <= 20}))
    fig.update_layout(title_text=title, xaxis_title=xlabel, yaxis_title=ylabel, plot_bgcolor="white",
                      width=800, height=400, yaxis_type="log" if log_y else None)
    return fig


def plotly_bars(categories: Sequence[str], series: Mapping[str, np.ndarray], title: str, ylabel: str):
    """Grouped bars of mean ± 95 % CI, one group per category, one bar per named (seeds, cats) array."""
    fig = go.Figure()
    for name, vals in series.items():
        m, h = mean_and_half(vals)
        fig.add_trace(go.Bar(x=list(categories), y=m, name=name, error_y={"type": "data", "array": h}))
    fig.update_layout(title_text=title, yaxis_title=ylabel, barmode="group", plot_bgcolor="white",
                      width=800, height=400)
    return fig


def plotly_size_faithfulness(curves: Mapping[float, Sequence[Sequence[tuple[float, float]]]], title: str,
                             xlabel: str):
    """Interactive version of :func:`size_faithfulness`: one line per run, coloured by lambda."""
    fig = go.Figure()
    lams = list(curves)
    for lam in lams:
        for i, run in enumerate(curves[lam]):
            f, s = zip(*run) if run else ((), ())
            fig.add_trace(go.Scatter(x=list(f), y=list(s), mode="lines+markers", name=lambda_label(lam),
                                     legendgroup=str(lam), showlegend=i == 0,
                                     line={"color": lambda_color(lam, lams)}))
    fig.update_layout(title_text=title, xaxis_title=xlabel, yaxis_title="circuit size (weights)",
                      yaxis_type="log", plot_bgcolor="white", width=800, height=400)
    return fig


def plotly_pareto(records: Sequence[Mapping], c_key: str = "C_clustered", acc_key: str = "test_acc",
                  title: str = "Accuracy against clusterability (each dot a run)",
                  xlabel: str = "C (mean over clustered layers)"):
    """Interactive version of :func:`pareto_figure`: each run a dot (hover: lambda and seed), each
    (layers, lambda) its mean with 95 % intervals, and the Pareto frontier of those means."""
    fig = go.Figure()
    runs, means, front = _pareto_groups(records, c_key, acc_key)
    for layers in dict.fromkeys(r["layers"] for r in runs):
        rs = [r for r in runs if r["layers"] == layers]
        fig.add_trace(go.Scatter(x=[r[c_key] for r in rs], y=[r[acc_key] for r in rs], mode="markers",
                                 name=f"loss on {layers}", legendgroup=str(layers), opacity=0.4,
                                 text=[f"lambda={r['lam']:g}, seed {r['seed']}" for r in rs]))
        ms = [(lam, c, a) for ly, lam, c, a in means if ly == layers]
        fig.add_trace(go.Scatter(x=[c.mean for _, c, _ in ms], y=[a.mean for _, _, a in ms], mode="markers",
                                 name=f"loss on {layers}: mean over seeds", legendgroup=str(layers),
                                 text=[f"lambda={lam:g}, {a.n} seeds" for lam, _, a in ms],
                                 error_x={"type": "data", "array": [_half(c) for _, c, _ in ms]},
                                 error_y={"type": "data", "array": [_half(a) for _, _, a in ms]}))
    fig.add_trace(go.Scatter(x=[means[i][2].mean for i in front], y=[means[i][3].mean for i in front],
                             mode="lines+markers", name="Pareto frontier of the (layers, lambda) means",
                             line={"color": "black"}))
    fig.update_layout(title_text=title, xaxis_title=xlabel, yaxis_title="test accuracy", plot_bgcolor="white",
                      width=800, height=450)
    return fig
