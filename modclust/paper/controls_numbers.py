"""The section "Modularity or sparsity?": its table, macros and sentences, from stages 1 and 4.

Everything comes from ``train.json`` (the controls' records and L1 searches) and the
``controls`` part of ``circuits.json`` (:func:`modclust.experiments.controls.summarise_controls`).
Each sentence that states a direction is a :class:`modclust.paper.claims.Verdict` of blocks
against a control, paired by seed on a log scale: the converged recipe under zero ablation is
the paper's primary comparison (its values go to ``claims_05_numbers.json``), the rest is
exploratory and says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modclust.core.stats import Interval, direction
from modclust.experiments.stage_results import CircuitResults, TrainingResults
from modclust.paper.claims import Verdict, Wording, exploratory, not_measured, record
from modclust.paper.latex import Macros, generated_header, num, pm, table, write_text
from modclust.paper.numbers import paired_values

CONTROLS_SOURCE = "notebooks/05_numbers.ipynb"

SETTING_NAMES = {"blocks": "blocks (clustered)", "random_mask": "random mask", "l1": "L1",
                 "none": "none ($\\lambda=0$)", "random_init": "untrained", "shuffled_labels": "shuffled labels"}
RECIPE_NAMES = {"seed": "notebook's", "converged": "converged"}
_RECIPE_TAG = {"seed": "Seed", "converged": "Converged"}


def _iv(d: Mapping[str, Any] | None) -> Interval | None:
    return None if d is None else Interval(d["mean"], d["lo"], d["hi"], d["std"], int(d["n"]))


def _pm(d: Mapping[str, Any] | None, digits: int = 0, scale: float = 1.0) -> str:
    iv = _iv(d)
    return "--" if iv is None else pm(iv, digits, scale)


def _entry(summary: Mapping[str, Any], setting: str, recipe: str) -> Mapping[str, Any] | None:
    return next((e for e in summary["table"] if e["setting"] == setting and e["recipe"] == recipe), None)


PRIMARY_RECIPE, PRIMARY_ABLATION = "converged", "zero"
"""The primary comparisons of this section (``claims.PRIMARY``: CircuitRandomMask, CircuitLOne,
CircuitNone) are the converged recipe's, under zero ablation; the other recipe and ablation are
exploratory."""
OTHERS = (("random_mask", "the random-mask models", "CircuitRandomMask"), ("l1", "the L1 models", "CircuitLOne"),
          ("none", "the unclustered models", "CircuitNone"))


def matched_sizes(summary: Mapping[str, Any], setting: str, recipe: str, ablation: str) -> dict[int, float]:
    """Each seed's circuit size at the matched faithfulness (nan where its sweep misses the level)."""
    e = _entry(summary, setting, recipe)
    if e is None or ablation not in e:
        return {}
    return {int(p["seed"]): float(p["matched_size"]) for p in e[ablation]["per_seed"]}


def _pairs(summary: Mapping[str, Any], recipe: str, ablation: str, other: str) -> tuple[list[float], list[float]]:
    xs, ys = paired_values(matched_sizes(summary, "blocks", recipe, ablation),
                           matched_sizes(summary, other, recipe, ablation))
    keep = [(x, y) for x, y in zip(xs, ys) if x == x and y == y]
    return [x for x, _ in keep], [y for _, y in keep]


def control_verdict(summary: Mapping[str, Any], recipe: str, ablation: str, other: str, name: str,
                    how: str) -> Verdict | None:
    """Blocks against ``other`` at matched faithfulness, paired by seed on a log scale (exploratory);
    None with fewer than two seeds reaching the level in both."""
    xs, ys = _pairs(summary, recipe, ablation, other)
    if len(xs) < 2:
        return None
    return exploratory(xs, ys, Wording(f"With {how}, the clustered models' circuits", f"those of {name}",
                                       "are larger than", "are smaller than", "circuit size", digits=0,
                                       unit=" weights"), "paired", log=True)


