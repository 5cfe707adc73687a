"""How the paper turns a comparison into a sentence: one rule per comparison, a declared primary
family corrected by Holm--Bonferroni, equivalence only from an equivalence test.

* :data:`PRIMARY` declares, before any data is read, the paper's primary comparisons: what is
  compared with what, by which test (paired where the two settings share a seed's
  initialisation and data order, else Welch), on which scale, and the equivalence margin. It is
  code, so it is fixed before a run and a change to it shows in the history.
* A stage writes the seeds' values of the primary comparisons it measures
  (:func:`write_records`, ``generated/claims_<stage>.json``); :func:`write_claims` reads them all
  when the paper is compiled, corrects the family's p-values together (Holm) and writes
  ``generated/claims.tex``: for each comparison its sentence, its verdict and its table cell,
  and the table of the whole family. A primary sentence and its table cell are two renderings of
  one :class:`Verdict`, so they cannot disagree.
* Every other comparison in the paper is exploratory: :func:`exploratory` gives a
  :class:`Verdict` whose sentence says so and carries its uncorrected p-value.

Verdicts: 'higher' / 'lower' when the (corrected) test rejects equality at :data:`ALPHA`;
'equivalent' when it does not and the equivalence test (two one-sided tests, TOST, against the
declared margin) rejects a difference as large as the margin; otherwise 'inconclusive', and the
sentence says how large a difference the data could have missed (the farther bound of the 95 %
interval of the difference).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modclust.core.io import write_atomic
from modclust.core.stats import Contrast, Interval, contrast, holm
from modclust.paper.latex import Macros, generated_header, num, p_text, pm, table

ALPHA = 0.05
"""The level of every test (two-sided), of the Holm correction and of the equivalence tests."""

SOURCE = "the primary comparisons, modclust.paper.claims"
RULE_TEXT = {"paired": "paired $t$-test", "welch": "Welch's $t$-test"}
VERDICTS = ("higher", "lower", "equivalent", "inconclusive")


@dataclass(frozen=True)
class Wording:
    """How a comparison reads: "<subject> <higher|lower> <other> (<quantity> a against b; ...)".

    ``subject`` is a plural noun phrase with a capital ("The clustered models"); ``higher`` and
    ``lower`` are predicates ("are more accurate than"); the inconclusive and equivalent forms
    are built from ``quantity`` ("test accuracy"). ``scale``, ``digits`` and ``unit`` format the
    values, ``diff_unit`` their difference (e.g. percentage points for a percentage).
    """

    subject: str
    other: str
    higher: str
    lower: str
    quantity: str
    digits: int = 2
    scale: float = 1.0
    unit: str = ""
    diff_unit: str | None = None

    def value(self, x: float) -> str:
        return f"{num(x * self.scale, self.digits)}{self.unit}"


@dataclass(frozen=True)
class Declared:
    """One primary comparison, declared before the data is read.

    ``key`` names its macros (``\\Claim<key>Sentence``); ``rule`` is 'paired' or 'welch'; ``margin`` the equivalence margin in the values' unit (a
    ratio above 1 with ``log``, where sizes are compared as log ratios); ``question`` the row of
    the primary table.
    """

    key: str
    question: str
    rule: str
    margin: float
    wording: Wording
    log: bool = False


PCT = {"digits": 1, "scale": 100.0, "unit": "\\,\\%", "diff_unit": " percentage points"}
SIZE = {"digits": 0, "unit": " weights"}
PRIMARY: tuple[Declared, ...] = (
    Declared("Acc", "MLP test accuracy (points)", "paired", 0.005,
             Wording("The clustered models", "the unclustered ones", "are more accurate than",
                     "are less accurate than", "test accuracy", **{**PCT, "digits": 2})),
    Declared("Off", "MLP accuracy, one cluster OFF (points)", "paired", 0.05,
             Wording("With one cluster OFF, the clustered models", "the unclustered models with the same blocks zeroed",
                     "keep more accuracy than", "keep less accuracy than", "mean accuracy", **PCT)),
    Declared("On", "MLP accuracy, one cluster ON (points)", "paired", 0.05,
             Wording("With a single cluster ON, the clustered models", "the unclustered ones",
                     "keep more accuracy than", "keep less accuracy than", "mean accuracy", **PCT)),
    Declared("Sem", "MLP label semanticity of fc2", "paired", 0.05,
             Wording("The units of fc2 in the clustered models", "those of the unclustered ones",
                     "are more label-specialised than", "are less label-specialised than", "label semanticity",
                     digits=3)),
    Declared("CircuitNone", "MLP circuit size, blocks / none",
             "paired", 1.25,
             Wording("The clustered models' circuits", "those of the unclustered models", "are larger than",
                     "are smaller than", "circuit size", **SIZE), log=True),
    Declared("CircuitRandomMask", "MLP circuit size, blocks / random mask", "paired", 1.25,
             Wording("The clustered models' circuits", "those of the random-mask models", "are larger than",
                     "are smaller than", "circuit size", **SIZE), log=True),
    Declared("CircuitLOne", "MLP circuit size, blocks / L1",
             "paired", 1.25,
             Wording("The clustered models' circuits", "those of the L1 models", "are larger than",
                     "are smaller than", "circuit size", **SIZE), log=True),
    Declared("CnnAccMnist", "CNN test accuracy on MNIST (points)", "paired", 0.01,
             Wording("On MNIST, the clustered CNNs", "the unclustered ones", "are more accurate than",
                     "are less accurate than", "test accuracy", **PCT)),
    Declared("CnnAccFashion", "CNN test accuracy on Fashion-MNIST (points)", "paired", 0.01,
             Wording("On Fashion-MNIST, the clustered CNNs", "the unclustered ones", "are more accurate than",
                     "are less accurate than", "test accuracy", **PCT)),
    Declared("CnnCircuitMnist", "CNN circuit size on MNIST", "paired", 1.25,
             Wording("On MNIST, the circuits of the clustered CNNs", "those of the unclustered ones",
                     "are larger than", "are smaller than", "weights kept per label", **SIZE), log=True),
    Declared("CnnCircuitFashion", "CNN circuit size on Fashion-MNIST", "paired",
             1.25,
             Wording("On Fashion-MNIST, the circuits of the clustered CNNs", "those of the unclustered ones",
                     "are larger than", "are smaller than", "weights kept per label", **SIZE), log=True),
    Declared("ModaddMi", "modular addition: MI of trained / found clusters (bits)", "paired", 0.2,
             Wording("The trained clusters of the clustered models", "the spectral clusters found after training in "
                     "the unclustered models", "say more about their neurons' frequencies than",
                     "say less about their neurons' frequencies than", "mutual information with the frequency",
                     unit=" bits")),
)
DECLARED = {d.key: d for d in PRIMARY}


# -- one comparison ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """A comparison and what may be said of it; its sentence and table cell read the same fields.

    ``p`` is the p-value the decision uses: Holm-adjusted for a primary comparison (``family``
    its size), as measured for an exploratory one (``family`` 0); likewise ``tost_p``.
    """

    test: Contrast
    wording: Wording
    p: float
    tost_p: float
    family: int = 0

    @property
    def primary(self) -> bool:
        return self.family > 0

    @property
    def direction(self) -> str:
        if self.p < ALPHA:
            return "higher" if self.test.diff.mean > 0 else "lower"
        if self.tost_p < ALPHA:
            return "equivalent"
        return "inconclusive"

    # -- pieces ---------------------------------------------------------------------------------
    def predicate(self) -> str:
        """The verb phrase the verdict allows: "are less accurate than", "are equivalent in test
        accuracy to", "are not distinguishable in test accuracy from"."""
        w = self.wording
        return {"higher": w.higher, "lower": w.lower,
                "equivalent": f"are equivalent in {w.quantity} to",
                "inconclusive": f"are not distinguishable in {w.quantity} from"}[self.direction]

    def difference(self, compact: bool = False) -> str:
        """The effect with its 95 % interval: "difference −0.32 [−0.51, −0.13] percentage points"
        or, on a log scale, "ratio 0.68 [0.61, 0.76]"; ``compact`` for a table, without the words."""
        t, w = self.test, self.wording
        if t.log:
            lo, hi = (math.exp(t.diff.lo), math.exp(t.diff.hi)) if t.diff.n > 1 else (math.nan, math.nan)
            text = f"{num(math.exp(t.diff.mean), 2)} [{num(lo, 2)}, {num(hi, 2)}]"
            return f"$\\times${text}" if compact else f"ratio {text}"
        d = t.diff
        text = f"{num(d.mean * w.scale, w.digits)} [{num(d.lo * w.scale, w.digits)}, {num(d.hi * w.scale, w.digits)}]"
        return text if compact else f"difference {text}{w.unit if w.diff_unit is None else w.diff_unit}"

    def reach(self) -> str:
        """How large a difference the data leave possible, in words."""
        t, w = self.test, self.wording
        if t.log:
            r = t.reach
            return f"a ratio as far from 1 as {num(r, 2)} (or {num(1 / r, 2)})"
        unit = w.unit if w.diff_unit is None else w.diff_unit
        return f"a difference as large as {num(t.reach * w.scale, w.digits)}{unit}"

    def margin(self, compact: bool = False) -> str:
        """The margin of equivalence: "±0.50 percentage points", "a ratio between 0.80 and 1.25";
        ``compact`` for a table: "±0.50", "0.80--1.25"."""
        t, w = self.test, self.wording
        if t.log:
            lo, hi = num(1 / t.margin, 2), num(t.margin, 2)
            return f"{lo}--{hi}" if compact else f"a ratio between {lo} and {hi}"
        unit = "" if compact else w.unit if w.diff_unit is None else w.diff_unit
        return f"$\\pm${num(t.margin * w.scale, w.digits)}{unit}"

    def p_part(self) -> str:
        rule = RULE_TEXT[self.test.rule]
        if self.primary:
            text = f"{rule}, Holm-adjusted {p_text(self.p)} over the {self.family} primary comparisons"
            if self.direction == "equivalent":
                text += f", equivalence test Holm-adjusted {p_text(self.tost_p)}"
            return text
        return f"{rule} {p_text(self.p)}, exploratory"

    def seeds(self) -> str:
        t = self.test
        return f"{t.diff.n} paired seeds" if t.rule == "paired" else f"{t.a.n} and {t.b.n} seeds"

    # -- renderings -----------------------------------------------------------------------------
    def sentence(self) -> str:
        """One whole sentence, capitalised and punctuated."""
        w = self.wording
        body = (f"{w.quantity} {w.value(self.test.a.mean)} against {w.value(self.test.b.mean)}; "
                f"{self.difference()}, {self.seeds()}; {self.p_part()}")
        tail = ""
        if self.direction == "inconclusive":
            tail = f" The data cannot tell them apart: {self.reach()} is within the interval"
            if self.test.margin == self.test.margin:
                tail += f", and they do not show equivalence within {self.margin()}"
            tail += "."
        elif self.direction == "equivalent":
            tail = f" The margin of equivalence is {self.margin()}, declared before the data were read."
        return f"{w.subject} {self.predicate()} {w.other} ({body}).{tail}"

    def clause(self, other: str, words: tuple[str, str, str], digits: int = 2, scale: float = 1.0, unit: str = "",
               quantity: str = "") -> str:
        """A clause for inside a sentence: ``"<verb> <other> (<a> against <b>, paired p=..., exploratory)"``,
        the verb chosen by the direction (``words`` = its higher, lower and inconclusive forms), e.g.
        "less accurate than the unclustered ones (78.9 % against 86.6 %, paired $p=0.007$, exploratory)"."""
        verb = dict(zip(("higher", "lower", "inconclusive"), words))[self.direction]
        what = f"{quantity} " if quantity else ""
        t = self.test
        return (f"{verb} {other} ({what}{pm(t.a, digits, scale)}{unit} against {pm(t.b, digits, scale)}{unit}, "
                f"paired {p_text(self.p)}, exploratory)")

    def word(self) -> str:
        """The verdict in a word or two: "higher", "lower", "equivalent", "cannot tell"."""
        return {"inconclusive": "cannot tell"}.get(self.direction, self.direction)

    def cell(self) -> str:
        """The verdict as a table cell: "lower (Holm $p=0.003$)" for a primary comparison, "lower
        ($p=0.003$, expl.)" for an exploratory one."""
        return f"{self.word()} (Holm {p_text(self.p)})" if self.primary else f"{self.word()} ({p_text(self.p)}, expl.)"


