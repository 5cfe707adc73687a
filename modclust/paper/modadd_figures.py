"""The figures of the paper's modular-addition section, from the result of stage 8.

Each takes what the template's run of
:class:`~modclust.experiments.modular_addition.ModularAddition` returns (a
:class:`~modclust.experiments.study.StudyResult`):
:func:`training_figure` (test accuracy and the blocks' C over training), :func:`summary_figure`
(MI and ablation specificity per model, against their nulls) and :func:`ablation_figure` (the
clusters' ablation by frequency), each with a plotly twin for the notebook. The section's
numbers are in :mod:`modclust.paper.modadd_numbers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from modclust.core.stats import mean_ci
from modclust.experiments.study import StudyResult, seed_column
from modclust.paper.figures import MODEL_COLORS, lambda_label, mean_and_half
from modclust.paper.modadd_numbers import clustered_lambda


def _color(lam: float) -> str:
    return MODEL_COLORS["unclustered" if lam == 0 else "clustered"]


def _records(study: StudyResult) -> list[Mapping[str, Any]]:
    """Every run's training record (its history), by lambda and seed."""
    return sorted(study.records, key=lambda r: (r["lam"], r["seed"]))


def _run(study: StudyResult, lam: float, seed: int) -> Mapping[str, Any]:
    """The analyses of the model at ``lam`` and ``seed``."""
    return next(r for r in study.runs if float(r["lam"]) == lam and r["seed"] == seed)


def training_figure(study: StudyResult) -> plt.Figure:
    """Test accuracy and C(W_in) against training step, one line per run, coloured by lambda."""
    stop = study.study["stop_at"]
    fig, axes = plt.subplots(1, 2, figsize=(6.5, 2.3))
    seen: set[float] = set()
    for r in _records(study):
        h, lam = r["history"], float(r["lam"])
        label = None if lam in seen else lambda_label(lam)
        seen.add(lam)
        axes[0].plot(h["step"], h["test_acc"], color=_color(lam), lw=0.8, alpha=0.8, label=label)
        axes[1].plot(h["step"], h["c_in"], color=_color(lam), lw=0.8, alpha=0.8)
    axes[0].axhline(stop, color="black", lw=0.6, ls="--")
    axes[0].set_ylabel("test accuracy")
    axes[1].set_ylabel("$C(W_{\\mathrm{in}})$")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.set_ylim(0, 1.03)
    axes[0].legend(loc="lower right")
    return fig


def _dots(ax: plt.Axes, x: float, vals: Sequence[float], color: str, marker: str = "o") -> None:
    if not vals:
        return
    jitter = np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else np.zeros(1)
    ax.scatter(x + jitter, vals, s=6, color=color, alpha=0.45, marker=marker, linewidths=0)
    mean, half = mean_and_half(np.asarray(vals, dtype=float))
    ax.errorbar([x], [float(mean)], yerr=[float(half)] if len(vals) > 1 else None, fmt=marker, color=color,
                markersize=4)


def summary_figure(study: StudyResult) -> plt.Figure:
    """MI(cluster, frequency) against its shuffled null (left) and ablation specificity against
    random neuron sets (right), per model; dots are runs, markers means with 95 % intervals."""
    lam = clustered_lambda(study)
    fig, (ax_mi, ax_sp) = plt.subplots(1, 2, figsize=(6.5, 2.4))
    # the spectral clusters of clustered models are left out: they recover the trained blocks
    groups = [("blocks", 0.0, "mi", "mi_null"), ("spectral", 0.0, "spectral_mi", "spectral_mi_null"),
              ("trained", lam, "mi", "mi_null")]
    for i, (name, v, key, null) in enumerate(groups):
        _dots(ax_mi, i - 0.15, seed_column(study.rows, key, v), _color(v))
        _dots(ax_mi, i + 0.15, seed_column(study.rows, null, v), "#888888", "s")
    ax_mi.set_xticks(range(len(groups)), [f"{n}\n{'λ=0' if v == 0 else f'λ={v:g}'}" for n, v, _, _ in groups])
    ax_mi.set_ylabel("MI(cluster, frequency), bits")
    ax_mi.scatter([], [], color="#888888", marker="s", s=8, label="shuffled null")
    ax_mi.legend(loc="upper left")
    for i, v in enumerate((0.0, lam)):
        _dots(ax_sp, i - 0.15, seed_column(study.rows, "abl_specificity", v), _color(v))
        _dots(ax_sp, i + 0.15, seed_column(study.rows, "control_specificity", v), "#888888", "s")
    ax_sp.set_xticks(range(2), ["equal blocks\nλ=0", f"trained clusters\nλ={lam:g}"])
    ax_sp.set_ylabel("ablation specificity")
    ax_sp.set_ylim(0, 1.03)
    ax_sp.scatter([], [], color="#888888", marker="s", s=8, label="random neuron sets")
    ax_sp.legend(loc="upper left")
    ax_mi.set_xlim(-0.6, len(groups) - 0.4)
    ax_sp.set_xlim(-0.6, 1.6)
    return fig


