"""The figures of an image classifier's paper section (the CNN's: stage 7), from its study's result.

Each takes what :func:`modclust.experiments.classifier.run_datasets` returns for every dataset
(and the first two the family's study, for its clustered layers), and draws means with 95 % intervals over seeds:
:func:`tradeoff_figure` (accuracy and C against lambda), :func:`ablation_figure` (each cluster
OFF and ON) and :func:`circuit_figure` (each label's circuit against a random mask of its size).
The section's numbers are in :mod:`modclust.paper.classifier_numbers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from modclust.experiments.classifier import ClassifierStudy
from modclust.experiments.study import seed_column
from modclust.paper.classifier_numbers import dataset_word
from modclust.paper.figures import MODEL_COLORS, lambda_color, lambda_label, mean_and_half


LAYER_COLORS = ("#228833", "#AA3377", "#CCBB44", "#66CCEE")
"""The clustered layers' colours, in their order."""


def _errorbar(ax: plt.Axes, x: np.ndarray, values: Sequence[Sequence[float]], **kw: Any) -> None:
    v = np.asarray(values, dtype=float)  # (seeds, points)
    m, h = mean_and_half(v)
    ax.errorbar(x, m, yerr=h if v.shape[0] > 1 else None, marker="o", markersize=3, **kw)


def tradeoff_figure(results: Mapping[str, Any], family: ClassifierStudy[Any]) -> plt.Figure:
    """Per dataset (columns): test accuracy (top) and C of each clustered layer (bottom) against lambda,
    mean ± 95 % interval over seeds; dotted: the untrained networks' mean C (the majority-class
    accuracy, far below, is left to the tables so that the accuracy axis resolves the seeds)."""
    names = list(results["datasets"])
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 3.6), squeeze=False, sharex="col")
    for j, name in enumerate(names):
        res = results["results"][name]
        rec, un = res["records"], res["untrained"]
        lams = sorted({float(r["lam"]) for r in rec})
        x = np.arange(len(lams))
        acc = np.array([seed_column(rec, "test_acc", lam) for lam in lams]).T  # (seeds, lambdas)
        _errorbar(axes[0, j], x, acc, color=MODEL_COLORS["clustered"])
        axes[0, j].set_title(dataset_word(name)[1])
        axes[0, j].set_ylabel("test accuracy")
        layers = family.clustered_layers
        for layer, color in zip(layers, LAYER_COLORS):
            c = np.array([seed_column(rec, f"C_{layer}", lam) for lam in lams]).T
            _errorbar(axes[1, j], x, c, color=color, label=f"C of {layer}")
        untrained_c = float(np.mean([v for layer in layers for v in seed_column(un, f"C_{layer}")]))
        axes[1, j].axhline(untrained_c, color="grey", ls=":", lw=0.8, label="untrained")
        axes[1, j].set_ylim(0, 1.02)
        axes[1, j].set_ylabel("clusterability C")
        axes[1, j].set_xticks(x, [f"{lam:g}" for lam in lams])
        axes[1, j].set_xlabel("λ")
    axes[1, -1].legend(loc="center right")
    return fig


def ablation_figure(results: Mapping[str, Any], family: ClassifierStudy[Any]) -> plt.Figure:
    """Per dataset (rows) and layer x mode (columns: e.g. conv2 OFF, conv2 ON, fc1 OFF, fc1 ON): test
    accuracy with each cluster ablated, clusters ranked by importance per seed, unclustered and
    clustered side by side (mean ± 95 % interval); the line is the full models' accuracy."""
    names = list(results["datasets"])
    panels = [(layer, mode) for layer in family.clustered_layers for mode in ("off", "on")]
    fig, axes = plt.subplots(len(names), len(panels), figsize=(6.5, 1.7 * len(names) + 0.4), squeeze=False,
                             sharey=True)
    for i, name in enumerate(names):
        res = results["results"][name]
        main = float(res["study"]["main_lambda"])
        abl = res["summary"]["ablation"]
        for j, (layer, mode) in enumerate(panels):
            ax = axes[i, j]
            for s, lam in enumerate((0.0, main)):
                d = abl[f"{lam:g}"][layer]
                v = np.asarray(d[f"{mode}_acc"], dtype=float)  # (seeds, k), ranked
                m, h = mean_and_half(v)
                x = np.arange(v.shape[1]) + (s - 0.5) * 0.38
                ax.bar(x, m, 0.38, yerr=h if v.shape[0] > 1 else None, color=lambda_color(lam, [0.0, main]),
                       label=lambda_label(lam), error_kw={"elinewidth": 0.7})
                ax.axhline(float(np.mean(d["full_acc"])), color=lambda_color(lam, [0.0, main]), lw=0.6, ls="--")
            ax.set_xticks(np.arange(v.shape[1]), [str(c + 1) for c in range(v.shape[1])])
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{layer} cluster {mode.upper()}", fontsize="small")
            if i == len(names) - 1:
                ax.set_xlabel("cluster, by importance")
        axes[i, 0].set_ylabel(f"{dataset_word(name)[1]}\ntest accuracy")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncols=2)
    return fig


def circuit_figure(results: Mapping[str, Any]) -> plt.Figure:
    """Per dataset (rows): each label's circuit's balanced c-vs-rest agreement on test images,
    unclustered and clustered, beside a random mask of the same size (hatched), mean ± 95 %
    interval over seeds; the dotted line is a constant classifier's 0.5."""
    names = list(results["datasets"])
    fig, axes = plt.subplots(len(names), 1, figsize=(6.5, 1.8 * len(names) + 0.3), squeeze=False)
    for i, name in enumerate(names):
        res = results["results"][name]
        main = float(res["study"]["main_lambda"])
        ax = axes[i, 0]
        classes = res["classes"]
        for s, lam in enumerate((0.0, main)):
            per = res["summary"]["circuits"][f"{lam:g}"]
            labels = per["labels"]
            x = np.arange(len(labels))
            color = lambda_color(lam, [0.0, main])
            for t, (key, hatch) in enumerate((("balanced_agreement", None), ("random_balanced_agreement", "///"))):
                v = np.asarray(per[key], dtype=float)
                m, h = mean_and_half(v)
                off = (2 * s + t - 1.5) * 0.2
                ax.bar(x + off, m, 0.2, yerr=h if v.shape[0] > 1 else None, color=color if hatch is None else "white",
                       edgecolor=color, hatch=hatch, error_kw={"elinewidth": 0.6},
                       label=lambda_label(lam) + (" (random, same size)" if hatch else ""))
        ax.axhline(0.5, color="black", ls=":", lw=0.8, label="constant classifier")
        ax.set_xticks(x, [classes[c] for c in labels], fontsize="x-small")
        ax.set_ylim(0.3, 1.02)
        ax.set_ylabel("balanced agreement")
        ax.set_title(dataset_word(name)[1], loc="left", fontsize="small")
    axes[-1, 0].set_xlabel("label of the circuit")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncols=3, fontsize="x-small")
    return fig