def against_clause(entry: Mapping[str, Any], words: Mapping[str, str], what: str, digits: int = 2, unit: str = "",
                   scale: float = 1.0) -> str:
    """``words[direction]`` for a measure against its null, then the interval of the per-run difference.

    ``entry`` is one measure's entry of :func:`modclust.experiments.study.against` (the direction
    is :func:`modclust.core.stats.direction` of the difference's 95 % interval over seeds);
    ``words`` maps each direction to a phrase such as "above its shuffled null".
    """
    if entry["difference"] is None:
        return f"{words['indistinguishable']} (undefined for every run)"
    iv = Interval(**entry["difference"])
    seeds = f"{iv.n} seed{'s' if iv.n != 1 else ''}"
    return f"{words[entry['direction']]} ({what} {pm(iv, digits, scale)}{unit}, {seeds})"


def exploratory(a: Sequence[float], b: Sequence[float], wording: Wording, rule: str = "paired",
                log: bool = False) -> Verdict:
    """A comparison outside the primary family: its own p-value, said to be exploratory."""
    t = contrast(a, b, rule, log=log)
    return Verdict(t, wording, t.p, math.nan)


def primary_family(tests: Mapping[str, Contrast], missing: Mapping[str, str] | None = None) -> dict[str, Verdict]:
    """The declared comparisons' verdicts, p-values Holm-corrected over the family of those measured.

    Every declared key must be in ``tests`` or in ``missing`` (key -> why this run cannot measure
    it): a key that is simply absent would shrink the family silently.
    """
    missing = dict(missing or {})
    absent = [d.key for d in PRIMARY if d.key not in tests and d.key not in missing]
    extra = [k for k in list(tests) + list(missing) if k not in DECLARED]
    if absent or extra:
        raise ValueError(f"the primary family is declared in modclust.paper.claims.PRIMARY; no record of: {absent}, "
                         f"undeclared: {extra}")
    keys = [d.key for d in PRIMARY if d.key in tests]
    p = holm([tests[k].p for k in keys])
    tost = holm([tests[k].tost_p for k in keys])
    return {k: Verdict(tests[k], DECLARED[k].wording, p[i], tost[i], len(keys)) for i, k in enumerate(keys)}


