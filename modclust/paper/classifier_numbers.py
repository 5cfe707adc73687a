"""An image classifier's paper section: its macros, tables and sentences, from the study's result.

The result is what :func:`modclust.experiments.classifier.run_datasets` returns for a family's
:class:`~modclust.experiments.classifier.ClassifierStudy` (the CNN's: stage 7 writes it as
``cnn.json``), one result per dataset. :func:`classifier_macros` turns it into LaTeX macros,
every name starting with the family's ``macro_prefix`` (``Cnn``):

- per dataset ``D`` (``Mnist``, ``Fashion``; :func:`dataset_word`), numbers as ``mean ± 95 %
  half-width`` over seeds, e.g. ``\\CnnMnistAccMain``;
- sentences over every dataset run (``\\CnnAccSentences``, ...), each direction a
  :class:`modclust.paper.claims.Verdict` paired by seed (:func:`classifier_verdicts`, which the
  measure table reads too, so a cell cannot contradict its sentence): accuracy and circuit size
  are declared primary comparisons (their values go to the stage's claims file,
  :func:`primary_records`), the rest is exploratory and says so;
- two tables (``\\CnnTradeoffTable``, ``\\CnnMeasureTable``) holding a ``tabular`` each.

Each clustered layer is named as the family's
:attr:`~modclust.experiments.classifier.ClassifierStudy.layer_words` say. The section's figures
are in :mod:`modclust.paper.classifier_figures`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from modclust.core.stats import Interval
from modclust.paper.claims import ALPHA, DECLARED, Verdict, Wording, not_measured, record
from modclust.experiments.classifier import ClassifierStudy, LayerWords
from modclust.experiments.study import seed_column, seed_values
from modclust.paper.latex import Macros, count_noun, letters, num, pm, pm_values, tex_escape
from modclust.paper.numbers import paired, paired_values

Family = ClassifierStudy[Any]
"""A family's study: its ``macro_prefix`` and ``layer_words`` name the section's macros and layers,
its settings give its own setup numbers."""

DATASET_NAMES = {"mnist": ("Mnist", "MNIST"), "fashion-mnist": ("Fashion", "Fashion-MNIST")}
"""Dataset key -> (its word in macro names, its name in text)."""

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


def _and(items: Sequence[str], comma: str = "") -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"`` (``comma=","``: ``"a, and b"``, ``"a, b, and c"``)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f"{comma} and " + items[-1]


def _c_on(values: Sequence[str], layers: Sequence[str]) -> str:
    """``"$C=a$ on conv2 and b on fc1"``: one value per layer, the first in math mode after ``C=``."""
    return _and([f"$C={values[0]}$ on {layers[0]}", *(f"{v} on {layer}" for v, layer in zip(values[1:], layers[1:]))])


def measures(words: Mapping[str, LayerWords]) -> list[tuple[str, str, int, bool]]:
    """The rows of the measure table: (row key, label, digits, whether the untrained network has
    it), every clustered layer's (the class spread of its OFF loss for the last layer only)."""
    layers = list(words)
    rows = [("test_acc", "test accuracy", 3, True)]
    for layer in layers:
        rows += [(f"off_mean_{layer}", f"acc., one {layer} cluster OFF", 3, False),
                 (f"on_mean_{layer}", f"acc., one {layer} cluster ON", 3, False)]
    rows.append((f"spread_{layers[-1]}", f"class spread of {layers[-1]} OFF loss", 3, False))
    for key, label in (("sem", "semanticity, {l} {u}"), ("dead", "dead share, {l} {u}"),
                       ("sel_live", "selectivity, live {l} {u}"), ("mi", "MI (bits), {l} {u}")):
        rows += [(f"{key}_{layer}", label.format(l=layer, u=words[layer].units), 2, True) for layer in layers]
    rows += [("circuit_size", "circuit size (weights)", 0, False),
             ("circuit_balanced_agreement", "circuit balanced agreement", 3, False),
             ("random_balanced_agreement", "random same-size mask", 3, False)]
    rows += [(f"spectral_c_{layer}", f"spectral clusters' $C$, {layer}", 2, False) for layer in layers]
    return rows


def classifier_verdicts(res: Mapping[str, Any], family: Family) -> dict[str, Verdict]:
    """Every exploratory comparison of one dataset, paired by seed: ``<key>`` is clustered against
    unclustered, ``untrained:<key>`` unclustered against the untrained network of the same seed.
    The sentences and the measure table both read these."""
    main = float(res["study"]["main_lambda"])
    rows, un = res["rows"], res["untrained"]
    out = {}
    plain = Wording("", "", "", "", "")
    for key, *_ in measures(family.layer_words):
        a, b = seed_values(rows, key, main), seed_values(rows, key, 0.0)
        if len(set(a) & set(b)) >= 2:
            out[key] = paired(a, b, plain)
        u = seed_values(un, key, 0.0)
        if len(set(b) & set(u)) >= 2:
            out[f"untrained:{key}"] = paired(b, u, plain)
    return out