def primary_records(circ: CircuitResults) -> list[dict[str, Any]]:
    """The seeds' matched circuit sizes of this section's primary comparisons (blocks against each
    control, converged recipe, zero ablation)."""
    summary = (circ.controls or {}).get("summary") or {"table": []}
    out = []
    for other, _, key in OTHERS:
        xs, ys = paired_values(matched_sizes(summary, "blocks", PRIMARY_RECIPE, PRIMARY_ABLATION),
                               matched_sizes(summary, other, PRIMARY_RECIPE, PRIMARY_ABLATION))
        out.append(record(key, xs, ys) if xs else not_measured(key, "the converged recipe was not run"))
    return out


def controls_numbers(train: TrainingResults, circ: CircuitResults) -> tuple[Macros, dict[str, str]]:
    """The section's macros and its two tables (``table_controls``, ``table_controls_structure``)."""
    m = Macros(source=CONTROLS_SOURCE)
    summary = (circ.controls or {}).get("summary")
    recs = train.controls
    if not summary or not recs:
        raise ValueError("circuits.json holds no controls: run stage 1 with control_settings and stage 4 again "
                         "(every preset of the paper has them)")
    level = float(summary["level"])
    recipes = list(dict.fromkeys(r["recipe"] for r in recs))
    m.add("ControlSeeds", len({r["seed"] for r in recs}))
    m.add("ControlMatchLevel", f"{100 * level:g}\\,\\%")
    m.add("LiveCutoff", f"{100 * float(train.live_cutoff):g}\\,\\%")
    for recipe in ("seed", "converged"):
        tag = _RECIPE_TAG[recipe]
        if recipe not in recipes:  # e.g. converged_lr = 0: the section still reads, saying so
            for name in ("Lr", "LOneStrength", "LOneDensity", "LOneTarget", "LOneProbes", "AccNone", "AccBlocks"):
                m.add(f"{name}{tag}", "n/a")
            m.add(f"Controls{tag}ZeroSentences", f"The {RECIPE_NAMES[recipe]} recipe was not run.")
            m.add(f"Controls{tag}MeanSentences", "")
            continue
        m.add(f"Lr{tag}", f"{float(train.recipes[recipe]):g}")
        s = train.l1_search.get(recipe)
        m.add(f"LOneStrength{tag}", "n/a" if s is None else f"{s['strength']:.3g}")
        m.add(f"LOneDensity{tag}", "n/a" if s is None else num(100 * s["density"], 1) + "\\,\\%")
        m.add(f"LOneTarget{tag}", "n/a" if s is None else num(100 * s["target"], 1) + "\\,\\%")
        m.add(f"LOneProbes{tag}", 0 if s is None else len(s["probes"]))
        for setting in ("none", "blocks"):
            e = _entry(summary, setting, recipe)
            word = "None" if setting == "none" else "Blocks"
            m.add(f"Acc{word}{tag}", _pm(e["test_acc"] if e else None, 1, 100) + "\\,\\%")
        for ablation, how in (("zero", "pruned weights set to zero"), ("mean", "pruned weights replaced by their mean")):
            m.add(f"Controls{tag}{ablation.capitalize()}Sentences", ablation_sentences(summary, recipe, ablation, how))
    m.add("NothingSentence", nothing_sentence(summary))
    m.add("NothingVerdict", nothing_verdict(summary))
    m.add("ClusterShareSentence", cluster_share_sentence(summary, recipes))
    m.add("OverlapSentence", overlap_sentence(summary, recipes))
    return m, {"table_controls": controls_table(summary), "table_controls_structure": structure_table(summary)}


def ablation_sentences(summary: Mapping[str, Any], recipe: str, ablation: str, how: str) -> str:
    """The blocks against each control under one recipe and ablation: one sentence per control, or
    one sentence saying that too few seeds reach the level to compare any. The primary recipe and
    ablation give the primary comparisons' sentences (``\\Claim...Sentence``, written at compile time)."""
    if (recipe, ablation) == (PRIMARY_RECIPE, PRIMARY_ABLATION):
        return " ".join(f"\\Claim{key}Sentence{{}}" for _, _, key in OTHERS)
    verdicts = [control_verdict(summary, recipe, ablation, other, name, how) for other, name, _ in OTHERS]
    if not any(verdicts):
        return f"With {how}, too few seeds reach the level in both settings to compare circuit sizes."
    return " ".join(v.sentence() for v in verdicts if v is not None)


