"""The experiment grid (modclust.experiments.grid): configurations over layer sets x lambda x seed,
batched training, per-run records, summaries over seeds and paired differences, on tiny random data."""

import math

import pytest
import torch

from modclust.core.data import Dataset
from modclust.core.train import TrainConfig, run_name, train
from modclust.experiments.grid import (
    grid_configs,
    group,
    layer_clusterabilities,
    layers_label,
    load_summary,
    paired_difference,
    resolve_layers,
    run_record,
    save_runs,
    summarise,
    summary_table,
    train_grid,
)

WIDTHS = (12, 8, 8, 3)
BASE = TrainConfig(widths=WIDTHS, n_clusters=2, epochs=2, batch_size=16, lr=0.05)


@pytest.fixture(scope="module")
def data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 12, generator=g)
    y = (x[:, :3].argmax(1)).long()  # learnable labels
    return Dataset("mnist", x[:128], y[:128], x[128:], y[128:])


def test_configs_cover_the_grid() -> None:
    cfgs = grid_configs([0, 3], [1, 2], ["fc2", "all"], BASE)
    assert len(cfgs) == 8
    assert {c.clustered_layers for c in cfgs} == {("fc2",), ("fc1", "fc2", "fc3")}
    assert {(c.lam, c.seed) for c in cfgs} == {(0.0, 1), (0.0, 2), (3.0, 1), (3.0, 2)}
    assert [c.clustered_layers for c in cfgs[:4]] == [("fc2",)] * 4  # layer set first, then lambda, then seed
    assert resolve_layers(["fc1", "fc3"], WIDTHS) == ("fc1", "fc3")
    assert layers_label(("fc1", "fc2", "fc3"), WIDTHS) == "all" and layers_label((), WIDTHS) == "none"
    with pytest.raises(ValueError, match="not layers of this MLP"):
        grid_configs([1], [0], ["fc9"], BASE)
    with pytest.raises(ValueError, match="at least one"):
        grid_configs([1], [0], [], BASE)


def test_configs_without_layer_sets_keep_the_clustered_layers_given() -> None:
    """The train stage's call: fields by keyword, one layer set (the clustered layers named)."""
    cfgs = grid_configs([15, 0, 15], [1, 0, 1], widths=WIDTHS, n_clusters=2, clustered_layers=("fc1",), epochs=1)
    # a run says where its loss is unless that is the seed's fc2
    assert [run_name(c) for c in cfgs] == ["lam0_seed1_fc1", "lam0_seed0_fc1", "lam15_seed1_fc1", "lam15_seed0_fc1"]
    assert run_name(TrainConfig(lam=15.0)) == "lam15_seed0"
    assert run_name(TrainConfig(lam=1.0, seed=2, clustered_layers=("fc1", "fc2", "fc3"))) == "lam1_seed2_all"
    assert all(c.clustered_layers == ("fc1",) and c.widths == WIDTHS and c.epochs == 1 for c in cfgs)
    assert grid_configs([0], [0], base=BASE, epochs=5)[0] == TrainConfig(widths=WIDTHS, n_clusters=2, epochs=5,
                                                                        batch_size=16, lr=0.05, lam=0.0, seed=0)
    with pytest.raises(ValueError, match="lambdas must be >= 0"):
        grid_configs([-1], [0])


def test_grouped_training_matches_single_runs(data: Dataset) -> None:
    cfgs = grid_configs([0, 10], [0, 1], ["fc2", "all"], BASE)
    results = train_grid(cfgs, data, progress=False)
    assert [r.config for r in results] == cfgs  # order kept across groups
    alone = train(cfgs[5], data, progress=False)
    for a, b in zip(results[5].model.weights(), alone.model.weights()):
        torch.testing.assert_close(a, b)