# -- records: a stage's values, the family at compile time -------------------------------------

def record(key: str, a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """The seeds' values of declared comparison ``key`` (settings a and b, one entry per seed in
    the same seed order). Undefined values (nan) are dropped, with their partner for a paired
    comparison; fewer than two left make the record say why instead (:func:`not_measured`)."""
    if key not in DECLARED:
        raise ValueError(f"{key!r} is not a declared primary comparison (modclust.paper.claims.PRIMARY)")
    d = DECLARED[key]
    if d.rule == "paired":
        if len(a) != len(b):
            raise ValueError(f"{key}: a paired comparison needs one value per seed in both settings, "
                             f"got {len(a)} and {len(b)}")
        pairs = [(x, y) for x, y in zip(a, b) if x == x and y == y]
        a, b = [x for x, _ in pairs], [y for _, y in pairs]
    else:
        a, b = [x for x in a if x == x], [y for y in b if y == y]
    if min(len(a), len(b)) < 2:
        return not_measured(key, "fewer than two seeds have a value in both settings")
    contrast(a, b, d.rule, d.margin, d.log)  # fails now, where the data is, if the values cannot be tested
    return {"key": key, "a": [float(v) for v in a], "b": [float(v) for v in b]}


def not_measured(key: str, why: str) -> dict[str, Any]:
    """A declared comparison this run cannot make (e.g. a preset without its dataset), and why."""
    if key not in DECLARED:
        raise ValueError(f"{key!r} is not a declared primary comparison (modclust.paper.claims.PRIMARY)")
    return {"key": key, "missing": why}


def tests_of(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Contrast], dict[str, str]]:
    """The tests of the measured records and the reasons of the others, each key once."""
    out: dict[str, Contrast] = {}
    missing: dict[str, str] = {}
    for r in records:
        if r["key"] in out or r["key"] in missing:
            raise ValueError(f"primary comparison {r['key']} was recorded twice")
        if "missing" in r:
            missing[r["key"]] = r["missing"]
            continue
        d = DECLARED[r["key"]]
        out[r["key"]] = contrast(r["a"], r["b"], d.rule, d.margin, d.log)
    return out, missing


