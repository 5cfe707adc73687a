"""modclust.paper.figures: the shared helpers (colours, mean and interval, ranking, saving) and the
figures that no study's test draws, on tiny hand-made inputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as st  # noqa: E402

from modclust.paper import figures as fg  # noqa: E402

CLASSES = [str(c) for c in range(3)]


def test_mean_and_half_is_the_t_interval_per_column():
    v = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])  # (seeds, points)
    m, h = fg.mean_and_half(v)
    assert m == pytest.approx([2.0, 3.0])
    assert h == pytest.approx(st.t.ppf(0.975, 2) * v.std(0, ddof=1) / np.sqrt(3))
    m1, h1 = fg.mean_and_half(v[:1])
    assert m1 == pytest.approx(v[0]) and h1 == pytest.approx([0.0, 0.0])  # one seed: no interval


def test_colours_tell_the_settings_apart():
    assert fg.lambda_color(0.0, [0.0, 5.0]) == fg.MODEL_COLORS["unclustered"]
    assert fg.lambda_color(5.0, [0.0, 5.0]) == fg.MODEL_COLORS["clustered"]
    assert len({fg.lambda_color(v, [0.0, 1.0, 5.0, 15.0]) for v in (0.0, 1.0, 5.0, 15.0)}) == 4
    assert fg.lambda_label(0.0) == "unclustered (λ=0)" and fg.lambda_label(15.0) == "clustered (λ=15)"


def test_ranked_ablation_orders_each_seed_by_importance():
    rows = [{"off_acc": [0.9, 0.2, 0.5]}, {"off_acc": [0.1, 0.8, 0.3]}]
    ranked = fg.ranked_ablation(rows, "off_acc")
    assert ranked.tolist() == [[0.2, 0.5, 0.9], [0.1, 0.3, 0.8]]  # lowest OFF accuracy first


def test_save_writes_a_pdf_and_leaves_no_temporary(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = fg.save(fig, tmp_path / "f.pdf", close=True)
    assert out.read_bytes().startswith(b"%PDF")
    assert [p.name for p in tmp_path.iterdir()] == ["f.pdf"]


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