def test_records_are_tidy_and_lambda_raises_c(data: Dataset) -> None:
    recs = [run_record(r) for r in train_grid(grid_configs([0, 30], [0, 1], ["fc2", "all"], BASE), data,
                                              progress=False)]
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
    summ = summary_table(recs, metrics=("test_acc", "C_fc2"))
    assert len(summ) == 4 and all(row["n"] == 2 for row in summ)
    assert summ[0]["test_acc"] == summarise([r for r in recs if r["layers"] == "fc2"], "test_acc")[0.0].to_dict()
    diffs = paired_difference(recs)
    assert {(d["layers"], d["lam"]) for d in diffs} == {("fc2", 30.0), ("all", 30.0)}
    assert all(d["n"] == 2 for d in diffs)


def test_unclustered_layers_are_measured_on_equal_blocks(data: Dataset) -> None:
    """TrainResult.blocks: the run's partition where it has one, else equal blocks with its k
    clamped to the layer (fc3 here has 3 outputs: k = 2 fits, k = 4 would not)."""
    run = train(TrainConfig(widths=WIDTHS, n_clusters=2, lam=5.0, epochs=1, batch_size=16, lr=0.05), data,
                progress=False)
    assert run.blocks("fc2") is run.partitions["fc2"]
    assert run.blocks("fc3") == run.config.blocks("fc3") and run.blocks("fc3").k == 2
    wide_k = TrainConfig(widths=WIDTHS, n_clusters=8, clustered_layers=())
    assert wide_k.blocks("fc3").k == 3 and wide_k.blocks("fc1").k == 8
    with pytest.raises(ValueError, match="unknown layer"):
        run.blocks("fc9")
    cs = layer_clusterabilities(run)
    assert list(cs) == ["fc1", "fc2", "fc3"] and all(0 <= c <= 1 for c in cs.values())


def test_paired_difference_uses_same_seed() -> None:
    recs = [{"layers": "fc2", "lam": lam, "seed": s, "test_acc": 0.9 + 0.01 * s + (0.02 if lam else 0.0)}
            for lam in (0.0, 15.0) for s in range(4)]
    (row,) = paired_difference(recs)
    assert row["difference"]["mean"] == pytest.approx(0.02)
    assert row["difference"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert not math.isnan(row["difference"]["lo"])
    # a constant +0.02 on every seed is a clear paired increase, smaller than the seed-to-seed spread
    assert row["direction"] == "higher"
    (one,) = paired_difference([r for r in recs if r["seed"] == 0])
    assert one["n"] == 1 and one["direction"] == "indistinguishable"  # one seed: no interval


def test_saving_runs_without_the_main_lambda_writes_nothing(data: Dataset, tmp_path) -> None:
    """A main_lambda that was not trained is one clear error, before any file is written."""
    run = train(TrainConfig(widths=WIDTHS, n_clusters=2, lam=5.0, epochs=0, batch_size=16, lr=0.05), data,
                progress=False)
    recipe = {"recipes": {"seed": 0.05}, "live_cutoff": 0.01}
    with pytest.raises(ValueError, match="main_lambda 15.0 is not among the trained lambdas"):
        save_runs([run], tmp_path / "01_train", main_lambda=15.0, **recipe)
    assert not (tmp_path / "01_train").exists()
    summary = save_runs([run], tmp_path / "01_train", main_lambda=5.0, sweep=[run], **recipe)
    assert [r["name"] for r in summary.runs] == [r["name"] for r in summary.sweep] == ["lam5_seed0_init_lr0.05"]
    assert [p.name for p in (tmp_path / "01_train" / "checkpoints").iterdir()] == ["lam5_seed0_init_lr0.05.pt"]  # saved once
    assert load_summary(tmp_path / "01_train") == summary  # what stage 1 writes is what later stages read


def test_grouping_by_lambda_sorts_by_seed():
    rows = [{"lam": 15, "seed": 2, "v": 3}, {"lam": 0, "seed": 0, "v": 1}, {"lam": 15, "seed": 1, "v": 2}]
    assert group(rows, "v") == {0.0: [1], 15.0: [2, 3]}
    assert summarise(rows, "v")[15.0].mean == 2.5
