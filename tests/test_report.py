"""modclust.paper.numbers: macros, data-dependent sentences, the paper's numbers; modclust.paper.figures and
modclust.experiments.grid's aggregation, on small synthetic results (no training, no data)."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest

from modclust.experiments import grid as ex
from modclust.paper import figures as fg
from modclust.paper import numbers as report
from modclust.core.partition import Partition
from modclust.core.stats import mean_ci


def test_macro_names_are_letters_only_and_unique():
    m = report.Macros()
    m.add("AccClustered", 0.5)
    with pytest.raises(ValueError, match="letters only"):
        m.add("Acc2", 1)
    with pytest.raises(ValueError, match="twice"):
        m.add("AccClustered", 1)
    assert report.letters(12) == "OneTwo"
    assert report.layer_macro("fc2") == "FcTwo"
    assert m.tex().splitlines()[1] == "\\newcommand{\\AccClustered}{0.50}"


def test_pm_and_escape():
    assert report.pm(mean_ci([1.0, 1.0, 1.0])) == "1.00\\,\\ensuremath{\\pm}\\,0.00"
    assert report.pm(mean_ci([0.5])) == "0.50"
    assert report.tex_escape("a_b 50%") == "a\\_b 50\\%"
    assert report.num(-1.5, 1) == "\\ensuremath{-}1.5"
    assert report.num(math.nan) == "n/a"


@pytest.mark.parametrize("a, b, expected", [
    ([0.91, 0.92, 0.93, 0.92, 0.91], [0.80, 0.81, 0.79, 0.80, 0.82], "are more accurate than"),
    ([0.80, 0.81, 0.79, 0.80, 0.82], [0.91, 0.92, 0.93, 0.92, 0.91], "are less accurate than"),
    ([0.90, 0.80, 0.85, 0.95, 0.82], [0.86, 0.91, 0.81, 0.84, 0.88], "are about as accurate as"),
])
def test_the_sentence_follows_the_data(a, b, expected):
    cmp = report.Comparison.of(a, b)
    s = report.direction_sentence(cmp, "Clustered models", "unclustered ones", "are more accurate than",
                                  "are less accurate than", "are about as accurate as", "accuracy")
    assert expected in s
    assert ("cannot tell" in s) == (expected == "are about as accurate as")
    assert "5 and 5 seeds" in s


def test_table_checks_its_shape():
    tex = report.table(["a", "b"], [["1", "2"]])
    assert "\\toprule" in tex and "1 & 2 \\\\" in tex
    with pytest.raises(ValueError):
        report.table(["a", "b"], [["1"]])


def _fake_results(seeds=(0, 1, 2), main=15.0, k=4):
    rng = np.random.default_rng(0)
    runs, abl, sem, circ = [], [], [], []
    cfg = {"dataset": "mnist", "widths": [784, 64, 64, 10], "n_clusters": k, "clustered_layers": ["fc2"],
           "lam": 0.0, "lr": 0.001, "batch_size": 64, "epochs": 1, "seed": 0}
    for lam in (0.0, main):
        for s in seeds:
            base = {"name": f"lam{lam:g}_seed{s}", "lam": lam, "seed": s}
            runs.append({**base, "config": {**cfg, "lam": lam, "seed": s}, "test_acc": 0.9 - lam * 1e-3 + rng.normal(0, 1e-3),
                         "clusterability": 0.25 if lam == 0 else 0.99, "ce_curve": list(rng.random(5)),
                         "c_curve": list(rng.random(5)), "test_acc_per_epoch": [0.1, 0.9], "steps": 10})
            off = list(rng.uniform(0.5, 0.9, k))
            abl.append({**base, "full_acc": 0.9, "full_classwise": list(rng.random(10)), "off_acc": off,
                        "off_classwise": rng.random((k, 10)).tolist(), "on_acc": list(rng.uniform(0.1, 0.4, k)),
                        "on_classwise": rng.random((k, 10)).tolist()})
            rc = list(range(64, 0, -6))[:10]
            sem.append({**base, "semanticity": {ly: {"score": 0.6 + rng.normal(0, 0.01), "reverse_cumulative": rc}
                                                for ly in ("fc1", "fc2")}})
            for objective, thr in (("seed", 1e-4), ("margin", 1e-4), ("margin", 1e-3), ("margin", 1e-2), ("kl", 1e-4)):
                shrink = {1e-4: 1.0, 1e-3: 0.5, 1e-2: 0.1}[thr]
                agree = {1e-4: 0.99, 1e-3: 0.96, 1e-2: 0.8}[thr]
                labs = [None] if objective == "kl" else range(10)
                def faith(c, objective=objective, agree=agree):
                    if objective == "seed":  # a constant classifier
                        return {"agreement": 0.1, "balanced_agreement": 0.5, "share_c": 1.0, "full_share_c": 0.1,
                                "top1_agreement": 0.1}
                    a = agree + rng.normal(0, 0.002)
                    return {"agreement": a, "balanced_agreement": a, "share_c": 0.1, "full_share_c": 0.1,
                            "top1_agreement": 0.9}
                circ.append({**base, "objective": objective, "threshold": thr, "method": "greedy",
                             "circuits": [{"label": c, "size": int(shrink * rng.integers(50, 200)) + 1,
                                           "faithfulness": faith(c)} for c in labs]})
    train = {"main_lambda": main, "runs": runs}
    return (train, {"layer": "fc2", "rows": abl}, {"layers": ["fc1", "fc2"], "top_k": 50, "rows": sem},
            {"layers": ["fc3"], "labels": list(range(10)), "threshold": 1e-4, "baseline": "current",
             "ablation": "zero", "objectives": ["seed", "margin", "kl"], "faithful_objective": "margin",
             "sweep_thresholds": [1e-4, 1e-3, 1e-2], "match_on": "balanced_agreement", "match_level": 0.97,
             "search": {"split": "train", "per_class": 50, "seed": 0, "n": 500}, "judged_on": "test",
             "search_space": {"layer": "fc2", "per_cluster": [0.764] * k}, "rows": circ,
             "seed_cell": {"label": 8, "layer": "fc3", "decided_pruned": 84, "decided_kept": 556, "nonzero_after": 0,
                           "visited": 640, "ours_kept": 212, "classwise_acc": [1.0] + [0.0] * 9,
                           "lam": main, "seed": 0}})


def test_seed_cell_sentence_says_what_the_numbers_show():
    cell = _fake_results()[3]["seed_cell"]
    classes = [str(c) for c in range(10)]
    text = report.seed_cell_sentence(cell, classes)
    assert "keep 556 of the 640 weights of fc3 for label 8" in text and "leaves 0 of them nonzero" in text
    assert "accuracy 1 on class 0 and 0 on every other class" in text and "keeps 212 weights" in text
    assert "argmax picks the first class" in text
    assert "seed-0 model at $\\lambda=15$" in text and "(\\texttt{temp = w.data[i, j]})" in text
    other = report.seed_cell_sentence({**cell, "classwise_acc": [0.5] * 10, "nonzero_after": 3}, classes)
    assert "every other class" not in other and "argmax" not in other and "0.50, 0.50" in other


def test_paper_numbers_cover_what_the_paper_uses(tmp_path):
    from modclust.core import paths

    macros, tables = report.paper_numbers(*_fake_results(), preset="smoke")
    used = set()
    import re
    for name in ("main.tex",):
        text = (paths.REPO / "paper" / name).read_text()
        # the parts shown only with stage 6's results use its macros (tests/test_beyond.py)
        text = re.sub(r"(?<!newif)\\ifbeyond.*?\\fi\b", "", text, flags=re.S)
        used |= set(re.findall(r"\\([A-Z][A-Za-z]+)", text))
    latex_own = {"LaTeX", "TeX", "IfFileExists"}  # capitalised commands of LaTeX itself
    missing = {u for u in used if u not in macros.items} - latex_own
    assert not missing, f"paper/main.tex uses macros the pipeline does not write: {sorted(missing)}"
    assert macros.items["SearchSpacePruned"] == "76.40\\,\\%"
    assert macros.items["NSeeds"] == "3"
    assert macros.items["ReproCommand"] == "make paper PRESET=smoke"
    written = report.write_paper_numbers(macros, tables, tmp_path)
    assert {p.name for p in written} == {"numbers.tex", "table_main.tex", "table_ablation.tex"}


def test_grouping_by_lambda_sorts_by_seed():
    rows = [{"lam": 15, "seed": 2, "v": 3}, {"lam": 0, "seed": 0, "v": 1}, {"lam": 15, "seed": 1, "v": 2}]
    assert ex.group(rows, "v") == {0.0: [1], 15.0: [2, 3]}
    assert ex.summarise(rows, "v")[15.0].mean == 2.5


def test_grid_configs_and_names():
    cfgs = ex.grid_configs([15, 0, 15], [1, 0], epochs=1)
    assert [ex.run_name(c) for c in cfgs] == ["lam0_seed1", "lam0_seed0", "lam15_seed1", "lam15_seed0"]
    with pytest.raises(ValueError):
        ex.grid_configs([-1], [0])


def test_clusters_are_ranked_by_importance():
    assert fg.order_by_importance([0.8, 0.5, 0.9, 0.5]) == [1, 3, 0, 2]
    rows = [{"off_acc": [0.8, 0.5], "x": [10, 20]}, {"off_acc": [0.4, 0.6], "x": [30, 40]}]
    assert fg.ranked_ablation(rows, "x").tolist() == [[20, 10], [30, 40]]


def test_every_figure_draws_and_saves_a_pdf(tmp_path):
    fg.use_style()
    rng = np.random.default_rng(0)
    classes = [str(i) for i in range(10)]
    figs = {
        "ablation": fg.classwise_ablation(rng.random((3, 4, 10)), rng.random((3, 4, 10)), rng.random((3, 10)), classes),
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
