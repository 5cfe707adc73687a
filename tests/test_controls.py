"""The controls of a modularity claim: random masks, L1 at matched density, shuffled labels,
untrained networks, and the stage-4 measures of their circuits."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch

import modclust as mc
from modclust.core import checkpoint, paths
from modclust.core.data import balanced_indices
from modclust.core.distributed import train_ddp
from modclust.core.train import SETTINGS, TrainConfig, label_permutation, random_mask, run_name, setting_of
from modclust.experiments import controls
from modclust.experiments import grid as ex
from modclust.paper import controls_numbers

from conftest import make_tiny
from stage_results import stage5_results, written_macros


# --- the trainer's controls ------------------------------------------------------------------

def test_random_mask_has_the_blocks_density_and_is_fixed_by_the_seed():
    cfg = TrainConfig(mask="random", seed=3)
    blocks = cfg.blocks("fc2").mask()
    m = cfg.loss_masks()["fc2"]
    assert m.shape == blocks.shape and int(m.sum()) == int(blocks.sum()) == 1024
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(m, TrainConfig(mask="random", seed=3).loss_masks()["fc2"])  # fixed by the seed
    assert not torch.equal(m, TrainConfig(mask="random", seed=4).loss_masks()["fc2"])
    overlap = float((m * blocks).sum()) / 1024
    assert 0.15 < overlap < 0.35  # about a quarter of it falls in the blocks by chance: no block structure
    assert torch.equal(TrainConfig(seed=3).loss_masks()["fc2"], blocks)
    assert torch.equal(random_mask(blocks, 3), m)


@pytest.mark.parametrize("fields", [{"lam": 15.0, "mask": "random"}, {"lam": 0.0, "l1": 2.0},
                                    {"lam": 0.0, "shuffle_labels": True}, {"lam": 5.0, "l1": 1.0, "mask": "random"}])
def test_fast_trainer_equals_autograd_for_every_control(tiny, fields):
    cfg = TrainConfig(seed=1, epochs=2, lr=0.05, batch_size=32, **fields)
    fast = mc.train(cfg, tiny, progress=False)
    slow = mc.train(cfg, tiny, method="autograd", progress=False)
    for a, b in zip(fast.model.weights(), slow.model.weights()):
        torch.testing.assert_close(a.detach(), b.detach(), atol=2e-6, rtol=1e-5)
    assert fast.history["test_acc"] == pytest.approx(slow.history["test_acc"], abs=1e-6)
    assert fast.history["clusterability"] == pytest.approx(slow.history["clusterability"], abs=1e-5)


def test_batched_controls_equal_their_lone_runs(tiny):
    cfgs = [TrainConfig(seed=s, epochs=1, lr=0.05, batch_size=32, **f) for s in (0, 1)
            for f in ({"lam": 15.0}, {"lam": 15.0, "mask": "random"}, {"lam": 0.0, "l1": 1.0},
                      {"lam": 0.0, "shuffle_labels": True})]
    together = mc.train_many(cfgs, tiny, progress=False)
    for cfg, r in zip(cfgs, together):
        alone = mc.train(cfg, tiny, progress=False)
        for a, b in zip(r.model.weights(), alone.model.weights()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_l1_sets_weights_of_the_clustered_layer_exactly_to_zero(tiny):
    r = mc.train(TrainConfig(lam=0.0, l1=5.0, epochs=2, lr=0.05, batch_size=32), tiny, progress=False)
    assert float((r.model.fc2.weight == 0).float().mean()) > 0.3
    assert int((r.model.fc1.weight == 0).sum()) == 0  # only the clustered layer is penalised
    plain = mc.train(TrainConfig(lam=0.0, epochs=2, lr=0.05, batch_size=32), tiny, progress=False)
    assert int((plain.model.fc2.weight == 0).sum()) == 0


def test_shuffled_labels_are_a_fixed_permutation_and_change_training(tiny):
    p = label_permutation(200, 0)
    assert torch.equal(p, label_permutation(200, 0)) and not torch.equal(p, label_permutation(200, 1))
    assert sorted(p.tolist()) == list(range(200))
    base = TrainConfig(lam=0.0, epochs=1, lr=0.05, batch_size=32)
    a = mc.train(base, tiny, progress=False)
    b = mc.train(dataclasses.replace(base, shuffle_labels=True), tiny, progress=False)
    assert not torch.equal(a.model.fc3.weight, b.model.fc3.weight)
    init = mc.train(dataclasses.replace(base, epochs=0), tiny, progress=False)
    assert torch.equal(init.model.fc1.weight, mc.train(dataclasses.replace(base, epochs=0, lr=0.3), tiny,
                                                          progress=False).model.fc1.weight)


def test_every_setting_has_a_name_and_a_config():
    base = TrainConfig(lr=0.05)
    names = {}
    for s in SETTINGS:
        cfg = controls.control_config(base, s, 2, 15.0, l1=0.5)
        assert setting_of(cfg) == s
        names[s] = run_name(cfg)
    assert names == {"blocks": "lam15_seed2_lr0.05", "random_mask": "lam15_seed2_randmask_lr0.05",
                     "l1": "lam0_seed2_l1-0.5_lr0.05", "none": "lam0_seed2_lr0.05",
                     "random_init": "lam0_seed2_init_lr0.05", "shuffled_labels": "lam0_seed2_shuffled_lr0.05"}
    assert run_name(TrainConfig(lam=15.0, seed=0, mask="random")) == "lam15_seed0_randmask"
    with pytest.raises(ValueError, match="l1"):
        controls.control_config(base, "l1", 0, 15.0)  # the L1 control needs its strength


def test_control_fields_are_checked_where_they_enter():
    with pytest.raises(ValueError, match="TrainConfig.mask"):
        TrainConfig(mask="diagonal")
    with pytest.raises(ValueError, match="TrainConfig.l1"):
        TrainConfig(l1=-1.0)
    with pytest.raises(TypeError, match="shuffle_labels"):
        TrainConfig(shuffle_labels=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clustered_layers is empty"):
        TrainConfig(clustered_layers=(), l1=1.0)
    with pytest.raises(ValueError, match="train_many"):
        train_ddp(TrainConfig(mask="random", epochs=0), make_tiny())


def test_a_control_checkpoint_round_trips(tmp_path, tiny):
    cfg = TrainConfig(lam=15.0, mask="random", seed=2, epochs=1, lr=0.05, batch_size=32)
    r = mc.train(cfg, tiny, progress=False)
    path = checkpoint.save(r, tmp_path / f"{run_name(cfg)}.pt")
    back = mc.load_run(path)
    assert back.config == cfg and setting_of(back.config) == "random_mask"


# --- the L1 search ---------------------------------------------------------------------------

def test_l1_search_reaches_the_target_density_within_its_tolerance():
    data = make_tiny(n_train=400, n_test=100)
    base = TrainConfig(lam=0.0, epochs=2, lr=0.05, batch_size=32)
    s = controls.search_l1(base, data, target=0.3, tolerance=0.03, per_round=5, rounds=4)
    assert s.within, s
    assert abs(s.density - 0.3) <= 0.03
    run = mc.train(dataclasses.replace(base, l1=s.strength), data, progress=False)
    assert controls.clustered_density(run) == pytest.approx(s.density)  # the strength reproduces its density
    assert len(s.probes) >= 5 and s.to_dict()["within"] is True


def test_l1_search_reports_a_miss_instead_of_hiding_it():
    data = make_tiny(n_train=100, n_test=50)
    s = controls.search_l1(TrainConfig(lam=0.0, epochs=1, lr=0.05, batch_size=50), data, target=0.5,
                           tolerance=1e-6, per_round=2, rounds=1)
    assert not s.within and len(s.probes) == 2


# --- stage 4: circuits of the controls, and the table -------------------------------------------

@pytest.fixture(scope="module")
def control_runs():
    data = make_tiny(n_train=300, n_test=150, seed=3)
    base = TrainConfig(epochs=2, lr=0.05, batch_size=32, widths=(784, 16, 16, 10))
    ctl = controls.train_controls(data, base, [0, 1], 15.0, {"seed": 0.05}, tolerance=0.05, progress=False)
    return data, ctl


def test_train_controls_trains_every_setting_at_every_seed(control_runs):
    data, ctl = control_runs
    keys = [(r["setting"], r["seed"]) for r in ctl.records]
    assert keys == [(s, seed) for s in SETTINGS for seed in (0, 1)]
    assert all(r["recipe"] == "seed" for r in ctl.records)
    by = {(r["setting"], r["seed"]): r for r in ctl.records}
    assert by[("blocks", 0)]["C_blocks"] > 0.5 and by[("random_mask", 0)]["C_loss_mask"] > 0.5
    assert by[("random_mask", 0)]["C_blocks"] < by[("blocks", 0)]["C_blocks"]
    assert "seed" in ctl.searches and ctl.searches["seed"].probes
    init = [r for r, rec in zip(ctl.results, ctl.records) if rec["setting"] == "random_init"]
    assert all(r.config.epochs == 0 for r in init)


def test_finders_run_on_the_untrained_network_are_reported(control_runs):
    data, ctl = control_runs
    search = balanced_indices(data.train_y, 5, seed=0, n_classes=10)
    labels = [0, 1, 2]
    rows, recs = controls.control_circuits(ctl.results, ctl.records, data.train_x[search], data.train_y[search],
                                           data.test_x, data.test_y, labels, ["fc2", "fc3"], [1e-3, 1e-2],
                                           progress=False)
    assert len(rows) == len(ctl.results) * 2 * 2  # every run x threshold x ablation
    assert {r["setting"] for r in rows} == set(SETTINGS)
    init_rows = [r for r in rows if r["setting"] == "random_init"]
    assert init_rows and all(len(r["circuits"]) == len(labels) for r in init_rows)
    assert all("balanced_agreement" in c["faithfulness"] for r in init_rows for c in r["circuits"])
    assert {rec["setting"] for rec in recs} == set(SETTINGS) and all(rec["recipe"] == "seed" for rec in recs)
    assert all(0 <= r["dominant_share"] <= 1 or math.isnan(r["dominant_share"]) for r in rows)
    summary = controls.summarise_controls(ctl.records, rows, "balanced_agreement", 0.9, 1e-3)
    entry = next(e for e in summary["table"] if e["setting"] == "random_init")
    assert entry["n"] == 2 and entry["zero"]["best_faithfulness"] is not None  # reported, not skipped
    assert {c["other"] for c in summary["comparisons"]} == set(controls.COMPARED)
    lines = controls.circuit_table(summary)
    assert any("random_init" in line for line in lines)


def _fake_rows(setting, recipe, sizes, agree=(0.99, 0.96, 0.8)):
    """Rows of one setting: per seed, three thresholds whose (agreement, size) bracket 0.97."""
    rows = []
    for seed, size in enumerate(sizes):
        for thr, a, shrink in zip((1e-4, 1e-3, 1e-2), agree, (1.0, 0.5, 0.1)):
            rows.append({"name": f"{setting}{seed}", "setting": setting, "recipe": recipe, "seed": seed,
                         "ablation": "zero", "threshold": thr, "live_share": 0.3, "iou": 0.2, "iou_random": 0.1,
                         "circuits": [{"size": size * shrink, "faithfulness": {"balanced_agreement": a}}]})
    return rows


def test_comparisons_are_paired_by_seed():
    recs = [{"setting": s, "recipe": "seed", "seed": k, "test_acc": 0.9, "live_density": 0.25, "C_blocks": 0.9}
            for s in ("blocks", "random_mask") for k in range(3)]
    rows = _fake_rows("blocks", "seed", [100, 200, 300]) + _fake_rows("random_mask", "seed", [110, 220, 330])
    s = controls.summarise_controls(recs, rows, "balanced_agreement", 0.97, 1e-4)
    c = next(c for c in s["comparisons"] if c["other"] == "random_mask")
    assert c["n"] == 3  # three seeds paired
    assert c["ratio"]["std"] == pytest.approx(0.0, abs=1e-9)  # paired: the seeds share one ratio
    v = controls_numbers.control_verdict(s, "seed", "zero", "random_mask", "the random-mask models",
                                         "pruned weights set to zero")
    assert v is not None and v.direction == "lower" and v.test.rule == "paired" and v.test.log
    sentence = v.sentence()
    assert "smaller than those of the random-mask models" in sentence and sentence.endswith(".")
    assert "exploratory" in sentence
    nothing = [{**r, "circuits": [{"size": 5, "faithfulness": {"balanced_agreement": 0.7}}]}
               for r in _fake_rows("random_init", "seed", [1, 1, 1])]
    s2 = controls.summarise_controls(recs + [{**recs[0], "setting": "random_init"}], rows + nothing,
                                     "balanced_agreement", 0.97, 1e-4)
    assert "no threshold brings the circuits to 97" in controls_numbers.nothing_sentence(s2)


def test_the_section_uses_only_macros_the_pipeline_writes(control_runs):
    data, ctl = control_runs
    search = balanced_indices(data.train_y, 5, seed=0, n_classes=10)
    rows, _ = controls.control_circuits(ctl.results, ctl.records, data.train_x[search], data.train_y[search],
                                        data.test_x, data.test_y, [0, 1], ["fc2", "fc3"], [1e-3, 1e-2],
                                        progress=False)
    summary = controls.summarise_controls(ctl.records, rows, "balanced_agreement", 0.9, 1e-3)
    train, _, _, circ = stage5_results()  # made up; the controls' fields from these runs
    train = dataclasses.replace(train, controls=ctl.records, recipes={"seed": 0.05}, live_cutoff=0.01,
                                l1_search={k: v.to_dict() for k, v in ctl.searches.items()})
    circ = dataclasses.replace(circ, controls={"rows": rows, "summary": summary})
    macros, tables = controls_numbers.controls_numbers(train, circ)
    text = (paths.REPO / "paper" / "controls_section.tex").read_text()
    used = set(re.findall(r"\\([A-Z][A-Za-z]+)", text))
    missing = used - set(macros.items) - written_macros()
    assert not missing, f"paper/controls_section.tex uses macros nobody writes: {sorted(missing)}"
    for name, value in macros.items.items():
        if name.endswith(("Sentence", "Sentences", "Conclusion")) and value:
            assert value[0].isupper() and value.rstrip().endswith("."), (name, value)
            assert "(s)" not in value and ".." not in value and ", ," not in value
    assert "\\begin{tabular}" in tables["table_controls"]


def test_learned_masks_on_the_untrained_network_are_reported_beside_the_greedy_ones(control_runs):
    data, ctl = control_runs
    search = balanced_indices(data.train_y, 5, seed=0, n_classes=10)
    pick = [i for i, r in enumerate(ctl.records) if r["setting"] in ("blocks", "random_init")]
    runs, recs = [ctl.results[i] for i in pick], [ctl.records[i] for i in pick]
    args = (data.train_x[search], data.train_y[search], data.test_x, data.test_y, [0, 1], ["fc2", "fc3"])
    greedy, _ = controls.control_circuits(runs, recs, *args, [1e-3, 1e-2], ["zero"], progress=False)
    masks, mask_recs = controls.control_mask_circuits(runs, recs, *args, sparsity=1e-3, steps=5, progress=False)
    assert [r["method"] for r in masks] == ["mask"] * len(runs) and all(r["ablation"] == "zero" for r in masks)
    assert {rec["setting"] for rec in mask_recs} == {"blocks", "random_init"} and mask_recs[0]["method"] == "mask"
    summary = controls.summarise_controls(recs, greedy + masks, "balanced_agreement", 0.9, 1e-3)
    init = next(e for e in summary["table"] if e["setting"] == "random_init")
    assert init["mask"]["size"]["n"] == 2 and init["mask"]["balanced_agreement"] is not None
    assert "mean" not in init  # only greedy rows (here zero ablation only) give matched sizes
    assert "learned masks" in "\n".join(controls.circuit_table(summary))
    assert "Learned masks keep" in controls_numbers.nothing_sentence(summary)


def test_a_search_found_twice_is_saved_once(tmp_path, tiny):
    run = mc.train(TrainConfig(epochs=1, lr=0.05, batch_size=32), tiny, progress=False)
    found = ex.find_circuits([run], tiny.train_x, tiny.train_y, [0, 1], ["fc3"], "margin", 1e-3, progress=False)
    _, recs = ex.circuit_rows([run], found, tiny.test_x, tiny.test_y)
    path = ex.save_circuit_records(recs + [dict(r) for r in recs], tmp_path / "c.pt")
    assert len(torch.load(path, weights_only=True)) == 2
    other = {**recs[0], "kept": {n: ~m for n, m in recs[0]["kept"].items()}}
    with pytest.raises(ValueError, match="not deterministic"):
        ex.save_circuit_records(recs + [other], tmp_path / "d.pt")