def write_records(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> Path:
    """A stage's primary comparisons as JSON (``generated/claims_<stage>.json``)."""
    text = json.dumps(list(records), indent=1)
    return write_atomic(path, lambda tmp: tmp.write_text(text))


# -- the paper's headline: abstract and conclusion, whole sentences from the verdicts ----------

def short(v: Verdict) -> str:
    """The verdict in one short sentence, for the abstract: subject, predicate, effect, p."""
    w = v.wording
    test = (f"equivalence test Holm-adjusted {p_text(v.tost_p)}" if v.direction == "equivalent"
            else f"Holm-adjusted {p_text(v.p)}")
    return f"{w.subject} {v.predicate()} {w.other} ({v.difference()}; {test})."


def sparsity_inference(verdicts: Mapping[str, Verdict]) -> str:
    """What the circuit comparisons with the controls allow one to say about modularity, chosen
    by their verdicts (never a fixed sentence around a generated verb)."""
    none, mask = verdicts.get("CircuitNone"), verdicts.get("CircuitRandomMask")
    if none is None or mask is None:
        return "The controls that separate modularity from sparsity were not measured in this run."
    if none.direction != "lower":
        return ("With the converged recipe the clustered models' circuits are not shown to be smaller than the "
                "unclustered ones' at equal faithfulness, so there is no smaller circuit to attribute.")
    return {
        "lower": "The clustered models' circuits are smaller than those of an equally sparse network without "
                 "blocks, so the block structure, not only the sparsity, makes them smaller.",
        "equivalent": "The clustered models' circuits are equivalent in size to those of an equally sparse network "
                      "without blocks: the smaller circuits are what sparsity gives, not modularity.",
        "inconclusive": "The smaller circuits cannot be credited to the block structure: an equally sparse network "
                        "without blocks is not distinguishable from the clustered models in circuit size, and "
                        "equivalence is not shown either.",
        "higher": "An equally sparse network without blocks has smaller circuits than the clustered models, so the "
                  "smaller circuits are sparsity's doing and the blocks cost size.",
    }[mask.direction]


GROUPS = (("Accuracy", ("Acc",)), ("Separable clusters", ("Off", "On")), ("Specialised units", ("Sem",)),
          ("Smaller circuits", ("CircuitNone", "CircuitRandomMask", "CircuitLOne")),
          ("A CNN", ("CnnAccMnist", "CnnAccFashion", "CnnCircuitMnist", "CnnCircuitFashion")),
          ("Modular addition", ("ModaddMi",)))
"""The primary comparisons as the conclusion groups them, each group under the notebook's hope it tests."""


def headline(verdicts: Mapping[str, Verdict], missing: Mapping[str, str], full: bool) -> str:
    """The primary family's results in order, whole sentences, with the sparsity inference after
    the circuit comparisons; ``full`` gives each group a run-in title and full sentences (the
    conclusion), otherwise short ones (the abstract)."""
    parts = []
    for title, keys in GROUPS:
        said = [(verdicts[k].sentence() if full else short(verdicts[k])) for k in keys if k in verdicts]
        said += [f"The primary comparison of {DECLARED[k].question.split(' (')[0]} was not measured ({missing[k]})."
                 for k in keys if k in missing and full]
        if "CircuitNone" in keys:
            said.append(sparsity_inference(verdicts))
        if said:
            parts.append((f"\\emph{{{title}.}} " if full else "") + " ".join(said))
    return " ".join(parts)


def tally(verdicts: Mapping[str, Verdict], missing: Mapping[str, str]) -> str:
    """How the family came out, e.g. "Of the 12 primary comparisons, 5 show a difference after the
    Holm correction, 1 shows equivalence within their declared margin, and 6 cannot tell."."""
    n = {d: sum(v.direction == d for v in verdicts.values()) for d in VERDICTS}
    diff = n["higher"] + n["lower"]
    measured = f" that this run measures ({len(missing)} not measured)" if missing else ""
    return (f"Of the {len(verdicts)} primary comparisons{measured}, {diff} show a difference after the Holm "
            f"correction, {n['equivalent']} show equivalence within their declared margin, and "
            f"{n['inconclusive']} cannot tell.")


def claims_macros(verdicts: Mapping[str, Verdict], missing: Mapping[str, str]) -> Macros:
    """``\\Claim<key>Sentence`` and ``...Cell`` per comparison, the family's size and tally, the
    abstract's and conclusion's findings and the level."""
    m = Macros(source=SOURCE)
    m.add("NPrimary", len(verdicts))
    m.add("Alpha", f"{ALPHA:g}")
    for key, v in verdicts.items():
        m.add(f"Claim{key}Sentence", v.sentence())
        m.add(f"Claim{key}Cell", v.cell())
    m.add("AbstractFindings", headline(verdicts, missing, full=False))
    m.add("ConclusionFindings", headline(verdicts, missing, full=True))
    m.add("PrimaryTally", tally(verdicts, missing))
    m.add("NDeclared", len(PRIMARY))
    for key, why in missing.items():
        q = DECLARED[key].question.split(" (")[0]
        m.add(f"Claim{key}Sentence", f"This run does not measure the primary comparison of {q} ({why}).")
        m.add(f"Claim{key}Cell", "not measured")
    return m


def claims_table(verdicts: Mapping[str, Verdict], missing: Mapping[str, str]) -> str:
    """The primary family as a table: effect and interval, margin, raw and Holm-adjusted p, verdict."""
    rows = []
    for d in PRIMARY:  # in the declared order
        if d.key in verdicts:
            v = verdicts[d.key]
            rows.append([d.question, d.rule, v.difference(compact=True), v.margin(compact=True), p_number(v.test.p),
                         p_number(v.p), p_number(v.tost_p), v.word()])
        elif d.key in missing:
            rows.append([d.question, d.rule, f"not measured: {missing[d.key]}", "--", "--", "--", "--", "--"])
    return table(["comparison", "test", "effect [95\\,\\% CI]", "margin", "$p$", "Holm $p$", "Holm TOST $p$",
                  "verdict"], rows, align="p{5.2cm}lp{3.0cm}lrrrl")


def p_number(p: float) -> str:
    """A p-value as a bare table entry (the column says what it is): '0.012', '<0.001', '--' for nan."""
    return "--" if p != p else "$<$0.001" if p < 0.001 else f"{p:.3f}"


def write_claims(generated: str | os.PathLike[str]) -> list[Path]:
    """Read every ``claims_*.json`` in ``generated``, correct the family, write ``claims.tex`` and
    ``table_claims.tex`` there (called when the paper is compiled, after every stage)."""
    folder = Path(generated)
    records = [r for f in sorted(folder.glob("claims_*.json")) for r in json.loads(f.read_text())]
    tests, missing = tests_of(records)
    verdicts = primary_family(tests, missing)
    return [claims_macros(verdicts, missing).write(folder / "claims.tex"),
            write_atomic(folder / "table_claims.tex",
                         lambda tmp: tmp.write_text(generated_header(SOURCE) + "\n"
                                                    + claims_table(verdicts, missing)))]
