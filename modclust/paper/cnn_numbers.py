"""The paper's section "A convolutional network": its macros, tables and figures, from ``cnn.json``.

``cnn.json`` is what stage 7 (``notebooks/07_cnn.ipynb``) writes:
:func:`modclust.experiments.classifier.run_datasets` of the CNN's study
(:class:`modclust.experiments.cnn_study.Cnn`), one result per dataset. :func:`cnn_macros` turns it into LaTeX macros, every name prefixed ``Cnn`` (letters only), and
:func:`write_cnn_numbers` writes them to ``generated/cnn.tex``:

- per dataset ``D`` (``Mnist``, ``Fashion``; :func:`dataset_word`), numbers as ``mean ± 95 %
  half-width`` over seeds, e.g. ``\\CnnMnistAccMain``;
- sentences over every dataset run (``\\CnnAccSentences``, ...), each direction a
  :class:`modclust.paper.claims.Verdict` paired by seed (:func:`cnn_verdicts`, which the measure
  table reads too, so a cell cannot contradict its sentence): accuracy and circuit size are
  declared primary comparisons (their values go to ``claims_07_cnn.json``,
  :func:`primary_records`), the rest is exploratory and says so;
- two tables (``\\CnnTradeoffTable``, ``\\CnnMeasureTable``) holding a ``tabular`` each.

The section's figures are in :mod:`modclust.paper.cnn_figures`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modclust.core.stats import Interval
from modclust.paper.claims import ALPHA, DECLARED, Verdict, Wording, not_measured, record
from modclust.paper.latex import Macros, count_noun, letters, num, p_text, pm, pm_values, tex_escape, write_macros
from modclust.experiments.study import seed_column, seed_values
from modclust.paper.numbers import paired, paired_values

CNN_SOURCE = "notebooks/07_cnn.ipynb"  # writes cnn.tex (cnn_macros)

DATASET_NAMES = {"mnist": ("Mnist", "MNIST"), "fashion-mnist": ("Fashion", "Fashion-MNIST")}
"""Dataset key -> (its word in macro names, its name in text)."""

LAYER_WORDS = {"conv2": "Conv", "fc1": "Fc"}
"""The clustered layers' words in macro names."""

PCT = {"digits": 1, "scale": 100.0, "unit": "\\,\\%"}


def dataset_word(name: str) -> tuple[str, str]:
    """A dataset's (macro word, display name): 'fashion-mnist' -> ('Fashion', 'Fashion-MNIST');
    another name is spelt in letters ('kmnist' -> 'Kmnist')."""
    if name in DATASET_NAMES:
        return DATASET_NAMES[name]
    word = "".join(letters(int(p)) if p.isdigit() else p.capitalize() for p in re.findall(r"[A-Za-z]+|[0-9]+", name))
    return word, name


def _pct(values: Sequence[float], digits: int = 1) -> str:
    return pm_values([100 * v for v in values], digits) + "\\,\\%"


def clause(v: Verdict, other: str, words: tuple[str, str, str], digits: int = 2, scale: float = 1.0,
           unit: str = "", quantity: str = "") -> str:
    """``"<verb> <other> (<a> against <b>, paired p=...)"``, the verb chosen by the verdict
    (``words`` = its higher, lower and not-distinguishable forms), e.g. "less accurate than the
    unclustered ones (78.9 % against 86.6 %, paired $p=0.007$)"."""
    verb = dict(zip(("higher", "lower", "inconclusive"), words))[v.direction]
    what = f"{quantity} " if quantity else ""
    t = v.test
    return (f"{verb} {other} ({what}{pm(t.a, digits, scale)}{unit} against {pm(t.b, digits, scale)}{unit}, "
            f"paired {p_text(v.p)}, exploratory)")