def ablation_tables(run: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One model's (k, n_key) explained-neuron counts per (cluster, key frequency), the logits'
    remaining rms at each key frequency with each cluster ablated (after / before), and the key
    frequencies; ``run`` is its analyses (an entry of the study's ``runs``)."""
    counts = np.asarray(run["counts"], dtype=float).reshape(len(run["ablation"]["clusters"]), -1)
    left = np.array([[a / b if b > 0 else np.nan for a, b in zip(c["logit_rms_after"], c["logit_rms_before"])]
                     for c in run["ablation"]["clusters"]], dtype=float).reshape(counts.shape)
    return counts, left, list(run["key_frequencies"])


def ablation_figure(study: StudyResult, seed: int | None = None) -> plt.Figure:
    """For one seed (default the first), unclustered and clustered: neurons per (cluster, key
    frequency), and the share of the logits' rms left at each key frequency with each cluster ablated."""
    lam = clustered_lambda(study)
    seed = study.study["seeds"][0] if seed is None else seed
    fig, axes = plt.subplots(2, 2, figsize=(6.5, 3.6), squeeze=False)
    for row, v in enumerate((0.0, lam)):
        counts, left, keys = ablation_tables(_run(study, v, seed))
        k = counts.shape[0]
        for col, (mat, title, cmap, vmax) in enumerate(((counts, "explained neurons", "Blues", None),
                                                       (left, "logit rms left (after / before)", "magma", 1.0))):
            ax = axes[row, col]
            ax.grid(False)
            if mat.size == 0:
                ax.text(0.5, 0.5, "no key frequency", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                im = ax.imshow(mat, aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
                ax.set_xticks(range(len(keys)), [str(f) for f in keys])
                ax.set_yticks(range(k), [f"cluster {c + 1}" for c in range(k)])
                fig.colorbar(im, ax=ax, shrink=0.85)
            ax.set_title(f"{lambda_label(v)}, seed {seed}: {title}", fontsize="small", loc="left")
            if row == 1:
                ax.set_xlabel("key frequency")
    return fig


def plotly_training(study: StudyResult) -> go.Figure:
    """Interactive :func:`training_figure` (hover: lambda and seed)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["test accuracy", "C(W_in)"])
    seen: set[float] = set()
    for r in _records(study):
        h, lam = r["history"], float(r["lam"])
        for col, key in ((1, "test_acc"), (2, "c_in")):
            fig.add_trace(go.Scatter(x=h["step"], y=h[key], mode="lines", line={"color": _color(lam)},
                                     name=lambda_label(lam), legendgroup=str(lam),
                                     showlegend=col == 1 and lam not in seen, text=f"seed {r['seed']}"),
                          row=1, col=col)
        seen.add(lam)
    fig.update_layout(title_text="Training until test accuracy reaches the stop value", plot_bgcolor="white",
                      width=900, height=380, xaxis_title="step", xaxis2_title="step")
    return fig


def plotly_summary(study: StudyResult) -> go.Figure:
    """Interactive :func:`summary_figure`: means with 95 % intervals, beside their nulls."""
    lam = clustered_lambda(study)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["MI(cluster, dominant frequency), bits",
                                                        "ablation specificity"])
    mi_groups = [("blocks λ=0", 0.0, "mi", "mi_null"), ("spectral λ=0", 0.0, "spectral_mi", "spectral_mi_null"),
                 (f"trained λ={lam:g}", lam, "mi", "mi_null")]
    sp_groups = [("blocks λ=0", 0.0, "abl_specificity", "control_specificity"),
                 (f"trained λ={lam:g}", lam, "abl_specificity", "control_specificity")]
    for col, groups, null_name in ((1, mi_groups, "shuffled null"), (2, sp_groups, "random neuron sets")):
        for which, name in ((2, "model"), (3, null_name)):
            cols = [seed_column(study.rows, g[which], g[1]) for g in groups]
            iv = [mean_ci(col) if col else None for col in cols]
            fig.add_trace(go.Bar(x=[g[0] for g in groups], y=[i.mean if i else None for i in iv], name=name,
                                 legendgroup=name, showlegend=col == 1 or which == 3,
                                 error_y={"type": "data", "array": [(i.hi - i.lo) / 2 if i and i.n > 1 else 0
                                                                    for i in iv]}), row=1, col=col)
    fig.update_layout(barmode="group", plot_bgcolor="white", width=900, height=380,
                      title_text="Do clusters line up with the key frequencies? (means over seeds, 95 % intervals)")
    return fig


def plotly_ablation(study: StudyResult, seed: int | None = None) -> go.Figure:
    """Interactive :func:`ablation_figure`."""
    lam = clustered_lambda(study)
    seed = study.study["seeds"][0] if seed is None else seed
    titles = [f"{lambda_label(v)}: {t}" for v in (0.0, lam) for t in ("explained neurons", "logit rms left")]
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles)
    for row, v in enumerate((0.0, lam), start=1):
        counts, left, keys = ablation_tables(_run(study, v, seed))
        ys = [f"cluster {c + 1}" for c in range(counts.shape[0])]
        xs = [str(f) for f in keys]
        fig.add_trace(go.Heatmap(z=counts, x=xs, y=ys, colorscale="Blues", showscale=False), row=row, col=1)
        fig.add_trace(go.Heatmap(z=left, x=xs, y=ys, zmin=0, zmax=1, colorscale="Magma", showscale=row == 1),
                      row=row, col=2)
    fig.update_layout(width=900, height=520, title_text=f"Clusters and key frequencies, seed {seed}")
    return fig
