"""The paper's numbers and data-dependent sentences, written as LaTeX the paper ``\\input``s.

No number in the paper is typed by hand: the numbers notebook (stage 5) collects them here as
macros (``\\newcommand{\\AccClustered}{...}``) and tables (:func:`paper_numbers`), the beyond
notebook (stage 6) those of its section (:func:`beyond_macros`). Every sentence whose
direction depends on the data is a :class:`modclust.paper.claims.Verdict` of the per-seed values:
a declared primary comparison (its values go to ``claims_05_numbers.json``,
:func:`primary_records`, and its sentence is written at compile time after the Holm correction)
or an exploratory one, which says so. A rerun cannot leave a false claim. The LaTeX itself
(numbers, intervals, macro names, files) comes from :mod:`modclust.paper.latex`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modclust.analysis.ablation import order_by_importance
from modclust.core import stats
from modclust.core.data import DATASETS
from modclust.core.stats import Interval, mean_ci, size_at_faithfulness
from modclust.experiments.grid import group, mean_over_circuits, select_rows
from modclust.experiments.stage_results import (AblationResults, BeyondResults, CircuitResults, InterpretResults,
                                                TrainingResults)
from modclust.paper.claims import Verdict, Wording, exploratory, record
from modclust.paper.latex import (Macros, count_noun, generated_header, has_layer_word, layer_word, pm, pm_values, table,
                                  tex_escape, write_macros, write_text)

PAPER_SOURCE = "notebooks/05_numbers.ipynb"  # writes numbers.tex (paper_numbers)
BEYOND_SOURCE = "notebooks/06_beyond.ipynb"  # writes beyond.tex (beyond_macros)


def by_seed(rows: Sequence[Mapping[str, Any]], key: str | Any, lam: float) -> dict[int, float]:
    """Each seed's value of ``key`` (a field, or a function of a row) at ``lam``."""
    get = (lambda r: r[key]) if isinstance(key, str) else key
    return {int(r["seed"]): float(get(r)) for r in rows if float(r["lam"]) == lam}


def paired_values(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list[float], list[float]]:
    """The values of the seeds both settings have, in seed order (nan kept: the caller drops pairs)."""
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def paired(a: Mapping[int, float], b: Mapping[int, float], wording: Wording, log: bool = False) -> Verdict:
    """An exploratory comparison paired by seed, undefined values dropped with their partner."""
    xs, ys = paired_values(a, b)
    keep = [(x, y) for x, y in zip(xs, ys) if x == x and y == y]
    return exploratory([x for x, _ in keep], [y for _, y in keep], wording, "paired", log)


# -- stage 5 (the JSON of stages 1-4): the paper's main numbers ------------------------------

def seed_cell_sentence(cell: dict, classes: Sequence[str]) -> str:
    """What the seed notebook's pruning cell, rerun as written, did (``modclust.seed.pruning_cell``)."""
    acc = cell["classwise_acc"]
    if acc[0] == 1.0 and max(acc[1:]) == 0.0:
        outcome = (f"the model it leaves scores class-wise test accuracy 1 on class {tex_escape(classes[0])} and 0 "
                   "on every other class, the pattern the notebook printed")
    else:
        outcome = "its class-wise test accuracy after pruning is " + ", ".join(f"{a:.2f}" for a in acc)
    if cell["nonzero_after"] == 0:  # a bias-free MLP with a zero layer gives equal logits
        outcome += " (with the layer all zero, every logit is 0 and argmax picks the first class)"
    return (f"Rerun as written on our seed-{cell['seed']} model at $\\lambda={cell['lam']:g}$, the notebook's "
            f"pruning cell decides to keep "
            f"{cell['decided_kept']} of the {cell['visited']} weights of {cell['layer']} for label {cell['label']}, "
            f"yet leaves {cell['nonzero_after']} of them nonzero: it saves each weight as a view of itself "
            f"(\\texttt{{temp = w.data[i, j]}}), which reads zero once the weight is zeroed, so every restore "
            f"writes zero back; {outcome}. Our loop restores the value and keeps {cell['ours_kept']} weights "
            f"of {cell['layer']} for the same label and model.")