def cnn_verdicts(res: Mapping[str, Any]) -> dict[str, Verdict]:
    """Every exploratory comparison of one dataset, paired by seed: ``<key>`` is clustered against
    unclustered, ``untrained:<key>`` unclustered against the untrained network of the same seed.
    The sentences and the measure table both read these."""
    main = float(res["study"]["main_lambda"])
    rows, un = res["rows"], res["untrained"]
    out = {}
    plain = Wording("", "", "", "", "")
    for key, *_ in MEASURES:
        a, b = seed_values(rows, key, main), seed_values(rows, key, 0.0)
        if len(set(a) & set(b)) >= 2:
            out[key] = paired(a, b, plain)
        u = seed_values(un, key, 0.0)
        if len(set(b) & set(u)) >= 2:
            out[f"untrained:{key}"] = paired(b, u, plain)
    return out


PRIMARY_STEMS = {"test_acc": "CnnAcc", "circuit_size": "CnnCircuit"}
"""The measures whose clustered-vs-unclustered comparison is primary, by their claim's key stem
(the dataset's word completes it: ``CnnAccMnist``)."""


def primary_records(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The seeds' values of the CNN's declared primary comparisons (accuracy and circuit size per
    dataset, main lambda against 0, paired by seed); a dataset the preset does not run is recorded
    as not measured."""
    out = []
    for name, (word, title) in DATASET_NAMES.items():
        for key, stem in PRIMARY_STEMS.items():
            rows = "records" if key == "test_acc" else "rows"
            claim = f"{stem}{word}"
            if claim not in DECLARED:
                continue
            if name not in results["datasets"]:
                out.append(not_measured(claim, f"this preset does not run {title}"))
                continue
            res = results["results"][name]
            main = float(res["study"]["main_lambda"])
            out.append(record(claim, *paired_values(seed_values(res[rows], key, main),
                                                    seed_values(res[rows], key, 0.0))))
    return out


# --- macros ---------------------------------------------------------------------------------------

def dataset_macros(m: Macros, res: Mapping[str, Any]) -> dict[str, str]:
    """Add one dataset's macros (``Cnn<D>...``) to ``m``; returns its sentences by topic."""
    word, title = dataset_word(res["dataset"])
    p = f"Cnn{word}"
    main = float(res["study"]["main_lambda"])
    rec, rows, un = res["records"], res["rows"], res["untrained"]
    lo = lambda key: seed_column(rows, key, 0.0)  # noqa: E731
    hi = lambda key: seed_column(rows, key, main)  # noqa: E731
    sentences: dict[str, str] = {}

    # 1. trade-off
    m.add(f"{p}Name", title)
    m.add(f"{p}Majority", num(100 * res["majority_acc"], 1) + "\\,\\%")
    m.add(f"{p}AccUntrained", _pct(seed_column(un, "test_acc")))
    m.add(f"{p}AccUnclustered", _pct(seed_column(rec, "test_acc", 0.0)))
    m.add(f"{p}AccMain", _pct(seed_column(rec, "test_acc", main)))
    acc_diff = next(d for d in res["summary"]["paired_accuracy"] if float(d["lam"]) == main)
    diff = Interval(**acc_diff["difference"])
    m.add(f"{p}AccDiff", pm(diff, 1, 100))
    for layer, lw in LAYER_WORDS.items():
        m.add(f"{p}C{lw}Main", pm_values(seed_column(rec, f"C_{layer}", main), 3))
        m.add(f"{p}C{lw}Unclustered", pm_values(seed_column(rec, f"C_{layer}", 0.0), 3))
        m.add(f"{p}C{lw}Untrained", pm_values(seed_column(un, f"C_{layer}"), 3))
    verdicts = cnn_verdicts(res)
    sentences["acc"] = (
        f"\\ClaimCnnAcc{word}Sentence{{}} Test accuracy is {_pct(seed_column(rec, 'test_acc', main))} against "
        f"{_pct(seed_column(rec, 'test_acc', 0.0))}, where always answering the most frequent class scores "
        f"{num(100 * res['majority_acc'], 1)}\\,\\%; the clustered models reach "
        f"$C={pm_values(hi('C_conv2'), 3)}$ on conv2 and {pm_values(hi('C_fc1'), 3)} on fc1, "
        f"against {pm_values(lo('C_conv2'), 3)} and {pm_values(lo('C_fc1'), 3)} without the loss and "
        f"{pm_values(seed_column(un, 'C_conv2'), 3)} and {pm_values(seed_column(un, 'C_fc1'), 3)} at initialisation.")

    # 2. ablations
    acc_words = ("more accurate than", "less accurate than", "not distinguishable in accuracy from")
    for layer, lw in LAYER_WORDS.items():
        for key, tag in (("off_mean", "Off"), ("on_mean", "On"), ("off_min", "OffMin"), ("spread", "Spread")):
            m.add(f"{p}{tag}{lw}Main", pm_values(hi(f"{key}_{layer}"), 3))
            m.add(f"{p}{tag}{lw}Unclustered", pm_values(lo(f"{key}_{layer}"), 3))
    cmp = verdicts
    sentences["ablation"] = (
        f"On {title}, with one conv2 channel cluster OFF the clustered models are "
        f"{clause(cmp['off_mean_conv2'], 'the unclustered ones ablated alike', acc_words, **PCT)}, "
        f"and with only one ON {clause(cmp['on_mean_conv2'], 'them', acc_words, **PCT)}. "
        f"With one fc1 cluster OFF they are "
        f"{clause(cmp['off_mean_fc1'], 'the unclustered ones', acc_words, **PCT)}, "
        f"with only one ON {clause(cmp['on_mean_fc1'], 'them', acc_words, **PCT)}, "
        "and the accuracy lost with one fc1 cluster OFF is " + clause(cmp["spread_fc1"], "in unclustered models",
                       ("spread less evenly over the classes than", "spread more evenly over the classes than",
                        "not distinguishably more or less evenly spread over the classes than"), digits=3,
                       quantity="standard deviation over classes") + ".")

    # 3. semanticity, selectivity, MI, beside the untrained network
    sem = []
    apos = "'"
    more = ("higher than", "lower than", "not distinguishable from")
    for layer, lw in LAYER_WORDS.items():
        for key, tag, digits in (("sem", "Sem", 2), ("sel", "Sel", 2), ("mi", "Mi", 2), ("csel", "ClusterSel", 2),
                                 ("cmi", "ClusterMi", 2)):
            m.add(f"{p}{tag}{lw}Main", pm_values(hi(f"{key}_{layer}"), digits))
            m.add(f"{p}{tag}{lw}Unclustered", pm_values(lo(f"{key}_{layer}"), digits))
            if key in ("sem", "sel", "mi"):
                m.add(f"{p}{tag}{lw}Untrained", pm_values(seed_column(un, f"{key}_{layer}"), digits))
        unit = "channels" if layer == "conv2" else "units"
        start = f"On {title}, the" if layer == "conv2" else "The"
        untrained = "the untrained network's"
        v = verdicts
        sem.append(
            f"{start} label semanticity of the clustered models' {layer} {unit} is "
            f"{clause(v[f'sem_{layer}'], 'that of unclustered ones', more)}, which is "
            f"{clause(v[f'untrained:sem_{layer}'], untrained, more)}. "
            f"A share {pm_values(hi(f'dead_{layer}'), 2)} of their {unit} never fires on the test images, against "
            f"{pm_values(lo(f'dead_{layer}'), 2)} without the loss and "
            f"{pm_values(seed_column(un, f'dead_{layer}'), 2)} "
            f"untrained; on the live {unit}, class selectivity is "
            f"{clause(v[f'sel_live_{layer}'], 'the unclustered ones' + apos, more)}, which is "
            f"{clause(v[f'untrained:sel_live_{layer}'], untrained, more)}, and the mutual information with the "
            f"label, which a silent unit cannot raise, is "
            f"{clause(v[f'mi_{layer}'], 'the unclustered ones' + apos, more, unit=' bits')}, which is "
            f"{clause(v[f'untrained:mi_{layer}'], untrained, more, unit=' bits')}.")
    sentences["semanticity"] = " ".join(sem)

    more = ("higher than", "lower than", "not distinguishable from")
    # 4. circuits
    for lam, tag in ((main, "Main"), (0.0, "Unclustered")):
        for key, name, digits in (("circuit_size", "CircSize", 0), ("circuit_balanced_agreement", "CircBal", 3),
                                  ("circuit_balanced_min", "CircBalMin", 3), ("circuit_agreement_rest", "CircRest", 3),
                                  ("circuit_agreement_c", "CircAgreeC", 3), ("circuit_share_c", "CircShareC", 3),
                                  ("random_balanced_agreement", "RandBal", 3),
                                  ("circuit_constant_labels", "ConstLabels", 1)):
            m.add(f"{p}{name}{tag}", pm_values(seed_column(rows, key, lam), digits))
        m.add(f"{p}CircFrac{tag}", _pct(seed_column(rows, "circuit_fraction", lam), 2))
    sentences["circuits"] = (
        f"\\ClaimCnnCircuit{word}Sentence{{}} Their balanced agreement is "
        f"{clause(verdicts['circuit_balanced_agreement'], 'that of the unclustered ones', more, digits=3)}, "
        f"while random masks of the same sizes reach {pm_values(hi('random_balanced_agreement'), 3)} and "
        f"{pm_values(lo('random_balanced_agreement'), 3)}. " + _constant_sentence(res, main))

    # 5. spectral baseline against shuffled weights
    spec = []
    for layer, lw in LAYER_WORDS.items():
        for lam, tag in ((main, "Main"), (0.0, "Unclustered")):
            m.add(f"{p}SpecC{lw}{tag}", pm_values(seed_column(rows, f"spectral_c_{layer}", lam), 2))
            m.add(f"{p}NullC{lw}{tag}", pm_values(seed_column(rows, f"null_c_{layer}", lam), 2))
        beat = [v for v in lo(f"p_c_{layer}") if v < ALPHA]
        n = len(lo(f"p_c_{layer}"))
        spec.append(f"{layer}'s found clusters beat their shuffled copies (empirical p-value below {ALPHA:g}) in "
                    f"{len(beat)} of {n} unclustered models (found $C={pm_values(lo(f'spectral_c_{layer}'), 2)}$ "
                    f"against {pm_values(lo(f'null_c_{layer}'), 2)} for the shuffled copies)")
    sentences["spectral"] = (
        f"On {title}, {spec[0]}, and {spec[1]}. With the loss the found clusters reach "
        f"$C={pm_values(hi('spectral_c_conv2'), 2)}$ on conv2 and {pm_values(hi('spectral_c_fc1'), 2)} on fc1, "
        f"against shuffled copies at {pm_values(hi('null_c_conv2'), 2)} and {pm_values(hi('null_c_fc1'), 2)}; "
        "that the trained blocks are found again is the loss's doing by construction, a check of the finder "
        "rather than a finding.")
    return sentences


def _constant_sentence(res: Mapping[str, Any], main: float) -> str:
    """Whether every label's circuit, in every seed and both groups, beats a constant classifier
    (balanced agreement 0.5) on the test set, and how many look like "always c"."""
    labels = res["summary"]["circuits"]
    worst, n_circuits, below, constant = 1.0, 0, 0, 0
    for lam in (0.0, main):
        per = labels[f"{lam:g}"]
        for seed_bal, seed_share in zip(per["balanced_agreement"], per["share_c"]):
            for b, s in zip(seed_bal, seed_share):
                n_circuits += 1
                worst = min(worst, b)
                below += b <= 0.5
                constant += s >= 0.5
    title = dataset_word(res["dataset"])[1]
    clear = ("every one clears it" if below == 0 else f"{below} of them do not clear it")
    const = ("none assigns half or more of the test images to its label, as an ``always $c$'' circuit would"
             if constant == 0 else f"{constant} assign half or more of the test images to their label, as an "
             "``always $c$'' circuit would")
    return (f"A constant classifier scores balanced agreement 0.5; of the {n_circuits} circuits found on {title} "
            f"(every label, seed and both groups) {clear} (lowest {num(worst, 3)}), and {const}.")


def cnn_macros(results: Mapping[str, Any]) -> dict[str, str]:
    """Every macro of the CNN section (name -> LaTeX), from ``cnn.json`` (``run_datasets``' result)."""
    names = list(results["datasets"])
    if not names:
        raise ValueError("cnn.json holds no dataset: run notebooks/07_cnn.ipynb with cnn_datasets")
    first = results["results"][names[0]]
    study = first["study"]
    m = Macros(source=CNN_SOURCE)
    titles = [dataset_word(n)[1] for n in names]
    m.add("CnnDatasets", " and ".join([", ".join(titles[:-1]), titles[-1]]) if len(titles) > 1 else titles[0])
    m.add("CnnSeeds", len(study["seeds"]))
    m.add("CnnLambdas", ", ".join(f"{v:g}" for v in study["lambdas"]))
    m.add("CnnMainLambda", f"{float(study['main_lambda']):g}")
    m.add("CnnChannelsOne", study["channels"][0])
    m.add("CnnChannelsTwo", study["channels"][1])
    m.add("CnnHidden", study["hidden"])
    m.add("CnnK", study["n_clusters"])
    m.add("CnnEpochs", study["epochs"])
    m.add("CnnEpochsText", count_noun(int(study["epochs"]), "epoch"))
    m.add("CnnLr", f"{study['lr']:g}")
    m.add("CnnBatch", study["batch_size"])
    m.add("CnnOptimizer", {"adam": "Adam", "sgd": "SGD"}.get(study["optimizer"], study["optimizer"]))
    m.add("CnnNTrain", first["n_train"])
    m.add("CnnNTest", first["n_test"])
    m.add("CnnTopK", study["top_k"])
    m.add("CnnBins", study["selectivity_bins"])
    m.add("CnnNullDraws", study["null_draws"])
    m.add("CnnSearchPerClass", study["search_per_class"])
    m.add("CnnMaskSteps", study["mask_steps"])
    m.add("CnnMaskLr", f"{study['mask_lr']:g}")
    m.add("CnnMaskSparsity", f"{study['mask_sparsity']:g}")
    m.add("CnnCircuitParams", " and ".join(f"\\texttt{{{tex_escape(p)}}}" for p in study["circuit_params"]))
    m.add("CnnCircuitEntries", first["runs"][0]["circuits"]["n_entries"])
    k, c1, c2, h = study["n_clusters"], study["channels"][0], study["channels"][1], study["hidden"]
    m.add("CnnFcOneIn", c2 * 49)
    m.add("CnnConvBlock", f"{c2 // k}\\,$\\times$\\,{c1 // k}" if c2 % k == 0 and c1 % k == 0 else "unequal")
    m.add("CnnFcBlock", f"{h // k}\\,$\\times$\\,{c2 * 49 // k}" if h % k == 0 and c2 % k == 0 else "unequal")
    topics: dict[str, list[str]] = {}
    for n in names:
        for topic, text in dataset_macros(m, results["results"][n]).items():
            topics.setdefault(topic, []).append(text)
    for topic, texts in topics.items():
        m.add(f"Cnn{topic.capitalize()}Sentences", " ".join(texts))
    m.add("CnnTradeoffTable", tradeoff_table(results))
    m.add("CnnMeasureTable", measure_table(results))
    return m.items


def write_cnn_numbers(macros: Mapping[str, str], out_dir: str | os.PathLike[str]) -> Path:
    """``cnn.tex`` (stage 7's macros, :func:`cnn_macros`) in ``out_dir`` (a ``generated/`` folder)."""
    return write_macros(Path(out_dir) / "cnn.tex", macros, CNN_SOURCE)


# --- tables ---------------------------------------------------------------------------------------

def _tabular(align: str, header: Sequence[str], blocks: Sequence[tuple[str, Sequence[Sequence[str]]]]) -> str:
    """A booktabs tabular with one titled block of rows per dataset."""
    width = len(align)
    lines = [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(header) + " \\\\"]
    for title, rows in blocks:
        lines += ["\\midrule", f"\\multicolumn{{{width}}}{{l}}{{\\textit{{{title}}}}} \\\\"]
        lines += [" & ".join(r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)


def tradeoff_table(results: Mapping[str, Any]) -> str:
    """Per dataset and lambda: test accuracy (%), C of conv2 and fc1, and the accuracy difference to
    lambda = 0 paired by seed (percentage points); the untrained network as the first row."""
    blocks = []
    for name in results["datasets"]:
        res = results["results"][name]
        rec, un = res["records"], res["untrained"]
        diffs = {float(d["lam"]): Interval(**d["difference"]) for d in res["summary"]["paired_accuracy"]}
        rows = [["untrained", pm_values([100 * v for v in seed_column(un, "test_acc")], 1),
                 pm_values(seed_column(un, "C_conv2"), 3), pm_values(seed_column(un, "C_fc1"), 3), "--"]]
        for lam in sorted({float(r["lam"]) for r in rec}):
            rows.append([f"$\\lambda={lam:g}$", pm_values([100 * v for v in seed_column(rec, "test_acc", lam)], 1),
                         pm_values(seed_column(rec, "C_conv2", lam), 3), pm_values(seed_column(rec, "C_fc1", lam), 3),
                         "--" if lam == 0 else pm(diffs[lam], 1, 100)])
        blocks.append((dataset_word(name)[1], rows))
    return _tabular("lrrrr", ["", "test acc.\\ (\\%)", "$C$ conv2", "$C$ fc1", "$\\Delta$ acc.\\ (points)"], blocks)


MEASURES = (
    ("test_acc", "test accuracy", 3, True),
    ("off_mean_conv2", "acc., one conv2 cluster OFF", 3, False),
    ("on_mean_conv2", "acc., one conv2 cluster ON", 3, False),
    ("off_mean_fc1", "acc., one fc1 cluster OFF", 3, False),
    ("on_mean_fc1", "acc., one fc1 cluster ON", 3, False),
    ("spread_fc1", "class spread of fc1 OFF loss", 3, False),
    ("sem_conv2", "semanticity, conv2 channels", 2, True),
    ("sem_fc1", "semanticity, fc1 units", 2, True),
    ("dead_conv2", "dead share, conv2 channels", 2, True),
    ("dead_fc1", "dead share, fc1 units", 2, True),
    ("sel_live_conv2", "selectivity, live conv2 channels", 2, True),
    ("sel_live_fc1", "selectivity, live fc1 units", 2, True),
    ("mi_conv2", "MI (bits), conv2 channels", 2, True),
    ("mi_fc1", "MI (bits), fc1 units", 2, True),
    ("circuit_size", "circuit size (weights)", 0, False),
    ("circuit_balanced_agreement", "circuit balanced agreement", 3, False),
    ("random_balanced_agreement", "random same-size mask", 3, False),
    ("spectral_c_conv2", "spectral clusters' $C$, conv2", 2, False),
    ("spectral_c_fc1", "spectral clusters' $C$, fc1", 2, False),
)
"""The rows of the measure table: (row key, label, digits, whether the untrained network has it)."""


def measure_table(results: Mapping[str, Any]) -> str:
    """Per dataset, each measure for the untrained network, the unclustered and the clustered
    models (mean ± 95 % half-width over seeds) and the clustered-vs-unclustered verdict, the same
    :class:`~modclust.paper.claims.Verdict` the sentences read (exploratory, paired by seed)."""
    blocks = []
    for name in results["datasets"]:
        res = results["results"][name]
        main = float(res["study"]["main_lambda"])
        verdicts = cnn_verdicts(res)
        rows = []
        for key, label, digits, has_untrained in MEASURES:
            a, b = seed_column(res["rows"], key, main), seed_column(res["rows"], key, 0.0)
            v = verdicts.get(key)
            claim = f"{PRIMARY_STEMS.get(key, '')}{dataset_word(name)[0]}"
            # a primary comparison's cell is its verdict after the Holm correction, written at compile time
            cell = f"\\Claim{claim}Cell" if claim in DECLARED else "--" if v is None else v.cell()
            base = pm_values(seed_column(res["untrained"], key), digits) if has_untrained else "--"
            rows.append([label, base, pm_values(b, digits), pm_values(a, digits), cell])
        blocks.append((dataset_word(name)[1], rows))
    main = float(results["results"][results["datasets"][0]]["study"]["main_lambda"])
    return _tabular("lrrrl", ["", "untrained", "$\\lambda=0$", f"$\\lambda={main:g}$", "clustered vs.\\ not"], blocks)
