"""The per-run analyses of the beyond stage (modclust.experiments.per_run) return complete,
JSON-ready results on a tiny run; its figures (modclust.paper.figures) draw and its paper numbers
(modclust.paper.numbers) follow the data."""

import dataclasses
import json
import re

import matplotlib.pyplot as plt
import pytest
import torch

from modclust.experiments.per_run import (
    BeyondSettings,
    circuit_analysis,
    circuit_row,
    run_beyond,
    selectivity_analysis,
    selectivity_row,
    spectral_baseline,
    spectral_row,
)
from modclust.analysis.sparsity import live_mask, proportional_floor
from modclust.core import paths
from modclust.core.data import Dataset
from modclust.core.train import TrainConfig, train
from modclust.experiments.grid import grid_configs, paired_difference, run_record, train_grid
from modclust.experiments.mlp_study import MlpSettings
from modclust.paper.figures import iou_figure, pareto_figure, plotly_pareto, profile_figure
from modclust.paper.latex import macros_tex
from modclust.paper.numbers import beyond_macros, write_beyond_numbers
from stage_results import stage6_results, written_macros


def tiny_run() -> tuple:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g)
    y = x[:, :10].argmax(1)
    data = Dataset("mnist", x[:200], y[:200], x[200:], y[200:])
    cfg = TrainConfig(widths=(12, 8, 8, 10), n_clusters=2, lam=5.0, epochs=2, batch_size=20, lr=0.05)
    return train(cfg, data, progress=False), data


def test_beyond_analyses_are_complete_and_serialisable() -> None:
    run, data = tiny_run()
    sb = spectral_baseline(run, data, "fc2", n_draws=3)
    settings = dataclasses.replace(BeyondSettings.of(MlpSettings(), 5.0, "fc2"), mask_steps=20)
    assert sb["spectral"]["k"] <= 2 and len(sb["spectral"]["null_c"]) == 3
    assert len(sb["blocks"]["ablation"]["off_acc"]) == 2
    ca, found = circuit_analysis(run, data, settings, "seed", labels=[0, 1, 2])
    assert [m for m, _ in found] == ["greedy"] * 3 + ["mask"] * 3
    assert ca["greedy"]["faithfulness"][0]["share_c"] >= 0
    assert len(ca["greedy"]["sizes"]) == 3 and len(ca["mask"]["iou"]) == 3
    assert len(ca["greedy_vs_mask_iou"]) == 3 and len(ca["mask"]["share"]) == 3
    sa = selectivity_analysis(run, data, layers=["fc1", "fc2"], cluster_layer="fc2", n_bins=10)
    assert len(sa["units"]["fc2"]["selectivity"]) == 8 and len(sa["clusters"]["profile"]) == 2
    json.dumps({"s": sb, "c": ca, "u": sa})
    rows = {**spectral_row(sb), **circuit_row(ca), **selectivity_row(sa)}
    assert {"z_c", "blocks_c", "greedy_size", "mask_share", "share_floor", "sel_fc2", "cluster_mi"} <= set(rows)
    # the floor is an even spread over the live weights, not the largest block's share of the matrix
    assert rows["share_floor"] == proportional_floor(live_mask(run.model.fc2.weight), run.blocks("fc2"))