def nothing_verdict(summary: Mapping[str, Any]) -> str:
    """One sentence: whether the greedy finder reached the matched level on any network with nothing to find."""
    level = f"{100 * float(summary['level']):g}\\,\\%"
    nothing = [e for e in summary["table"] if e["setting"] in ("random_init", "shuffled_labels") and "zero" in e]
    if not nothing:
        return "The circuit finders were not run on networks with nothing to find."
    hit = sum(e["zero"]["n_matched"] for e in nothing)
    total = sum(e["n"] for e in nothing)
    if hit == 0:
        return (f"On untrained networks and networks trained on shuffled labels, no threshold brings the greedy "
                f"circuits to {level} agreement, so the finder does not report such circuits where there are none.")
    return (f"On networks with nothing to find, the greedy circuits reach {level} agreement in {hit} of {total} "
            "networks, so the circuit sizes partly measure the finder itself.")


def nothing_sentence(summary: Mapping[str, Any]) -> str:
    """What the circuit finder reports on networks with nothing to find (untrained, shuffled labels)."""
    parts = []
    level = f"{100 * float(summary['level']):g}\\,\\%"
    for setting, what in (("random_init", "untrained networks"), ("shuffled_labels", "networks trained on shuffled labels")):
        for e in summary["table"]:
            if e["setting"] != setting or "zero" not in e:
                continue
            z = e["zero"]
            recipe = "" if setting == "random_init" else f" ({RECIPE_NAMES[e['recipe']]} recipe)"
            if z["n_matched"] == 0:
                parts.append(f"On the {what}{recipe}, no threshold brings the circuits to {level}: the most "
                             f"faithful reach {_pm(z['best_faithfulness'], 1, 100)}\\,\\% under zero ablation.")
            else:
                parts.append(f"On the {what}{recipe}, {z['n_matched']} of {e['n']} networks reach {level}, with "
                             f"circuits of {_pm(z['matched'], 0)} weights under zero ablation: there the finder "
                             f"reports circuits in networks with nothing to find.")
            if "mask" in e:
                b = _entry(summary, "blocks", e["recipe"])
                ref = ""
                if b is not None and "mask" in b:
                    ref = (f", against {_pm(b['mask']['size'], 0)} weights and "
                           f"{_pm(b['mask'][summary['match_on']], 1, 100)}\\,\\% on the clustered models")
                parts.append(f"Learned masks keep {_pm(e['mask']['size'], 0)} weights there, with balanced "
                             f"agreement {_pm(e['mask'][summary['match_on']], 1, 100)}\\,\\%{ref}.")
    return " ".join(parts) if parts else "No network with nothing to find was measured."


def cluster_share_sentence(summary: Mapping[str, Any], recipes: Sequence[str]) -> str:
    """Where a circuit's clustered-layer weights lie: its dominant block against the even-spread floor."""
    out = []
    for recipe in recipes:
        b, n = _entry(summary, "blocks", recipe), _entry(summary, "none", recipe)
        if b is None or b.get("dominant_share") is None:
            continue
        s = (f"With the {RECIPE_NAMES[recipe]} recipe, a clustered model's circuit keeps "
             f"{_pm(b['dominant_share'], 2)} of its weights of the clustered layer in its dominant block, against "
             f"{_pm(b['floor'], 2)} for a circuit spread over the blocks in proportion to their live weights")
        above = _iv(b.get("above_floor"))
        if above is not None:
            side = direction(above)
            s += (f" ({pm(above, 2)} {'above' if side == 'higher' else 'below' if side == 'lower' else 'from'} "
                  f"that floor, paired by seed{'' if side != 'indistinguishable' else ', which the seeds cannot tell from zero'})")
        if n is not None and n.get("dominant_share") is not None:
            s += (f"; an unclustered model's circuit keeps {_pm(n['dominant_share'], 2)} in one of the same blocks "
                  f"(floor {_pm(n['floor'], 2)})")
        s += (f". A search confined to one cluster would miss {_pm(_scaled(b['dominant_share'], -1.0, 1.0), 2)} of "
              "the clustered layer's part of such a circuit.")
        out.append(s)
    return " ".join(out) if out else "The clustered layer was not pruned, so where circuits lie was not measured."


