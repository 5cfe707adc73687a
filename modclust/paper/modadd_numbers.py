"""The paper's numbers, sentences and figures for the modular-addition stage (notebooks/08_modadd.ipynb).

:func:`modadd_macros` turns the stage's result (the template's run of
:class:`~modclust.experiments.modular_addition.ModularAddition`,
a :class:`~modclust.experiments.study.StudyResult`; ``modadd.json`` read back with
:meth:`~modclust.experiments.study.StudyResult.from_dict`) into LaTeX macros, every name prefixed
``ModAdd`` (letters only): numbers as means with 95 % half-widths over seeds (the scalars of its
``rows``), and every sentence whose direction depends on the data given by a
:class:`modclust.paper.claims.Verdict`: the clustered models against the unclustered ones paired by
seed (the trained clusters' MI is a declared primary comparison, :func:`primary_records`; the rest
is exploratory and says so), or a measure against its shuffled null, random control or untrained
model. :func:`write_modadd_numbers` writes them to ``generated/modadd.tex``. The section's figures
are in :mod:`modclust.paper.modadd_figures`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modclust.core.stats import Contrast, contrast
from modclust.experiments.modular_addition import modulus_row
from modclust.experiments.study import StudyResult, seed_column
from modclust.paper.latex import Macros, count_noun, num, pm_values, table, write_macros
from modclust.paper.claims import Verdict, Wording, against_clause, record
from modclust.paper.numbers import paired, paired_values

MODADD_SOURCE = "notebooks/08_modadd.ipynb"  # writes modadd.tex (modadd_macros)
TAGS = ("Unclustered", "Clustered")
SPECTRAL_TEXT = {"mlp_in": "$|W_{\\mathrm{in}}|$",
                 "neuron_weights": "$|[W_{\\mathrm{in}},\\,W_{\\mathrm{out}}^{\\top}]|$"}


# -- reading the study -------------------------------------------------------------------------

def clustered_lambda(study: StudyResult) -> float:
    """The study's clustered lambda, its ``main_lambda`` (the stage compares it with lambda = 0)."""
    lam = float(study.study["main_lambda"])
    got = sorted({float(r["lam"]) for r in study.records})
    if got != [0.0, lam]:
        raise ValueError(f"the modular-addition macros compare one clustered lambda ({lam:g}) with 0, got runs at "
                         f"lambdas {got}: run the stage with one main_lambda (the preset's modadd: section)")
    return lam


def _pct(vals: Sequence[float], digits: int = 1) -> str:
    return pm_values([100 * v for v in vals], digits) + "\\,\\%" if vals else "n/a"


def _every(study: StudyResult, key: str) -> list[float]:
    """``key`` of every run (the rows, in the grid's order)."""
    return [float(r[key]) for r in study.rows]


def clustered_contrast(study: StudyResult, key: str, other: str | None = None) -> Contrast | None:
    """The clustered models' ``key`` against the unclustered ones' ``other`` (default ``key``), paired
    by seed with undefined pairs dropped (:func:`modclust.core.stats.contrast`); None with fewer than
    two pairs. What the notebook prints; the paper's sentences are :class:`~modclust.paper.claims.Verdict`."""
    xs, ys = paired_values(study.values(key, clustered_lambda(study)), study.values(other or key, 0.0))
    if len(xs) < 2:
        return None
    with warnings.catch_warnings():  # scipy warns of precision loss on (nearly) equal samples
        warnings.simplefilter("ignore", RuntimeWarning)
        return contrast(xs, ys, "paired")


def _sentence(study: StudyResult, key: str, wording: Wording) -> str:
    """The exploratory verdict's sentence for ``key``, the clustered models against the
    unclustered ones paired by seed; or a plain statement that they cannot be compared."""
    xs, ys = study.values(key, clustered_lambda(study)), study.values(key, 0.0)
    if len(set(xs) & set(ys)) < 2:
        return (f"{wording.subject} and {wording.other} cannot be compared by {wording.quantity}: fewer than two "
                "seeds have it defined in both.")
    with warnings.catch_warnings():  # scipy warns of precision loss on (nearly) equal samples
        warnings.simplefilter("ignore", RuntimeWarning)
        return paired(xs, ys, wording).sentence()


