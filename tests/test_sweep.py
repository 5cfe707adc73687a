"""Lambda sweep records, grouping, Pareto frontier and paired summaries, on tiny random data."""

import math

import pytest
import torch

from modclust.core.data import Dataset
from modclust.experiments.sweep import (
    layers_label,
    paired_difference,
    pareto_front,
    resolve_layers,
    run_sweep,
    summarize,
    sweep_configs,
    train_sweep,
)
from modclust.core.train import TrainConfig, train

WIDTHS = (12, 8, 8, 3)
BASE = TrainConfig(widths=WIDTHS, n_clusters=2, epochs=2, batch_size=16, lr=0.05)


@pytest.fixture(scope="module")
def data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 12, generator=g)
    y = (x[:, :3].argmax(1)).long()  # learnable labels
    return Dataset("mnist", x[:128], y[:128], x[128:], y[128:])


def test_configs_cover_the_grid() -> None:
    cfgs = sweep_configs([0, 3], [1, 2], ["fc2", "all"], BASE)
    assert len(cfgs) == 8
    assert {c.clustered_layers for c in cfgs} == {("fc2",), ("fc1", "fc2", "fc3")}
    assert {(c.lam, c.seed) for c in cfgs} == {(0.0, 1), (0.0, 2), (3.0, 1), (3.0, 2)}
    assert resolve_layers(["fc1", "fc3"], WIDTHS) == ("fc1", "fc3")
    assert layers_label(("fc1", "fc2", "fc3"), WIDTHS) == "all" and layers_label((), WIDTHS) == "none"
    with pytest.raises(ValueError, match="not layers of this MLP"):
        sweep_configs([1], [0], ["fc9"], BASE)


def test_grouped_training_matches_single_runs(data: Dataset) -> None:
    cfgs = sweep_configs([0, 10], [0, 1], ["fc2", "all"], BASE)
    results = train_sweep(cfgs, data, progress=False)
    assert [r.config for r in results] == cfgs  # order kept across groups
    alone = train(cfgs[5], data, progress=False)
    for a, b in zip(results[5].model.weights(), alone.model.weights()):
        torch.testing.assert_close(a, b)


def test_records_are_tidy_and_lambda_raises_c(data: Dataset) -> None:
    recs = run_sweep([0, 30], [0, 1], data, ["fc2", "all"], BASE, progress=False)
    assert len(recs) == 8
    for r in recs:
        assert {"lam", "seed", "layers", "test_acc", "C_fc1", "C_fc2", "C_fc3", "C_clustered"} <= set(r)
        assert 0 <= r["test_acc"] <= 1
    by = {(r["layers"], r["lam"], r["seed"]): r for r in recs}
    for s in (0, 1):
        assert by[("fc2", 30.0, s)]["C_fc2"] > by[("fc2", 0.0, s)]["C_fc2"]
        assert by[("all", 30.0, s)]["C_fc1"] > by[("fc2", 30.0, s)]["C_fc1"]  # only "all" clusters fc1
        # lambda = 0 trains the same network whichever layers are named
        assert by[("all", 0.0, s)]["test_acc"] == by[("fc2", 0.0, s)]["test_acc"]
    summ = summarize(recs, metrics=("test_acc", "C_fc2"))
    assert len(summ) == 4 and all(row["n"] == 2 for row in summ)
    diffs = paired_difference(recs)
    assert {(d["layers"], d["lam"]) for d in diffs} == {("fc2", 30.0), ("all", 30.0)}
    assert all(d["n"] == 2 for d in diffs)


def test_pareto_front() -> None:
    pts = [(0.25, 0.90), (0.5, 0.91), (0.9, 0.89), (0.95, 0.80), (0.6, 0.85), (0.5, 0.91), (0.95, 0.70)]
    assert pareto_front(pts) == [1, 5, 2, 3]
    assert pareto_front([]) == []
    assert pareto_front([(1.0, 1.0), (0.0, 0.0)]) == [0]


def test_paired_difference_uses_same_seed() -> None:
    recs = [{"layers": "fc2", "lam": lam, "seed": s, "test_acc": 0.9 + 0.01 * s + (0.02 if lam else 0.0)}
            for lam in (0.0, 15.0) for s in range(4)]
    (row,) = paired_difference(recs)
    assert row["difference"]["mean"] == pytest.approx(0.02)
    assert row["difference"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert not math.isnan(row["difference"]["lo"])
    # a constant +0.02 on every seed is a clear paired increase, though Welch's unpaired test
    # cannot separate it from the seed-to-seed spread
    assert row["direction"] == "higher" and row["welch"] == "indistinguishable"