def test_beyond_figures_draw() -> None:

    recs = [{"layers": layers, "lam": 15.0, "seed": s, "C_clustered": c + 0.01 * s, "test_acc": a - 0.01 * s}
            for layers, c, a in (("fc2", 0.3, 0.9), ("all", 0.9, 0.8)) for s in (0, 1)]
    names = [str(i) for i in range(3)]
    for fig in (pareto_figure(recs), iou_figure({"a": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, names)):
        assert fig.axes
        plt.close(fig)
    assert pareto_figure(recs).axes[0].get_xlabel() == "clusterability C"  # not the record's key
    # every seed a row, every setting a column, one colour scale for all
    fig = profile_figure({"a": [[[0.5, 0.25, 0.25]], [[0.2, 0.2, 0.6]]], "b": [[[0.1, 0.8, 0.1]]] * 2}, names, [0, 7])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 4 and {im.get_clim() for im in images} == {(0.0, 0.8)}
    assert "seed 7" in fig.axes[1].get_ylabel() or any("seed 7" in ax.get_ylabel() for ax in fig.axes)
    plt.close(fig)


def test_pareto_figures_draw_the_front_of_the_means() -> None:
    """Both pareto figures put each (layers, lambda)'s mean over seeds on the frontier, not a lucky run;
    a run without C (nothing clustered) is left out."""

    recs = [{"layers": layers, "lam": lam, "seed": s, "C_clustered": c + 0.02 * s, "test_acc": a - 0.02 * s}
            for layers, lam, c, a in (("fc2", 0.0, 0.3, 0.9), ("fc2", 15.0, 0.6, 0.7), ("all", 15.0, 0.9, 0.8),
                                      ("all", 30.0, 0.5, 0.6)) for s in (0, 1)]
    recs.append({"layers": "none", "lam": 0.0, "seed": 0, "C_clustered": None, "test_acc": 0.99})
    front = [(0.31, 0.89), (0.91, 0.79)]  # ("fc2", 0) and ("all", 15); the other two means are dominated
    fig = pareto_figure(recs)
    line = fig.axes[0].lines[-1]
    assert line.get_label() == "Pareto frontier (means)"
    assert [tuple(p) for p in line.get_xydata().round(6)] == front
    assert sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts()) == \
        ["Pareto frontier (means)", "loss on all", "loss on fc2"]
    plt.close(fig)
    pf = plotly_pareto(recs)
    names = [t.name for t in pf.data]
    assert names == ["loss on fc2", "loss on fc2: mean over seeds", "loss on all", "loss on all: mean over seeds",
                     "Pareto frontier of the (layers, lambda) means"]
    assert [(round(x, 6), round(y, 6)) for x, y in zip(pf.data[-1].x, pf.data[-1].y)] == front
    assert len(pf.data[0].x) == 4 and pf.data[0].text[0] == "lambda=0, seed 0"
    assert pf.data[1].error_y.array[0] > 0


def test_macros_follow_the_data(tmp_path) -> None:
    m = beyond_macros(stage6_results())
    assert m["AccSentenceFcTwo"] == "less accurate than"
    assert m["SpectralSentence"] == "not distinguishably more or less clusterable than"
    assert m["GreedySizeSentence"] == "smaller" and m["MaskSizeSentence"].startswith("not distinguishable")
    assert m["ClusterSelSentence"] == "more"
    assert m["BeyondSeeds"] == "4" and "\\pm" in m["CFcTwoMain"]
    tex = macros_tex(m)
    assert tex.count("\\newcommand") == len(m)
    path = write_beyond_numbers(m, tmp_path)
    assert path.name == "beyond.tex"
    lines = path.read_text().splitlines()
    assert lines[0] == "% Generated by the paper pipeline (notebooks/06_beyond.ipynb). Do not edit."
    assert len(lines) == len(m) + 1


def test_beyond_macro_strings_are_pinned() -> None:
    """The exact text of stage 6's numbers and sentences (the paper prints them as they are)."""
    m = beyond_macros(stage6_results())
    assert m["AccDiffFcTwo"] == "\\ensuremath{-}5.0\\,\\ensuremath{\\pm}\\,0.0"
    assert m["AccDiffAll"] == m["AccDiffFcTwo"] and m["AccSentenceAll"] == "less accurate than"
    assert m["CFcTwoMain"] == "0.99\\,\\ensuremath{\\pm}\\,0.00" and m["CAllMain"] == m["CFcTwoMain"]
    assert m["BeyondLambdas"] == "0, 15" and m["BeyondMainLambda"] == "15"
    assert m["SpectralZUnclustered"] == "0.0\\,\\ensuremath{\\pm}\\,0.2"
    assert m["GreedySizeClustered"] == "52\\,\\ensuremath{\\pm}\\,2"
    assert m["GreedyAgreeClustered"] == "98.0\\,\\ensuremath{\\pm}\\,0.0\\,\\%"
    assert m["SelFcOneClustered"] == "0.30\\,\\ensuremath{\\pm}\\,0.00" and "SelFcTwoClustered" in m
    assert m["SelFcTwoSentence"] == "not distinguishably more or less"
    assert m["GreedyIoUSentence"] == "not distinguishable in size or overlap"


def test_beyond_sentences_follow_the_side_of_the_interval() -> None:
    """A paired difference whose interval lies above 0 reads "more", one that straddles 0 "not distinguishable"."""
    res = stage6_results()
    for r in res.records:
        if r["lam"]:
            r["test_acc"] = 0.95 + 0.001 * r["seed"] + (0.01 * r["seed"] if r["layers"] == "all" else 0)
            if r["layers"] == "all":
                r["test_acc"] -= 0.07 if r["seed"] % 2 else -0.03
    res = dataclasses.replace(res, paired_accuracy=paired_difference(res.records))
    for r in res.spectral["rows"]:
        r["z_c"] = 3.0 + 0.1 * r["seed"]
    m = beyond_macros(res)
    assert m["AccSentenceFcTwo"] == "more accurate than"
    assert m["AccSentenceAll"] == "not distinguishable in accuracy from"
    assert m["SpectralSentence"] == "more clusterable than"


