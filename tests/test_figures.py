"""modclust.paper.figures: the shared helpers (colours, mean and interval, ranking, saving) and every
figure, on tiny hand-made inputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from modclust.analysis.ablation import order_by_importance  # noqa: E402
from modclust.core.partition import Partition  # noqa: E402
from modclust.core.stats import mean_ci  # noqa: E402
from modclust.paper import figures as fg  # noqa: E402

CLASSES = [str(c) for c in range(3)]


def test_colours_tell_the_settings_apart():
    assert fg.lambda_color(0.0, [0.0, 5.0]) == fg.MODEL_COLORS["unclustered"]
    assert fg.lambda_color(5.0, [0.0, 5.0]) == fg.MODEL_COLORS["clustered"]
    assert len({fg.lambda_color(v, [0.0, 1.0, 5.0, 15.0]) for v in (0.0, 1.0, 5.0, 15.0)}) == 4
    assert fg.lambda_label(0.0) == "unclustered (λ=0)" and fg.lambda_label(15.0) == "clustered (λ=15)"


def test_ranked_ablation_orders_each_seed_by_importance():
    rows = [{"off_acc": [0.9, 0.2, 0.5]}, {"off_acc": [0.1, 0.8, 0.3]}]
    ranked = fg.ranked_ablation(rows, "off_acc")
    assert ranked.tolist() == [[0.2, 0.5, 0.9], [0.1, 0.3, 0.8]]  # lowest OFF accuracy first


def test_save_writes_a_pdf_and_a_png_beside_it_and_leaves_no_temporary(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = fg.save(fig, tmp_path / "f.pdf", close=True)
    assert out == tmp_path / "f.pdf" and out.read_bytes().startswith(b"%PDF")
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")  # the report's inline image
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]


RECORDS = [{"layers": layers, "lam": lam, "seed": s, "C_clustered": c + 0.01 * s, "test_acc": a - 0.001 * s}
           for layers, lam, c, a in (("fc2", 0.0, 0.3, 0.97), ("fc2", 15.0, 0.9, 0.96), ("all", 15.0, 0.8, 0.94))
           for s in range(3)]


def test_pareto_figure_draws_means_with_intervals_and_the_front():
    fig = fg.pareto_figure(RECORDS)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"loss on fc2", "loss on all", "Pareto frontier (means)"} <= set(labels)
    plt.close(fig)
    runs, means, front = fg._pareto_groups(RECORDS, "C_clustered", "test_acc")
    assert len(runs) == 9 and len(means) == 3
    assert [means[i][:2] for i in front] == [("fc2", 0.0), ("fc2", 15.0)]  # "all" is beaten by fc2 at 15
    assert len(fg.plotly_pareto(RECORDS).data) >= 3


def test_heatmaps_share_one_scale_and_blank_the_diagonal():
    iou = {"unclustered": np.full((3, 3), 0.2), "clustered": np.full((3, 3), 0.6)}
    fig = fg.iou_figure(iou, CLASSES)
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 2 and {im.get_clim() for im in images} == {(0.0, 0.6)}
    assert np.ma.is_masked(images[0].get_array()[0, 0]) and not np.ma.is_masked(images[0].get_array()[0, 1])
    assert iou["unclustered"][0, 0] == 0.2  # the caller's matrix is not changed
    plt.close(fig)
    profiles = {"unclustered": [np.eye(3) * 0.5, np.eye(3)], "clustered": [np.eye(3), np.eye(3) * 2]}
    fig = fg.profile_figure(profiles, CLASSES, seeds=[0, 1])
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert len(images) == 4 and {im.get_clim()[1] for im in images} == {2.0}
    plt.close(fig)


def test_plotly_twins_have_one_trace_per_series():
    cw = np.random.default_rng(0).uniform(size=(2, 3, 3))  # (seeds, k, classes)
    assert len(fg.plotly_classwise(cw, cw, CLASSES).data) == 6
    series = {"a": np.ones((2, 3)), "b": np.zeros((2, 3))}
    assert len(fg.plotly_bars(CLASSES, series, "t", "y").data) == 2
    assert len(fg.plotly_lines([0.0, 1.0, 5.0], series, "t", "x", "y").data) >= 2
    curves = {0.0: [[(0.9, 100.0), (0.95, 200.0)]], 15.0: [[(0.9, 50.0)], [(0.92, 60.0)]]}
    assert len(fg.plotly_size_faithfulness(curves, "t", "faithfulness").data) == 3


def test_clusters_are_ranked_by_importance():
    assert order_by_importance([0.8, 0.5, 0.9, 0.5]) == [1, 3, 0, 2]
    assert order_by_importance(np.array([0.3, math.nan, 0.1])) == [2, 0, 1] and order_by_importance([]) == []
    rows = [{"off_acc": [0.8, 0.5], "x": [10, 20]}, {"off_acc": [0.4, 0.6], "x": [30, 40]}]
    assert fg.ranked_ablation(rows, "x").tolist() == [[20, 10], [30, 40]]


def test_every_figure_draws_and_saves_a_pdf(tmp_path):
    fg.use_style()
    rng = np.random.default_rng(0)
    classes = [str(i) for i in range(10)]
    figs = {
        "ablation": fg.classwise_ablation(rng.random((3, 4, 10)), rng.random((3, 4, 10)), rng.random((3, 10)), classes),
        "matrix": fg.ablation_matrices({"clustered": rng.random((3, 4, 10)), "unclustered": rng.random((3, 4, 10))},
                                       classes, [0, 1, 2]),
        "graph": fg.weight_graphs([("a", rng.normal(size=(64, 64)), rng.normal(size=(10, 64)),
                                    Partition.equal_blocks((64, 64), 4))], classes),
        "revcum": fg.reverse_cumulative({"fc2": {0.0: rng.random((3, 10)), 15.0: rng.random((3, 10))}}, 10, [0.0, 15.0]),
        "curves": fg.training_curves(np.arange(5), {0.0: rng.random((3, 5))}, {0.0: rng.random((3, 5))}, [0.0]),
        "tradeoff": fg.tradeoff([0.0, 15.0], {0.0: [0.9, 0.91], 15.0: [0.89, 0.9]}, {0.0: [0.2, 0.3], 15.0: [0.9, 1.0]}),
        "grid": fg.image_grid(rng.random((4, 3, 28, 28)), rng.integers(0, 10, (4, 3)), ["a", "b", "c", "d"], classes),
        "circuits": fg.circuit_sizes({0.0: rng.random((3, 10)), 15.0: rng.random((3, 10))}, list(range(10)), classes,
                                     [0.0, 15.0]),
    }
    for name, fig in figs.items():
        path = fg.save(fig, tmp_path / f"{name}.pdf", close=True)
        assert path.read_bytes().startswith(b"%PDF")
    m, h = fg.mean_and_half(np.array([[1.0, 2.0]]))
    assert h.tolist() == [0.0, 0.0]


def test_mean_and_half_is_the_interval_of_mean_ci():
    rng = np.random.default_rng(1)
    v = rng.random((5, 3))
    m, h = fg.mean_and_half(v)
    for j in range(3):
        iv = mean_ci(v[:, j].tolist())
        assert m[j] == pytest.approx(iv.mean) and h[j] == pytest.approx((iv.hi - iv.lo) / 2)
    m, h = fg.mean_and_half(v, axis=1, level=0.9)
    assert h[0] == pytest.approx((mean_ci(v[0].tolist(), 0.9).hi - mean_ci(v[0].tolist(), 0.9).lo) / 2)