def primary_records(study: StudyResult) -> list[dict[str, Any]]:
    """The declared primary comparison of this section (``ModaddMi``): the MI of the clustered
    models' trained clusters against that of the clusters found after training in the unclustered
    models, paired by seed."""
    lam = clustered_lambda(study)
    return [record("ModaddMi", *paired_values(study.values("mi", lam), study.values("spectral_mi", 0.0)))]


def _freq_list(study: StudyResult, lam: float) -> str:
    rows = sorted((r for r in study.runs if float(r["lam"]) == lam), key=lambda r: r["seed"])
    return "; ".join("\\{" + ", ".join(str(k) for k in r["key_frequencies"]) + "\\}" if r["key_frequencies"]
                     else "none" for r in rows)


# -- macros -----------------------------------------------------------------------------------

def _setup_macros(m: Macros, study: StudyResult, lam: float) -> None:
    cfg = study.study
    p = int(cfg["p"])
    m.add("ModAddP", p)
    m.add("ModAddNFreq", (p - 1) // 2)
    m.add("ModAddTrainPct", f"{100 * cfg['train_frac']:g}\\,\\%")
    m.add("ModAddNTrain", round(cfg["train_frac"] * p * p))
    m.add("ModAddNPairs", p * p)
    m.add("ModAddDModel", cfg["d_model"])
    m.add("ModAddHeads", cfg["n_heads"])
    m.add("ModAddDMlp", cfg["d_mlp"])
    m.add("ModAddK", cfg["n_clusters"])
    m.add("ModAddBlockSize", cfg["d_mlp"] // cfg["n_clusters"])
    m.add("ModAddLambda", f"{lam:g}")
    m.add("ModAddSeeds", len(cfg["seeds"]))
    m.add("ModAddStopAt", f"{cfg['stop_at']:g}")
    m.add("ModAddStepsAfter", cfg.get("steps_after", 0))
    m.add("ModAddMaxSteps", cfg["max_steps"])
    m.add("ModAddEvalEvery", cfg["eval_every"])
    m.add("ModAddLr", f"{cfg['lr']:g}")
    m.add("ModAddWeightDecay", f"{cfg['weight_decay']:g}")
    m.add("ModAddMinShare", f"{cfg['min_share']:g}")
    m.add("ModAddMinNeurons", cfg["min_neurons"])
    m.add("ModAddNullDraws", cfg["null_draws"])
    m.add("ModAddControlDraws", cfg["control_draws"])
    m.add("ModAddSpectralOn", SPECTRAL_TEXT[cfg["spectral_weights"]])
    m.add("ModAddChance", f"{100 / p:.1f}\\,\\%")
    m.add("ModAddMaxMi", num(math.log2(cfg["n_clusters"]), 2))


def generalised_sentence(study: StudyResult, lam: float) -> str:
    """How many runs reached the stop accuracy, and which did not (never hidden)."""
    cfg = study.study
    gen = study.summary["generalised"]
    n_runs = sum(g["n_runs"] for g in gen.values())
    n_ok = sum(g["n_generalised"] for g in gen.values())
    goal = f"test accuracy {cfg['stop_at']:g} within {cfg['max_steps']} steps"
    if n_ok == n_runs:
        return f"All {n_runs} runs reached {goal}."
    failed = []
    for lam_key, tag in (("0.0", "unclustered"), (str(lam), "clustered")):
        seeds = gen[lam_key]["failed_seeds"]
        if seeds:
            failed.append(f"{len(seeds)} of {gen[lam_key]['n_runs']} {tag} (seed{'s' if len(seeds) > 1 else ''} "
                          f"{', '.join(str(s) for s in seeds)})")
    return (f"\\textbf{{{n_runs - n_ok} of the {n_runs} runs did not reach {goal}}}: {' and '.join(failed)}. "
            "They are kept in every mean below except those of the steps and seconds to generalise, which "
            "count only the runs that got there.")


def modadd_macros(study: StudyResult) -> Macros:
    """Every number and data-dependent sentence of the section "Modular addition" (names ``ModAdd...``)."""
    lam = clustered_lambda(study)
    m = Macros(source=MODADD_SOURCE)
    _setup_macros(m, study, lam)
    lams = {"Unclustered": 0.0, "Clustered": lam}
    m.add("ModAddGeneralisedSentence", generalised_sentence(study, lam))
    m.add("ModAddNGeneralised", sum(bool(r["generalised"]) for r in study.records))
    m.add("ModAddNRuns", len(study.records))
    m.add("ModAddInitAcc", _pct(_every(study, "init_test_acc")))
    m.add("ModAddInitC", pm_values([float(r[k]) for r in study.rows for k in ("init_c_in", "init_c_out")]))
    m.add("ModAddUntrainedExplained", _pct(_every(study, "untrained_explained_share")))
    m.add("ModAddUntrainedNKey", pm_values(_every(study, "untrained_n_key"), 1))
    for tag, v in lams.items():
        col = lambda key: seed_column(study.rows, key, v)  # noqa: E731
        m.add(f"ModAddSteps{tag}", pm_values(col("steps"), 0))
        m.add(f"ModAddSeconds{tag}", pm_values(col("seconds"), 1))
        m.add(f"ModAddNGeneralised{tag}", len(col("steps")))
        m.add(f"ModAddTestAcc{tag}", _pct(col("test_acc")))
        m.add(f"ModAddTrainAcc{tag}", _pct(col("train_acc")))
        m.add(f"ModAddCIn{tag}", pm_values(col("c_in"), 3))
        m.add(f"ModAddCOut{tag}", pm_values(col("c_out"), 3))
        m.add(f"ModAddNKey{tag}", pm_values(col("n_key"), 1))
        m.add(f"ModAddKeyFreqs{tag}", _freq_list(study, v))
        m.add(f"ModAddInvKey{tag}", pm_values([1 / n for n in col("n_key") if n >= 2]))
        m.add(f"ModAddExplained{tag}", _pct(col("explained_share")))
        m.add(f"ModAddLogitKeyShare{tag}", _pct(col("logit_key_share")))
        m.add(f"ModAddUntrainedLogitKeyShare{tag}", _pct(col("untrained_logit_key_share")))
        for key, name, digits in (("mi", "Mi", 2), ("mi_null", "MiNull", 2), ("mi_z", "MiZ", 1),
                                  ("mi_norm", "MiNorm", 2), ("spectral_mi", "SpectralMi", 2),
                                  ("spectral_mi_null", "SpectralMiNull", 2), ("spectral_mi_z", "SpectralMiZ", 1),
                                  ("spectral_mi_norm", "SpectralMiNorm", 2), ("spectral_c", "SpectralC", 2),
                                  ("spectral_k", "SpectralK", 1), ("abl_specificity", "Specificity", 2),
                                  ("control_specificity", "ControlSpecificity", 2),
                                  ("abl_power_specificity", "PowerSpecificity", 2),
                                  ("control_power_specificity", "ControlPowerSpecificity", 2),
                                  ("abl_purity", "Purity", 2),
                                  ("control_purity", "ControlPurity", 2)):
            m.add(f"ModAdd{name}{tag}", pm_values(col(key), digits))
        for key, name in (("abl_test_acc_before", "AblAccBefore"), ("abl_test_acc_after", "AblAcc"),
                          ("control_test_acc_after", "ControlAcc"), ("abl_acc_after", "AblAllAcc")):
            m.add(f"ModAdd{name}{tag}", _pct(col(key)))
        nulls = study.summary["against_null"][str(v)]
        m.add(f"ModAddMiNullSentence{tag}", against_clause(
            nulls["mi"], {"higher": "above its shuffled null", "lower": "below its shuffled null",
                             "indistinguishable": "not distinguishable from its shuffled null"},
            "MI minus the null's mean", 2, " bits"))
        m.add(f"ModAddSpectralNullSentence{tag}", against_clause(
            nulls["spectral_mi"], {"higher": "above their shuffled null", "lower": "below their shuffled null",
                                      "indistinguishable": "not distinguishable from their shuffled null"},
            "MI minus the null's mean", 2, " bits"))
        m.add(f"ModAddSpecificityControlSentence{tag}", against_clause(
            nulls["abl_specificity"], {"higher": "more specific than the random sets",
                                          "lower": "less specific than the random sets",
                                          "indistinguishable":
                                              "not distinguishably more specific than the random sets"},
            "difference", 2))
        m.add(f"ModAddPowerSpecificityControlSentence{tag}", against_clause(
            nulls["abl_power_specificity"], {"higher": "higher than for random sets",
                                                "lower": "lower than for random sets",
                                                "indistinguishable": "not distinguishable from random sets"},
            "difference", 2))
    subj, other = "The clustered models", "the unclustered ones"
    sentences = {
        "Steps": ("steps", Wording(subj, other, "need more steps than", "need fewer steps than", "steps to generalise",
                                   digits=0)),
        "Seconds": ("seconds", Wording(subj, other, "take longer than", "take less time than",
                                       "seconds to generalise", digits=1)),
        "Explained": ("explained_share", Wording(subj, other, "have more single-frequency neurons than",
                                                 "have fewer single-frequency neurons than",
                                                 "share of neurons explained", digits=1, scale=100.0, unit="\\,\\%",
                                                 diff_unit=" percentage points")),
        "NKey": ("n_key", Wording(subj, other, "use more key frequencies than", "use fewer key frequencies than",
                                  "key frequencies", digits=1)),
        "Mi": ("mi", Wording("The trained clusters of the clustered models", "the equal blocks of the unclustered ones",
                             "say more about their neurons' frequencies than",
                             "say less about their neurons' frequencies than", "MI", unit=" bits")),
        "Specificity": ("abl_specificity", Wording("Ablations of trained clusters in clustered models",
                                                   "ablations of equal blocks in unclustered ones",
                                                   "are more frequency-specific than",
                                                   "are less frequency-specific than", "specificity")),
        "AblAcc": ("abl_test_acc_after", Wording("With one cluster ablated, the clustered models",
                                                 "the unclustered ones with one block ablated",
                                                 "are more accurate than", "are less accurate than", "test accuracy",
                                                 digits=1, scale=100.0, unit="\\,\\%",
                                                 diff_unit=" percentage points")),
    }
    for name, (key, wording) in sentences.items():
        m.add(f"ModAdd{name}Sentence", _sentence(study, key, wording))
    m.add("ModAddTable", summary_table_tex(study, lam))
    rows = [modulus_row(study)] + list(study.context.get("other_moduli", []))
    m.add("ModAddModuli", ", ".join(str(r["p"]) for r in rows))
    m.add("ModAddNModuliText", count_noun(len(rows), "modulus", "moduli"))
    m.add("ModAddModuliTable", moduli_table(rows))
    m.add("ModAddModuliSentence", moduli_sentence(rows))
    return m


def summary_table_tex(study: StudyResult, lam: float) -> str:
    """A booktabs table of the headline numbers, unclustered against clustered (means ± 95 % half-widths)."""
    rows = [("steps to test accuracy " + f"{study.study['stop_at']:g}", "steps", 0, False),
            ("seconds to it", "seconds", 1, False), ("test accuracy (\\%)", "test_acc", 1, True),
            ("$C(W_{\\mathrm{in}})$", "c_in", 3, False), ("$C(W_{\\mathrm{out}})$", "c_out", 3, False),
            ("key frequencies", "n_key", 1, False), ("neurons explained (\\%)", "explained_share", 1, True),
            ("logit power at key frequencies (\\%)", "logit_key_share", 1, True),
            ("MI(cluster, frequency), bits", "mi", 2, False), ("\\quad shuffled null", "mi_null", 2, False),
            ("MI of spectral clusters, bits", "spectral_mi", 2, False),
            ("\\quad shuffled null", "spectral_mi_null", 2, False),
            ("ablation specificity", "abl_specificity", 2, False),
            ("\\quad random sets", "control_specificity", 2, False),
            ("test accuracy, one cluster off (\\%)", "abl_test_acc_after", 1, True),
            ("\\quad random sets (\\%)", "control_test_acc_after", 1, True)]
    body = []
    for label, key, digits, percent in rows:
        cells = []
        for v in (0.0, lam):
            if v != 0 and key.startswith("spectral"):  # they find the trained blocks again: a check, not a result
                cells.append("--")
                continue
            vals = seed_column(study.rows, key, v)
            vals = [100 * x for x in vals] if percent else vals
            cells.append(f"${pm_values(vals, digits)}$" if vals else "n/a")
        body.append([label, *cells])
    return table(["", "unclustered ($\\lambda=0$)", f"clustered ($\\lambda={lam:g}$)"], body, "lrr")


MODULUS_WORDS = Wording("The trained clusters of the clustered models",
                        "the spectral clusters of the unclustered models",
                        "say more about their neurons' frequencies than",
                        "say less about their neurons' frequencies than", "MI", unit=" bits")


def modulus_verdict(row: Mapping[str, Any]) -> Verdict | None:
    """One modulus's trained clusters against the unclustered models' post-hoc clusters, paired by
    seed (exploratory); None with fewer than two seeds defined in both."""
    a, b = row["mi_trained"], row["mi_spectral_unclustered"]
    if sum(x == x and y == y for x, y in zip(a, b)) < 2:
        return None
    return paired(dict(enumerate(a)), dict(enumerate(b)), MODULUS_WORDS)


def moduli_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per modulus (the section's first): runs generalised, key frequencies and the MI of trained
    against post-hoc clusters with the verdict (the first modulus's the primary one, the others
    exploratory)."""
    body = []
    for i, r in enumerate(rows):
        v = modulus_verdict(r)
        # the section's own modulus is the primary comparison: its cell is the Holm-corrected verdict
        cell = "\\ClaimModaddMiCell" if i == 0 else "--" if v is None else v.cell()
        body.append([str(r["p"]), f"{r['generalised']}/{r['runs']}", pm_values(r["n_key"]["unclustered"], 1),
                     pm_values(r["n_key"]["clustered"], 1), pm_values(r["mi_spectral_unclustered"]),
                     pm_values(r["mi_trained"]), cell])
    return table(["$p$", "generalised", "key freq.\\ ($\\lambda=0$)", "key freq.\\ (clustered)",
                  "MI, found ($\\lambda=0$)", "MI, trained", "trained vs.\\ found"], body, "rrrrrrl")


def moduli_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
    """The trained-against-found comparison at every modulus after the first, whole sentences."""
    if len(rows) < 2:
        return "This run studies one modulus only."
    out = []
    for r in rows[1:]:
        v = modulus_verdict(r)
        out.append(f"At $p={r['p']}$, {r['generalised']} of {r['runs']} runs generalise. " +
                   (v.sentence() if v is not None else
                    "Too few seeds have both MIs defined there to compare the two kinds of cluster."))
    return " ".join(out)


def write_modadd_numbers(macros: Macros, out_dir: str | os.PathLike[str]) -> Path:
    """``modadd.tex`` (the stage's macros, :func:`modadd_macros`) in ``out_dir``."""
    return write_macros(Path(out_dir) / "modadd.tex", macros.items, MODADD_SOURCE)