def test_an_undefined_value_of_one_seed_is_left_out() -> None:
    """An IoU of two empty circuits is nan (undefined): that seed drops out of the interval and
    the comparison instead of stopping the macros or printing nan."""
    res = stage6_results()
    for r in res.circuits["rows"]:
        if r["seed"] == 0:
            r["greedy_iou"], r["greedy_size"] = float("nan"), float("nan")
    m = beyond_macros(res)
    assert m["GreedySizeSentence"] == "smaller"
    assert "nan" not in " ".join(m.values())


def test_run_beyond_end_to_end_on_a_tiny_run() -> None:
    """Stage 6 on a tiny sweep trained the way stage 1 trains it: it trains nothing itself."""
    run, data = tiny_run()
    cfg = TrainConfig(widths=(12, 8, 8, 10), n_clusters=2, epochs=1, batch_size=20, lr=0.05)
    configs = grid_configs([0.0, 5.0], [0], layer_sets=["fc2", "all"], base=cfg)
    runs = train_grid(configs, data, progress=False)
    records = [run_record(r) for r in runs]
    settings = MlpSettings(null_draws=2, circuit_layers=("fc2", "fc3"), labels=(0, 1), mask_steps=5,
                           search_per_class=5)
    res, circuits = run_beyond(data, runs, records, BeyondSettings.of(settings, main_lambda=5.0, analysis_layers="fc2"),
                               progress=False)
    # 2 runs x 2 objectives (faithful, seed's) x 2 methods x 2 labels, each with its kept masks
    assert len(circuits) == 16 and {r["objective"] for r in circuits} == {"margin", "seed"}
    assert set(circuits[0]["kept"]) == {"fc2", "fc3"} and circuits[0]["kept"]["fc2"].dtype == torch.bool
    assert "greedy_agreement" in res.circuits["rows"][0] and len(res.seed_circuits["rows"]) == 2
    assert len(res.records) == 4 and res.lambdas == [0.0, 5.0] and res.layer_sets == ["fc2", "all"]
    assert len(res.spectral["rows"]) == len(res.circuits["rows"]) == len(res.selectivity["rows"]) == 2
    assert {r["layers"] for r in res.spectral["rows"]} == {"fc2"}
    assert "greedy_share" in res.circuits["rows"][0]
    # the settings reach the analyses: every one the result records
    assert res.spectral["null_draws"] == 2 and res.circuits["labels"] == [0, 1] and res.circuits["mask_steps"] == 5
    assert res.circuits["search"]["per_class"] == 5 and res.circuits["layers"] == ["fc2", "fc3"]
    assert res.circuits["objective"] == settings.faithful_objective and res.selectivity["bins"] == 10
    json.dumps(res.to_dict())
    assert "SpectralSentence" in beyond_macros(res)
    with pytest.raises(ValueError, match="main_lambda 15 on the layer set 'fc2'"):
        run_beyond(data, runs, records, BeyondSettings.of(MlpSettings(), main_lambda=15.0, analysis_layers="fc2"))


def test_beyond_settings_are_the_study_settings_of_the_same_names() -> None:
    """Stage 6's settings have no defaults of their own: each is MlpSettings' field of its name
    (the home of its default), besides stage 1's main lambda and analysed layer set."""
    settings = MlpSettings(null_draws=3, threshold=0.001, labels=(1, 2), selectivity_bins=5)
    st = BeyondSettings.of(settings, main_lambda=5.0, analysis_layers="fc2")
    assert (st.main_lambda, st.analysis_layers) == (5.0, "fc2")
    own = dataclasses.fields(BeyondSettings)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in own)
    study = {f.name for f in dataclasses.fields(MlpSettings)}
    for f in own:
        if f.name not in ("main_lambda", "analysis_layers"):
            assert f.name in study and getattr(st, f.name) == getattr(settings, f.name), f.name


def test_the_paper_uses_only_macros_the_pipeline_writes() -> None:
    """Stage 6's section and main.tex use only generated macros (the share macros, written only
    when circuits include fc2, are guarded by \\ifdefined)."""
    known = written_macros()
    for name in ("beyond_section.tex", "main.tex"):
        text = (paths.REPO / "paper" / name).read_text()
        text = re.sub(r"\\ifdefined\\GreedyShareClustered.*?\\fi\b", "", text, flags=re.S)
        used = set(re.findall(r"\\([A-Z][A-Za-z]+)", text))
        later = {m for m in used if m.startswith(("Cnn", "ModAdd"))}  # stages 7 and 8: their own tests check them
        missing = used - known - later
        assert not missing, f"paper/{name} uses macros nobody writes: {sorted(missing)}"
