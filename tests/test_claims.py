"""How numbers become sentences (modclust.paper.claims): verdicts, the declared primary family
and its files. The tests themselves (paired, Welch, TOST, Holm) are checked in test_stats.py."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from modclust.core.stats import contrast, holm
from modclust.paper import claims
from modclust.paper.claims import DECLARED, PRIMARY, Wording, exploratory, primary_family, record

WORDS = Wording("The clustered models", "the unclustered ones", "are more accurate than", "are less accurate than",
                "test accuracy", digits=1, scale=100.0, unit="\\,\\%", diff_unit=" percentage points")


@pytest.mark.parametrize("a, b, direction", [
    ([0.91, 0.92, 0.93, 0.92, 0.91], [0.80, 0.81, 0.79, 0.80, 0.82], "higher"),
    ([0.80, 0.81, 0.79, 0.80, 0.82], [0.91, 0.92, 0.93, 0.92, 0.91], "lower"),
    ([0.90, 0.80, 0.85, 0.95, 0.82], [0.86, 0.91, 0.81, 0.84, 0.88], "inconclusive"),
])
def test_the_sentence_follows_the_verdict(a, b, direction):
    v = exploratory(a, b, WORDS)
    assert v.direction == direction
    s = v.sentence()
    assert s[0].isupper() and s.endswith(".") and ".." not in s
    assert "exploratory" in s and "5 paired seeds" in s and "paired $t$-test" in s
    word = {"higher": "are more accurate than", "lower": "are less accurate than",
            "inconclusive": "are not distinguishable in test accuracy from"}[direction]
    assert word in s
    assert ("cannot tell" in s) == (direction == "inconclusive")
    assert "about as" not in s and "the same" not in s
    assert v.cell().startswith({"inconclusive": "cannot tell"}.get(direction, direction))


def _family(shift: float = 0.0, **override):
    rng = np.random.default_rng(2)
    tests = {}
    for d in PRIMARY:
        a = rng.uniform(1, 2, 5)
        b = a * (1.5 if d.log else 1) + (0 if d.log else shift) + rng.normal(0, 0.001, 5)
        tests[d.key] = contrast(*(override.get(d.key) or (a, b)), d.rule, d.margin, d.log)
    return tests


def test_the_primary_family_is_corrected_together():
    tests = _family(0.3)
    verdicts = primary_family(tests)
    raw = [tests[d.key].p for d in PRIMARY]
    assert [verdicts[d.key].p for d in PRIMARY] == pytest.approx(holm(raw))
    assert all(v.family == len(PRIMARY) for v in verdicts.values())
    for v in verdicts.values():
        assert "Holm-adjusted" in v.sentence() and "exploratory" not in v.sentence()


def test_a_missing_comparison_is_an_error_unless_said_why():
    tests = _family()
    del tests["Acc"]
    with pytest.raises(ValueError, match="Acc"):
        primary_family(tests)
    verdicts = primary_family(tests, {"Acc": "not run"})
    assert "Acc" not in verdicts and all(v.family == len(PRIMARY) - 1 for v in verdicts.values())


def test_equivalence_needs_the_equivalence_test():
    same = np.array([0.900, 0.901, 0.899, 0.902, 0.900])
    tests = _family(Acc=(same, same + np.array([0.0002, -0.0001, 0.0001, 0.0, -0.0002])))
    v = primary_family(tests)["Acc"]
    assert v.direction == "equivalent"
    assert "are equivalent in test accuracy to" in v.sentence() and "margin" in v.sentence()
    noisy = _family(Acc=([0.90, 0.80, 0.85, 0.95, 0.82], [0.86, 0.91, 0.81, 0.84, 0.88]))
    w = primary_family(noisy)["Acc"]
    assert w.direction == "inconclusive" and "do not show equivalence" in w.sentence()


def test_records_drop_undefined_pairs_and_say_why_when_too_few():
    r = record("Acc", [0.9, math.nan, 0.91, 0.92], [0.8, 0.81, math.nan, 0.82])
    assert r["a"] == [0.9, 0.92] and r["b"] == [0.8, 0.82]
    assert "missing" in record("Acc", [0.9, math.nan], [0.8, 0.81])
    with pytest.raises(ValueError, match="not a declared"):
        record("Nope", [1, 2], [1, 2])


def test_write_claims_writes_one_verdict_for_cell_and_sentence(tmp_path):
    rng = np.random.default_rng(3)
    recs = []
    for d in PRIMARY:
        a = rng.uniform(100, 200, 5) if d.log else rng.uniform(0.5, 0.9, 5)
        recs.append(record(d.key, a, a * 1.3 if d.log else a - 0.1))
    half = len(recs) // 2
    claims.write_records(tmp_path / "claims_a.json", recs[:half])
    claims.write_records(tmp_path / "claims_b.json", recs[half:])
    claims.write_claims(tmp_path)
    tex = (tmp_path / "claims.tex").read_text()
    table = (tmp_path / "table_claims.tex").read_text()
    macros = dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.*)\}", tex))
    verdicts = primary_family(claims.tests_of(recs)[0])
    for d in PRIMARY:
        v, sentence, cell = verdicts[d.key], macros[f"Claim{d.key}Sentence"], macros[f"Claim{d.key}Cell"]
        row = table.split(d.question + " &")[1].split("\\\\")[0]
        assert v.predicate() in sentence and cell.startswith(v.word()) and row.rstrip().endswith(v.word())
    assert macros["NPrimary"] == str(len(PRIMARY))
    # a record written twice is an error, not a bigger family
    claims.write_records(tmp_path / "claims_c.json", recs[:1])
    with pytest.raises(ValueError, match="twice"):
        claims.write_claims(tmp_path)


def test_declarations_are_well_formed():
    assert len(DECLARED) == len(PRIMARY)
    # paper/main.tex says no comparison in the paper needs Welch's test: every declared one is paired
    assert {d.rule for d in PRIMARY} == {"paired"}
    for d in PRIMARY:
        assert re.fullmatch(r"[A-Za-z]+", d.key) and d.rule in ("paired", "welch")
        assert d.margin > (1 if d.log else 0)
        assert d.wording.subject[0].isupper()


def test_the_headline_is_whole_sentences():
    verdicts = primary_family(_family(0.3))
    for text in (claims.headline(verdicts, {}, full=True), claims.headline(verdicts, {}, full=False)):
        assert not re.search(r",\s+[A-Z][a-z]", text.replace("Holm", "holm").replace("MNIST", "mnist")
                             .replace("Fashion", "fashion").replace("L1", "l1"))
        assert "(s)" not in text and ".." not in text and ", ." not in text
    assert claims.tally(verdicts, {}).startswith(f"Of the {len(PRIMARY)} primary comparisons,")