def _scaled(d: Mapping[str, Any], a: float, b: float) -> dict[str, Any]:
    """The interval of a * x + b from that of x (a < 0 swaps the bounds)."""
    lo, hi = sorted((a * d["lo"] + b, a * d["hi"] + b))
    return {**d, "mean": a * d["mean"] + b, "lo": lo, "hi": hi, "std": abs(a) * d["std"]}


def overlap_sentence(summary: Mapping[str, Any], recipes: Sequence[str]) -> str:
    """Label-pair overlap of circuits against random subsets of the live weights of the same sizes."""
    out = []
    for recipe in recipes:
        cells = []
        for setting in ("blocks", "random_mask", "l1", "none"):
            e = _entry(summary, setting, recipe)
            if e is None or e.get("iou") is None:
                continue
            cells.append(f"{SETTING_NAMES[setting].split(' (')[0]} {_pm(e['iou'], 2)} "
                         f"(random subsets: {_pm(e['iou_random'], 2)})")
        if cells:
            out.append(f"With the {RECIPE_NAMES[recipe]} recipe, the mean IoU of two labels' circuits is "
                       + ", ".join(cells) + ".")
    return " ".join(out)


def controls_table(summary: Mapping[str, Any]) -> str:
    """One row per recipe and setting: accuracy, live density, circuit size at matched
    faithfulness (zero, mean; seeds that reach it) and the best faithfulness reached."""
    rows = []
    for e in summary["table"]:
        def matched(a: str) -> str:
            if a not in e:
                return "--"
            z = e[a]
            return f"{_pm(z['matched'], 0)} ({z['n_matched']}/{e['n']})" if z["n_matched"] else f"-- (0/{e['n']})"
        best = e.get("zero", {}).get("best_faithfulness")
        rows.append([*_row_names(e), _pm(e["test_acc"], 1, 100), _pm(e["live_density"], 2), matched("zero"),
                     matched("mean"), _pm(best, 1, 100)])
    header = ["recipe", "setting", "acc.\\ (\\%)", "live density", "size, zero abl.", "size, mean abl.",
              "best bal.\\ agr.\\ (\\%)"]
    return table(header, rows, align="ll" + "r" * (len(header) - 2))


def structure_table(summary: Mapping[str, Any]) -> str:
    """One row per recipe and setting, at the main threshold under zero ablation: the circuits'
    share of live weights, label-pair IoU (random subsets), dominant-block share (floor)."""
    rows = []
    for e in summary["table"]:
        dom = ("--" if e.get("dominant_share") is None
               else f"{_pm(e['dominant_share'], 2)} ({_pm(e['floor'], 2)})")
        iou = "--" if e.get("iou") is None else f"{_pm(e['iou'], 2)} ({_pm(e['iou_random'], 2)})"
        rows.append([*_row_names(e), _pm(e.get("live_share"), 2), iou, dom])
    header = ["recipe", "setting", "share of live weights", "IoU (random subsets)", "dominant block (floor)"]
    return table(header, rows, align="ll" + "r" * (len(header) - 2))


def _row_names(e: Mapping[str, Any]) -> list[str]:
    recipe = "--" if e["setting"] == "random_init" else RECIPE_NAMES.get(e["recipe"], e["recipe"])
    return [recipe, SETTING_NAMES.get(e["setting"], e["setting"])]


def write_controls_numbers(macros: Macros, tables: Mapping[str, str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``controls.tex`` (the macros) and ``table_controls.tex`` in ``out_dir``."""
    out = Path(out_dir)
    return [macros.write(out / "controls.tex"),
            *(write_text(out / f"{name}.tex", generated_header(CONTROLS_SOURCE) + "\n" + tex) for name, tex in tables.items())]