def paper_numbers(train: TrainingResults, ablation: AblationResults, interp: InterpretResults, circ: CircuitResults,
                  preset: str) -> tuple[Macros, dict[str, str]]:
    """Every number and data-dependent sentence of the paper, from the four stages' results.

    Returns the macros and the tables (name -> tabular). The comparison throughout is the
    main lambda against lambda = 0 over the seeds both share. One function per part, in the
    paper's order: the set-up, training, ablations, label semanticity, circuits, and the main table.
    """
    runs = train.runs
    main = float(train.main_lambda)
    lams = sorted({float(r["lam"]) for r in runs})
    if 0.0 not in lams:
        raise ValueError("the paper compares with unclustered models: add lambda 0 to lambdas")
    cfg = runs[0]["config"]
    m = Macros(source=PAPER_SOURCE)
    setup_macros(m, cfg, runs, lams, main, preset)
    training_macros(m, runs, main, int(cfg["n_clusters"]))
    tables = {"table_ablation": ablation_macros(m, ablation.rows, main)}
    sem_by_layer = semanticity_macros(m, interp, main)
    size = circuit_macros(m, circ, cfg, main)
    tables["table_main"] = main_table(runs, lams, sem_by_layer, size)
    return m, tables


def setup_macros(m: Macros, cfg: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], lams: Sequence[float],
                 main: float, preset: str) -> None:
    """The preset, the command that rebuilds the paper, the dataset and the training recipe."""
    spec = DATASETS[cfg["dataset"]]
    m.add("PresetName", tex_escape(preset))
    m.add("ReproCommand", tex_escape("make paper" + ("" if preset == "paper" else f" PRESET={preset}")))
    m.add("DatasetName", {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(cfg["dataset"], cfg["dataset"]))
    m.add("NSeeds", min(len(v) for v in group(runs, "test_acc").values()))
    m.add("NRuns", len(runs))
    m.add("Epochs", cfg["epochs"])
    m.add("EpochsText", count_noun(int(cfg["epochs"]), "epoch"))
    m.add("MainLambda", f"{main:g}")
    m.add("LambdaList", ", ".join(f"{v:g}" for v in lams))
    m.add("NClusters", cfg["n_clusters"])
    n_k = int(cfg["n_clusters"])  # OFF zeroes a cluster's rows and columns of equal blocks, ON keeps its block
    m.add("OffZeroedShare", f"${2 * n_k - 1}/{n_k * n_k}$")
    m.add("OnKeptShare", f"$1/{n_k * n_k}$")
    m.add("Widths", "--".join(str(w) for w in cfg["widths"]))
    m.add("ClusteredLayer", "/".join(cfg["clustered_layers"]))
    m.add("LearningRate", f"{cfg['lr']:g}")
    m.add("BatchSize", cfg["batch_size"])
    m.add("NClasses", len(spec.classes))


def training_macros(m: Macros, runs: Sequence[Mapping[str, Any]], main: float, n_clusters: int) -> None:
    """Test accuracy and clusterability of the clustered and unclustered models."""
    acc = group(runs, "test_acc")
    m.add("AccClustered", pm(mean_ci(acc[main]), 2, 100) + "\\,\\%")
    m.add("AccUnclustered", pm(mean_ci(acc[0.0]), 2, 100) + "\\,\\%")
    cmp_c = paired(by_seed(runs, "clusterability", main), by_seed(runs, "clusterability", 0.0),
                   Wording("The clustered models", "the unclustered ones", "", "", "clusterability"))
    m.add("ClustClustered", pm(cmp_c.test.a, 3))
    m.add("ClustUnclustered", pm(cmp_c.test.b, 3))
    m.add("ClustChance", f"{1 / n_clusters:.2f}")
    m.add("ClustVerb", {"higher": "raises", "lower": "lowers"}.get(cmp_c.direction, "does not measurably change"))


def ablation_macros(m: Macros, rows: Sequence[Mapping[str, Any]], main: float) -> str:
    """Each cluster OFF and ON, per seed with the clusters ranked by importance (lowest OFF
    accuracy first): the means over clusters, the worst OFF and best ON; returns the table by rank."""
    def ranked(key: str, lam: float) -> list[list[float]]:
        return [[r[key][i] for i in order_by_importance(r["off_acc"])] for r in rows if float(r["lam"]) == lam]
    k = len(rows[0]["off_acc"])
    for lam, tag in ((main, "Clustered"), (0.0, "Unclustered")):
        off = ranked("off_acc", lam)
        on = ranked("on_acc", lam)
        m.add(f"OffAccMean{tag}", pm(mean_ci([sum(v) / k for v in off]), 1, 100) + "\\,\\%")
        m.add(f"OnAccMean{tag}", pm(mean_ci([sum(v) / k for v in on]), 1, 100) + "\\,\\%")
        m.add(f"OffAccWorst{tag}", pm(mean_ci([v[0] for v in off]), 1, 100) + "\\,\\%")
        m.add(f"OnAccBest{tag}", pm(mean_ci([max(v) for v in on]), 1, 100) + "\\,\\%")
    columns = [ranked("off_acc", main), ranked("on_acc", main), ranked("off_acc", 0.0), ranked("on_acc", 0.0)]
    abl_rows = [[f"{i + 1}"] + [pm(mean_ci([v[i] for v in data]), 1, 100) for data in columns] for i in range(k)]
    return table(["rank", "OFF, clustered", "ON, clustered", "OFF, unclustered", "ON, unclustered"], abl_rows)


def semanticity_macros(m: Macros, interp: InterpretResults, main: float) -> dict[str, dict[float, list[float]]]:
    """Label semanticity per layer (fc2's comparison is primary, the others' exploratory sentences);
    returns each layer's scores by lambda."""
    sem_rows = interp.rows
    m.add("TopK", interp.top_k)
    sem_by_layer: dict[str, dict[float, list[float]]] = {}
    for layer in interp.layers:
        sem = group(sem_rows, lambda r, layer=layer: r["semanticity"][layer]["score"])
        sem_by_layer[layer] = sem
        name = layer_word(layer)
        m.add(f"Sem{name}Clustered", pm(mean_ci(sem[main]), 3))
        m.add(f"Sem{name}Unclustered", pm(mean_ci(sem[0.0]), 3))
        if layer != "fc2":  # fc2's is a primary comparison (claims.PRIMARY, key Sem)
            get = lambda r, layer=layer: r["semanticity"][layer]["score"]  # noqa: E731
            m.add(f"Sem{name}Sentence", paired(by_seed(sem_rows, get, main), by_seed(sem_rows, get, 0.0), Wording(
                f"The units of {layer} in the clustered models", "those of the unclustered ones",
                "are more label-specialised than", "are less label-specialised than", "label semanticity",
                digits=3)).sentence())
    return sem_by_layer


SMALLER = {"higher": "larger", "lower": "smaller"}
"""A size verdict's direction as a comparative."""


def _per_lam(rows: Sequence[Mapping[str, Any]], key: str) -> dict[float, list[float]]:
    """Each run's mean of ``key`` over its circuits, grouped by lambda."""
    return group(rows, lambda r: mean_over_circuits(r, key))


def _pct(vals: Sequence[float]) -> str:
    return pm(mean_ci(vals), 1, 100) + "\\,\\%"


def _size_verdict(rows: Sequence[Mapping[str, Any]], main: float, subject: str,
                  quantity: str = "mean circuit size") -> Verdict:
    get = lambda r: mean_over_circuits(r, "size")  # noqa: E731
    return paired(by_seed(rows, get, main), by_seed(rows, get, 0.0),
                  Wording(subject, "those of the unclustered ones", "are larger than", "are smaller than", quantity,
                          digits=1, unit=" weights"), log=True)


def circuit_macros(m: Macros, circ: CircuitResults, cfg: Mapping[str, Any], main: float
                   ) -> dict[float, list[float]]:
    """The circuits of stage 4: the search, the faithful objective's sizes and faithfulness (the
    headline), the notebook's and the KL objectives for what they are, sizes at matched
    faithfulness, the seed's pruning cell; returns the faithful sizes by lambda."""
    thr, fo = float(circ.threshold), circ.faithful_objective
    faithful = select_rows(circ.rows, fo, thr)
    size = _per_lam(faithful, "size")
    cmp_k = _size_verdict(faithful, main, "Faithful per-label circuits of the clustered models")
    searched = sum(int(cfg["widths"][int(ly[2:]) - 1]) * int(cfg["widths"][int(ly[2:])]) for ly in circ.layers)
    m.add("CircuitLayers", " and ".join(circ.layers))
    m.add("CircuitWeightsSearched", searched)
    m.add("CircuitThreshold", f"{thr:g}")
    m.add("CircuitBaseline", "the current loss" if circ.baseline == "current" else "the full model's loss")
    m.add("CircuitAblation", {"zero": "set to zero", "mean": "replaced by their mean contribution"}[circ.ablation])
    m.add("NCircuitLabels", len(circ.labels))
    m.add("SearchPerClass", circ.search["per_class"])
    m.add("SearchImages", circ.search["n"])
    m.add("CircuitClustered", pm(cmp_k.test.a, 1))
    m.add("CircuitUnclustered", pm(cmp_k.test.b, 1))
    m.add("CircuitSentence", cmp_k.sentence())
    m.add("CircuitDirection", SMALLER.get(cmp_k.direction, "not distinguishable in size"))
    for key, tag in (("agreement", "Agree"), ("balanced_agreement", "Balanced"), ("share_c", "ShareC"),
                     ("full_share_c", "FullShareC")):
        vals = _per_lam(faithful, key)
        m.add(f"Circuit{tag}Clustered", _pct(vals[main]))
        m.add(f"Circuit{tag}Unclustered", _pct(vals[0.0]))
    worst = min(mean_over_circuits(r, "agreement") for r in faithful)
    m.add("CircuitAgreeWorstRun", f"{100 * worst:.1f}\\,\\%")
    if "seed" in circ.objectives:
        seed_rows = select_rows(circ.rows, "seed", thr)
        cmp_seed = _size_verdict(seed_rows, main, "By the notebook's objective, the circuits of the clustered models")
        m.add("SeedCircuitClustered", pm(cmp_seed.test.a, 1))
        m.add("SeedCircuitUnclustered", pm(cmp_seed.test.b, 1))
        m.add("SeedCircuitSentence", cmp_seed.sentence())
        for key, tag in (("share_c", "ShareC"), ("agreement", "Agree"), ("balanced_agreement", "Balanced")):
            m.add(f"SeedCircuit{tag}", _pct([v for vals in _per_lam(seed_rows, key).values() for v in vals]))
    if "kl" in circ.objectives:
        kl_rows = select_rows(circ.rows, "kl", thr)
        kl_size, kl_top = _per_lam(kl_rows, "size"), _per_lam(kl_rows, "top1_agreement")
        m.add("KlCircuitClustered", pm(mean_ci(kl_size[main]), 1))
        m.add("KlCircuitUnclustered", pm(mean_ci(kl_size[0.0]), 1))
        m.add("KlTopOneClustered", _pct(kl_top[main]))
        m.add("KlTopOneUnclustered", _pct(kl_top[0.0]))
    matched_macros(m, circ, main)
    m.add("SeedCellSentence", seed_cell_sentence(circ.seed_cell, DATASETS[cfg["dataset"]].classes))
    ss = circ.search_space["per_cluster"]
    m.add("SearchSpacePruned", f"{100 * sum(ss) / len(ss):.2f}\\,\\%")
    total_w = sum(int(a) * int(b) for a, b in zip(cfg["widths"][:-1], cfg["widths"][1:]))
    m.add("TotalWeights", f"{total_w:,}".replace(",", "{,}"))
    return size


def matched_macros(m: Macros, circ: CircuitResults, main: float) -> None:
    """Circuit sizes at equal faithfulness, interpolated on each run's threshold sweep of the
    faithful objective, compared when the sweep brackets the level for two or more seeds of both."""
    match_on, level = circ.match_on, float(circ.match_level)
    sweep = select_rows(circ.rows, circ.faithful_objective)
    m.add("SweepThresholds", ", ".join(f"{t:g}" for t in circ.sweep_thresholds))
    m.add("MatchOn", {"balanced_agreement": "balanced c-vs-rest agreement", "agreement": "c-vs-rest agreement",
                      "top1_agreement": "top-1 agreement"}.get(match_on, tex_escape(match_on)))
    m.add("MatchLevel", f"{100 * level:g}\\,\\%")
    matched: dict[float, dict[int, float]] = {}
    for lam in (main, 0.0):
        for seed in sorted({int(r["seed"]) for r in sweep if float(r["lam"]) == lam}):
            pts = [(mean_over_circuits(r, match_on), mean_over_circuits(r, "size")) for r in sweep
                   if float(r["lam"]) == lam and int(r["seed"]) == seed]
            v = size_at_faithfulness(pts, level)
            if v == v:
                matched.setdefault(lam, {})[seed] = v
    n_main, n_zero = len(matched.get(main, {})), len(matched.get(0.0, {}))
    m.add("MatchedRunsClustered", n_main)
    m.add("MatchedRunsUnclustered", n_zero)
    if len(set(matched.get(main, {})) & set(matched.get(0.0, {}))) >= 2:
        cmp_m = paired(matched[main], matched[0.0], Wording(
            "At equal faithfulness, the circuits of the clustered models", "those of the unclustered ones",
            "are larger than", "are smaller than", "circuit size", digits=1, unit=" weights"), log=True)
        m.add("MatchedSentence", cmp_m.sentence())
        m.add("MatchedDirection", SMALLER.get(cmp_m.direction, "not distinguishable in size"))
    else:
        m.add("MatchedSentence", f"The threshold sweep brackets this level for too few runs ({n_main} clustered, "
                                 f"{n_zero} unclustered) to compare sizes at equal faithfulness.")
        m.add("MatchedDirection", "not comparable in size")


def main_table(runs: Sequence[Mapping[str, Any]], lams: Sequence[float],
               sem_by_layer: Mapping[str, Mapping[float, list[float]]], size: Mapping[float, list[float]]) -> str:
    """One row per lambda: seeds, test accuracy, C, fc2's semanticity and the faithful circuit size."""
    acc, clus = group(runs, "test_acc"), group(runs, "clusterability")
    main_rows = []
    for lam in lams:
        a, c = mean_ci(acc[lam]), mean_ci(clus[lam])
        s2 = sem_by_layer.get("fc2", {}).get(lam)
        ks = size.get(lam)
        main_rows.append([f"{lam:g}", str(len(acc[lam])), pm(a, 2, 100), pm(c, 3),
                          pm(mean_ci(s2), 3) if s2 else "--", pm(mean_ci(ks), 1) if ks else "--"])
    return table(["$\\lambda$", "seeds", "test acc. (\\%)", "$C$ (fc2)", "semanticity (fc2)", "circuit size"],
                 main_rows)


def primary_records(train: TrainingResults, ablation: AblationResults, interp: InterpretResults) -> list[dict[str, Any]]:
    """The seeds' values of stage 5's declared primary comparisons of the MLP (``claims.PRIMARY``):
    accuracy, one cluster OFF and ON (mean over clusters), fc2's label semanticity, each at the
    main lambda against lambda 0, paired by seed."""
    runs, main = train.runs, float(train.main_lambda)
    abl, k = ablation.rows, len(ablation.rows[0]["off_acc"])
    sem = lambda r: r["semanticity"]["fc2"]["score"]  # noqa: E731
    pairs = {"Acc": (runs, "test_acc"), "Off": (abl, lambda r: sum(r["off_acc"]) / k),
             "On": (abl, lambda r: sum(r["on_acc"]) / k), "Sem": (interp.rows, sem)}
    return [record(key, *paired_values(by_seed(rows, get, main), by_seed(rows, get, 0.0)))
            for key, (rows, get) in pairs.items()]


def write_paper_numbers(macros: Macros, tables: dict[str, str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``numbers.tex`` (the macros) and one ``<name>.tex`` per table in ``out_dir``."""
    out = Path(out_dir)
    written = [macros.write(out / "numbers.tex")]
    for name, tex in tables.items():
        written.append(write_text(out / f"{name}.tex", generated_header() + "\n" + tex))
    return written


# -- stage 6 (beyond.json): the sweep, spectral clusters, circuits, selectivity ---------------

def _col(rows: Sequence[Mapping[str, Any]], key: str, lam: float) -> list[float]:
    """The seeds' values of ``key`` at ``lam``, in seed order; undefined ones (None, nan) left out."""
    values = (r.get(key) for r in sorted(rows, key=lambda r: r["seed"]) if r["lam"] == lam)
    return [v for v in values if v is not None and v == v]


def _side(values: Sequence[float]) -> str:
    """Which side of 0 the seeds' 95 % interval lies on: ``stats.direction`` of the defined values
    ('indistinguishable' with fewer than two)."""
    vals = [float(v) for v in values if v == v]
    return stats.direction(mean_ci(vals)) if vals else "indistinguishable"


def _paired_side(rows: Sequence[Mapping[str, Any]], key: str, main: float) -> str:
    """'higher', 'lower' or 'indistinguishable': ``key`` at ``main`` against lambda 0 by the
    paper's exploratory rule, a paired t-test over the seeds both have."""
    a, b = (by_seed([r for r in rows if r.get(key) is not None], key, lam) for lam in (main, 0.0))
    xs, ys = paired_values(a, b)
    keep = [(x, y) for x, y in zip(xs, ys) if x == x and y == y]
    if len(keep) < 2:
        return "indistinguishable"
    v = exploratory([x for x, _ in keep], [y for _, y in keep], Wording("", "", "", "", ""))
    return {"higher": "higher", "lower": "lower"}.get(v.direction, "indistinguishable")


def beyond_macros(res: BeyondResults) -> dict[str, str]:
    """LaTeX macro values (name -> text) for the paper from stage 6's result; names are letters only.

    Every word whose direction depends on the data is chosen by the paper's exploratory rule (a
    paired t-test over seeds, or the 95 % interval of a paired difference), so a rerun with other
    parameters cannot leave a false claim. Write them with :func:`write_beyond_numbers`.
    """
    main = float(res.main_lambda)
    m: dict[str, str] = {"BeyondSeeds": str(len(res.seeds)),
                         "BeyondLambdas": ", ".join(f"{v:g}" for v in res.lambdas),
                         "BeyondMainLambda": f"{main:g}"}
    acc_words = {"higher": "more accurate than", "lower": "less accurate than",
                 "indistinguishable": "not distinguishable in accuracy from"}
    for d in res.paired_accuracy:
        if d["lam"] != main or not has_layer_word(d["layers"]):
            continue
        name = layer_word(d["layers"])
        m[f"AccDiff{name}"] = pm(Interval(**d["difference"]), 1, 100)
        diffs = [a["test_acc"] - b["test_acc"] for a in res.records for b in res.records
                 if a["layers"] == d["layers"] and a["lam"] == main and b["layers"] == d["layers"]
                 and b["lam"] == 0.0 and a["seed"] == b["seed"]]
        m[f"AccSentence{name}"] = acc_words[_side(diffs)]
    rec = res.records
    for layers in dict.fromkeys(r["layers"] for r in rec):
        if not has_layer_word(layers):
            continue
        m[f"C{layer_word(layers)}Main"] = pm_values([r["C_clustered"] for r in rec
                                                     if r["layers"] == layers and r["lam"] == main])
    sp = res.spectral["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for key, name, digits in (("spectral_c", "SpectralC", 2), ("null_c", "NullC", 2), ("z_c", "SpectralZ", 1),
                                  ("z_ncut", "NcutZ", 1), ("blocks_c", "BlocksC", 2)):
            m[f"{name}{tag}"] = pm_values(_col(sp, key, lam), digits)
    m["SpectralSentence"] = {"higher": "more clusterable than", "lower": "less clusterable than",
                             "indistinguishable": "not distinguishably more or less clusterable than"
                             }[_side(_col(sp, "z_c", 0.0))]
    cr = res.circuits["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for key, name, digits in (("greedy_size", "GreedySize", 0), ("mask_size", "MaskSize", 0),
                                  ("greedy_iou", "GreedyIoU", 2), ("mask_iou", "MaskIoU", 2),
                                  ("greedy_vs_mask_iou", "GreedyMaskAgree", 2), ("greedy_share", "GreedyShare", 2),
                                  ("mask_share", "MaskShare", 2), ("share_floor", "ShareFloor", 2)):
            if any(key in r for r in cr):
                m[f"{name}{tag}"] = pm_values(_col(cr, key, lam), digits)
    words = {"higher": "larger", "lower": "smaller", "indistinguishable": "not distinguishable in size or overlap"}
    for key, name in (("greedy_size", "GreedySize"), ("mask_size", "MaskSize"), ("greedy_iou", "GreedyIoU"),
                      ("mask_iou", "MaskIoU")):
        m[f"{name}Sentence"] = words[_paired_side(cr, key, main)]
    pct = lambda vals: pm_values([100 * v for v in vals], 1) + "\\,\\%"  # noqa: E731
    sc = res.seed_circuits["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for key, name in (("greedy_agreement", "GreedyAgree"), ("mask_agreement", "MaskAgree")):
            m[f"{name}{tag}"] = pct(_col(cr, key, lam))
        m[f"SeedGreedyIoU{tag}"] = pm_values(_col(sc, "greedy_iou", lam), 2)
        m[f"SeedMaskShareC{tag}"] = pct(_col(sc, "mask_share_c", lam))
        m[f"SeedGreedyShareC{tag}"] = pct(_col(sc, "greedy_share_c", lam))
    sr = res.selectivity["rows"]
    for lam, tag in ((0.0, "Unclustered"), (main, "Clustered")):
        for layer in res.selectivity["layers"]:
            if has_layer_word(layer):
                w = layer_word(layer)
                m[f"Sel{w}{tag}"] = pm_values(_col(sr, f"sel_{layer}", lam))
                m[f"SelLive{w}{tag}"] = pm_values(_col(sr, f"sel_live_{layer}", lam))
                m[f"Dead{w}{tag}"] = pm_values(_col(sr, f"dead_{layer}", lam))
                m[f"Mi{w}{tag}"] = pm_values(_col(sr, f"mi_{layer}", lam))
        m[f"ClusterSel{tag}"] = pm_values(_col(sr, "cluster_sel", lam))
        m[f"ClusterMi{tag}"] = pm_values(_col(sr, "cluster_mi", lam))
    more = {"higher": "more", "lower": "less", "indistinguishable": "not distinguishably more or less"}
    for key, name in (("cluster_sel", "ClusterSelSentence"), ("sel_live_fc2", "SelFcTwoSentence"),
                      ("mi_fc2", "MiFcTwoSentence")):
        m[name] = more[_paired_side(sr, key, main)]
    return m


def write_beyond_numbers(macros: Mapping[str, str], out_dir: str | os.PathLike[str]) -> Path:
    """``beyond.tex`` (stage 6's macros, :func:`beyond_macros`) in ``out_dir``."""
    return write_macros(Path(out_dir) / "beyond.tex", macros, BEYOND_SOURCE)