PRIMARY_STEMS = {"test_acc": "Acc", "circuit_size": "Circuit"}
"""The measures whose clustered-vs-unclustered comparison is primary, by their claim's key stem
(the family's prefix before it and the dataset's word after it complete it: ``CnnAccMnist``)."""


def primary_records(results: Mapping[str, Any], family: Family) -> list[dict[str, Any]]:
    """The seeds' values of the family's declared primary comparisons (accuracy and circuit size
    per dataset, main lambda against 0, paired by seed); a dataset the preset does not run is
    recorded as not measured."""
    out = []
    for name, (word, title) in DATASET_NAMES.items():
        for key, stem in PRIMARY_STEMS.items():
            rows = "records" if key == "test_acc" else "rows"
            claim = f"{family.macro_prefix}{stem}{word}"
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

def dataset_macros(m: Macros, res: Mapping[str, Any], family: Family) -> dict[str, str]:
    """Add one dataset's macros (``<prefix><D>...``) to ``m``; returns its sentences by topic."""
    word, title = dataset_word(res["dataset"])
    prefix, words = family.macro_prefix, family.layer_words
    layers = list(words)
    p = f"{prefix}{word}"
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
    for layer, lw in words.items():
        m.add(f"{p}C{lw.macro}Main", pm_values(seed_column(rec, f"C_{layer}", main), 3))
        m.add(f"{p}C{lw.macro}Unclustered", pm_values(seed_column(rec, f"C_{layer}", 0.0), 3))
        m.add(f"{p}C{lw.macro}Untrained", pm_values(seed_column(un, f"C_{layer}"), 3))
    verdicts = classifier_verdicts(res, family)
    sentences["acc"] = (
        f"\\Claim{prefix}Acc{word}Sentence{{}} Test accuracy is {_pct(seed_column(rec, 'test_acc', main))} against "
        f"{_pct(seed_column(rec, 'test_acc', 0.0))}, where always answering the most frequent class scores "
        f"{num(100 * res['majority_acc'], 1)}\\,\\%; the clustered models reach "
        f"{_c_on([pm_values(hi(f'C_{layer}'), 3) for layer in layers], layers)}, "
        f"against {_and([pm_values(lo(f'C_{layer}'), 3) for layer in layers])} without the loss and "
        f"{_and([pm_values(seed_column(un, f'C_{layer}'), 3) for layer in layers])} at initialisation.")

    # 2. ablations
    acc_words = ("more accurate than", "less accurate than", "not distinguishable in accuracy from")
    for layer, lw in words.items():
        for key, tag in (("off_mean", "Off"), ("on_mean", "On"), ("off_min", "OffMin"), ("spread", "Spread")):
            m.add(f"{p}{tag}{lw.macro}Main", pm_values(hi(f"{key}_{layer}"), 3))
            m.add(f"{p}{tag}{lw.macro}Unclustered", pm_values(lo(f"{key}_{layer}"), 3))
    cmp = verdicts
    parts = []
    for i, (layer, lw) in enumerate(words.items()):
        off, on = cmp[f"off_mean_{layer}"], cmp[f"on_mean_{layer}"]
        if i == 0:
            parts.append(f"On {title}, with one {lw.cluster} cluster OFF the clustered models are "
                         f"{off.clause('the unclustered ones ablated alike', acc_words, **PCT)}, "
                         f"and with only one ON {on.clause('them', acc_words, **PCT)}.")
        else:
            parts.append(f" With one {lw.cluster} cluster OFF they are "
                         f"{off.clause('the unclustered ones', acc_words, **PCT)}, "
                         f"with only one ON {on.clause('them', acc_words, **PCT)}"
                         + ("." if layer != layers[-1] else ""))
    last = layers[-1]
    sentences["ablation"] = "".join(parts) + (
        (", and the accuracy lost with one " if len(layers) > 1 else " The accuracy lost with one ")
        + f"{words[last].cluster} cluster OFF is " + cmp[f"spread_{last}"].clause("in unclustered models",
                       ("spread less evenly over the classes than", "spread more evenly over the classes than",
                        "not distinguishably more or less evenly spread over the classes than"), digits=3,
                       quantity="standard deviation over classes") + ".")

    # 3. semanticity, selectivity, MI, beside the untrained network
    sem = []
    apos = "'"
    more = ("higher than", "lower than", "not distinguishable from")
    for i, (layer, lw) in enumerate(words.items()):
        for key, tag, digits in (("sem", "Sem", 2), ("sel", "Sel", 2), ("mi", "Mi", 2), ("csel", "ClusterSel", 2),
                                 ("cmi", "ClusterMi", 2)):
            m.add(f"{p}{tag}{lw.macro}Main", pm_values(hi(f"{key}_{layer}"), digits))
            m.add(f"{p}{tag}{lw.macro}Unclustered", pm_values(lo(f"{key}_{layer}"), digits))
            if key in ("sem", "sel", "mi"):
                m.add(f"{p}{tag}{lw.macro}Untrained", pm_values(seed_column(un, f"{key}_{layer}"), digits))
        unit = lw.units
        start = f"On {title}, the" if i == 0 else "The"
        untrained = "the untrained network's"
        v = verdicts
        sem.append(
            f"{start} label semanticity of the clustered models' {layer} {unit} is "
            f"{v[f'sem_{layer}'].clause('that of unclustered ones', more)}, which is "
            f"{v[f'untrained:sem_{layer}'].clause(untrained, more)}. "
            f"A share {pm_values(hi(f'dead_{layer}'), 2)} of their {unit} never fires on the test images, against "
            f"{pm_values(lo(f'dead_{layer}'), 2)} without the loss and "
            f"{pm_values(seed_column(un, f'dead_{layer}'), 2)} "
            f"untrained; on the live {unit}, class selectivity is "
            f"{v[f'sel_live_{layer}'].clause('the unclustered ones' + apos, more)}, which is "
            f"{v[f'untrained:sel_live_{layer}'].clause(untrained, more)}, and the mutual information with the "
            f"label, which a silent unit cannot raise, is "
            f"{v[f'mi_{layer}'].clause('the unclustered ones' + apos, more, unit=' bits')}, which is "
            f"{v[f'untrained:mi_{layer}'].clause(untrained, more, unit=' bits')}.")
    sentences["semanticity"] = " ".join(sem)

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
        f"\\Claim{prefix}Circuit{word}Sentence{{}} Their balanced agreement is "
        f"{verdicts['circuit_balanced_agreement'].clause('that of the unclustered ones', more, digits=3)}, "
        f"while random masks of the same sizes reach {pm_values(hi('random_balanced_agreement'), 3)} and "
        f"{pm_values(lo('random_balanced_agreement'), 3)}. " + _constant_sentence(res, main))

    # 5. spectral baseline against shuffled weights
    spec = []
    for layer, lw in words.items():
        for lam, tag in ((main, "Main"), (0.0, "Unclustered")):
            m.add(f"{p}SpecC{lw.macro}{tag}", pm_values(seed_column(rows, f"spectral_c_{layer}", lam), 2))
            m.add(f"{p}NullC{lw.macro}{tag}", pm_values(seed_column(rows, f"null_c_{layer}", lam), 2))
        beat = [v for v in lo(f"p_c_{layer}") if v < ALPHA]
        n = len(lo(f"p_c_{layer}"))
        spec.append(f"{layer}'s found clusters beat their shuffled copies (empirical p-value below {ALPHA:g}) in "
                    f"{len(beat)} of {n} unclustered models (found $C={pm_values(lo(f'spectral_c_{layer}'), 2)}$ "
                    f"against {pm_values(lo(f'null_c_{layer}'), 2)} for the shuffled copies)")
    sentences["spectral"] = (
        f"On {title}, {_and(spec, ',')}. With the loss the found clusters reach "
        f"{_c_on([pm_values(hi(f'spectral_c_{layer}'), 2) for layer in layers], layers)}, against shuffled copies "
        f"at {_and([pm_values(hi(f'null_c_{layer}'), 2) for layer in layers])}; "
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


def classifier_macros(results: Mapping[str, Any], family: Family, source: str) -> Macros:
    """Every macro of the family's section (name -> LaTeX), from ``run_datasets``' result;
    ``source`` names the notebook that writes them."""
    prefix = family.macro_prefix
    names = list(results["datasets"])
    if not names:
        raise ValueError(f"the {family.name} study's result holds no dataset: run {source} with its datasets")
    first = results["results"][names[0]]
    study = first["study"]
    if study != family.settings.to_dict():
        raise ValueError(f"this result was made with other settings than the {family.name} study given: pass the "
                         "study that ran it (its settings are the result's 'study')")
    m = Macros(source=source)
    titles = [dataset_word(n)[1] for n in names]
    m.add(f"{prefix}Datasets", _and(titles))
    m.add(f"{prefix}Seeds", len(study["seeds"]))
    m.add(f"{prefix}Lambdas", ", ".join(f"{v:g}" for v in study["lambdas"]))
    m.add(f"{prefix}MainLambda", f"{float(study['main_lambda']):g}")
    m.add(f"{prefix}K", study["n_clusters"])
    m.add(f"{prefix}Epochs", study["epochs"])
    m.add(f"{prefix}EpochsText", count_noun(int(study["epochs"]), "epoch"))
    m.add(f"{prefix}Lr", f"{study['lr']:g}")
    m.add(f"{prefix}Batch", study["batch_size"])
    m.add(f"{prefix}Optimizer", {"adam": "Adam", "sgd": "SGD"}.get(study["optimizer"], study["optimizer"]))
    m.add(f"{prefix}NTrain", first["n_train"])
    m.add(f"{prefix}NTest", first["n_test"])
    m.add(f"{prefix}TopK", study["top_k"])
    m.add(f"{prefix}Bins", study["selectivity_bins"])
    m.add(f"{prefix}NullDraws", study["null_draws"])
    m.add(f"{prefix}SearchPerClass", study["search_per_class"])
    m.add(f"{prefix}MaskSteps", study["mask_steps"])
    m.add(f"{prefix}MaskLr", f"{study['mask_lr']:g}")
    m.add(f"{prefix}MaskSparsity", f"{study['mask_sparsity']:g}")
    m.add(f"{prefix}CircuitParams", " and ".join(f"\\texttt{{{tex_escape(p)}}}" for p in study["circuit_params"]))
    m.add(f"{prefix}CircuitEntries", first["runs"][0]["circuits"]["n_entries"])
    for word, value in family.setup_values().items():
        m.add(f"{prefix}{word}", "unequal" if value is None else
              f"{value[0]}\\,$\\times$\\,{value[1]}" if isinstance(value, tuple) else value)
    topics: dict[str, list[str]] = {}
    for n in names:
        for topic, text in dataset_macros(m, results["results"][n], family).items():
            topics.setdefault(topic, []).append(text)
    for topic, texts in topics.items():
        m.add(f"{prefix}{topic.capitalize()}Sentences", " ".join(texts))
    m.add(f"{prefix}TradeoffTable", tradeoff_table(results, family))
    m.add(f"{prefix}MeasureTable", measure_table(results, family))
    return m


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


def tradeoff_table(results: Mapping[str, Any], family: Family) -> str:
    """Per dataset and lambda: test accuracy (%), C of each clustered layer, and the accuracy
    difference to lambda = 0 paired by seed (percentage points); the untrained network first."""
    layers = list(family.layer_words)
    blocks = []
    for name in results["datasets"]:
        res = results["results"][name]
        rec, un = res["records"], res["untrained"]
        diffs = {float(d["lam"]): Interval(**d["difference"]) for d in res["summary"]["paired_accuracy"]}
        rows = [["untrained", pm_values([100 * v for v in seed_column(un, "test_acc")], 1),
                 *(pm_values(seed_column(un, f"C_{layer}"), 3) for layer in layers), "--"]]
        for lam in sorted({float(r["lam"]) for r in rec}):
            rows.append([f"$\\lambda={lam:g}$", pm_values([100 * v for v in seed_column(rec, "test_acc", lam)], 1),
                         *(pm_values(seed_column(rec, f"C_{layer}", lam), 3) for layer in layers),
                         "--" if lam == 0 else pm(diffs[lam], 1, 100)])
        blocks.append((dataset_word(name)[1], rows))
    return _tabular("lr" + "r" * len(layers) + "r", ["", "test acc.\\ (\\%)", *(f"$C$ {layer}" for layer in layers),
                                                     "$\\Delta$ acc.\\ (points)"], blocks)


def measure_table(results: Mapping[str, Any], family: Family) -> str:
    """Per dataset, each measure for the untrained network, the unclustered and the clustered
    models (mean ± 95 % half-width over seeds) and the clustered-vs-unclustered verdict, the same
    :class:`~modclust.paper.claims.Verdict` the sentences read (exploratory, paired by seed)."""
    blocks = []
    for name in results["datasets"]:
        res = results["results"][name]
        main = float(res["study"]["main_lambda"])
        verdicts = classifier_verdicts(res, family)
        rows = []
        for key, label, digits, has_untrained in measures(family.layer_words):
            a, b = seed_column(res["rows"], key, main), seed_column(res["rows"], key, 0.0)
            v = verdicts.get(key)
            claim = f"{family.macro_prefix}{PRIMARY_STEMS[key]}{dataset_word(name)[0]}" if key in PRIMARY_STEMS else ""
            # a primary comparison's cell is its verdict after the Holm correction, written at compile time
            cell = f"\\Claim{claim}Cell" if claim in DECLARED else "--" if v is None else v.cell()
            base = pm_values(seed_column(res["untrained"], key), digits) if has_untrained else "--"
            rows.append([label, base, pm_values(b, digits), pm_values(a, digits), cell])
        blocks.append((dataset_word(name)[1], rows))
    main = float(results["results"][results["datasets"][0]]["study"]["main_lambda"])
    return _tabular("lrrrl", ["", "untrained", "$\\lambda=0$", f"$\\lambda={main:g}$", "clustered vs.\\ not"], blocks)
