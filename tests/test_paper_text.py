"""The compiled paper read back as text (pdftotext), and the paper's sources: a generated sentence
glued into a typed one, a stale passage, a claim of sameness without an equivalence test or a
primary p-value left uncorrected shows here whatever the data turn out to be.

`make test` compiles the smoke preset's paper before these tests (the Makefile's smoke-paper
step); any other preset compiled in this checkout (build/<preset>/paper.pdf, e.g. the default
`make paper`) is read too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modclust.core import paths

BUILD = paths.REPO / "build"
PAPER = paths.REPO / "paper"

# Proper names and capitalised terms that may follow a comma in running text (the references,
# where author names follow commas, are not read).
NAMES = {"MNIST", "Fashion", "Welch", "Holm", "Bonferroni", "Student", "Adam", "AdamW", "SGD", "ReLU", "Figure",
         "Figures", "Table", "Tables", "Section", "Sections", "Golechha", "Filan", "Nanda", "Morcos", "L1", "KL",
         "TOST", "OFF", "ON", "MLP", "CNN", "CPU", "IoU", "MI", "Fourier"}

# Phrases that claim sameness: allowed only as an equivalence test's verdict ("are equivalent in").
SAMENESS = ("about as", "say as much", "as many key frequencies as", "as many steps as", "as many single",
            "take as long as", "as evenly", "about the same", "the same size as", "within noise", "indistinguishable")

# Passages that were stale or spliced once; none may come back.
STALE = ("epoch(s)", "(s)", "trains a new set of models", "six papermill", "not found from the weights",
         "modularity has to be trained in", "quarter of a layer", "quarter of fc2", "cross-entropy of the c-vs-rest log-odds",
         "The fair comparison is the second one")


def pdfs() -> list[Path]:
    return sorted(BUILD.glob("*/paper.pdf"))


def pdf_text(path: Path) -> str:
    """The PDF's text in reading order, lines joined, words split at a line end rejoined."""
    done = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                          check=True)
    text = re.sub(r"(?<=[a-z])-\n(?=[a-z])", "", done.stdout)
    return re.sub(r"\s+", " ", text.replace("\ufb01", "fi").replace("\ufb02", "fl").replace("\ufb00", "ff"))


def body(text: str) -> str:
    """The running text only: from the abstract to the references (tables and captions stay in:
    they are checked the same way)."""
    start = text.find("Abstract.")
    end = text.rfind("References")
    return text[start if start >= 0 else 0:end if end > 0 else len(text)]


@pytest.fixture(scope="module", params=[p.parent.name for p in pdfs()] or ["smoke"])
def paper_text(request) -> str:
    pdf = BUILD / request.param / "paper.pdf"
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (poppler-utils) reads the compiled paper: run `make test`, which installs it")
    if not pdf.exists():
        pytest.fail(f"no compiled paper at {pdf}: run `make paper PRESET=smoke` (make test does) first")
    return body(pdf_text(pdf))


def test_the_smoke_paper_is_compiled():
    assert (BUILD / "smoke" / "paper.pdf").exists(), "no build/smoke/paper.pdf: run make test (it compiles it first)"


def test_no_capital_after_a_comma_or_colon(paper_text: str):
    """A generated sentence glued after a comma ("…decisions, Faithful per-label…") or a colon
    ("…too: Clusters found…") starts with a capital."""
    bad = [m.group(0) for m in re.finditer(r"[a-z\)\}\]%]([,:])\s+([A-Z][a-zé]+)\b", paper_text)
           if m.group(2) not in NAMES and (m.group(1) == "," or len(m.group(2)) > 2)]  # ": Lc =" is mathematics
    assert not bad, f"a capitalised word after a comma or colon (a spliced sentence?): {bad[:10]}"


def test_no_doubled_or_stray_punctuation(paper_text: str):
    for pattern, what in ((r"[,;:]\s*[,;:.]", "doubled punctuation"), (r"[a-z]\s*\.\s+\.", "two full stops"),
                          (r"\(\s*\)", "empty parentheses"), (r",\s*\)", "a comma before a closing parenthesis")):
        found = [paper_text[max(0, m.start() - 40):m.end() + 20] for m in re.finditer(pattern, paper_text)]
        assert not found, f"{what}: {found[:5]}"


def test_no_stale_or_parenthesised_plural(paper_text: str):
    found = [s for s in STALE if s in paper_text]
    assert not found, f"stale or spliced passages: {found}"


def test_sameness_only_from_an_equivalence_test(paper_text: str):
    found = [paper_text[max(0, m.start() - 60):m.end() + 30] for phrase in SAMENESS
             for m in re.finditer(re.escape(phrase), paper_text)]
    assert not found, f"sameness claimed without an equivalence test: {found[:5]}"
    for m in re.finditer(r"are equivalent in", paper_text):
        assert "equivalence test" in paper_text[m.start():m.start() + 700], \
            f"an equivalence without its test: {paper_text[m.start():m.start() + 200]}"


def test_every_p_value_is_corrected_or_exploratory(paper_text: str):
    """A p-value in the text is a primary comparison's, Holm-adjusted, or an exploratory one's,
    labelled so; the primary table shows bare numbers under its column heads."""
    bad = []
    for m in re.finditer(r"\bp\s*[=<]\s*(0\.\d|1\.0)", paper_text):  # a p-value, not the modulus p
        before, after = paper_text[max(0, m.start() - 60):m.start()], paper_text[m.end():m.end() + 40]
        if "Holm" not in before and "expl" not in after:
            bad.append(paper_text[max(0, m.start() - 80):m.end() + 40])
    assert not bad, f"p-values neither Holm-adjusted nor labelled exploratory: {bad[:5]}"
    assert "Holm-adjusted" in paper_text


def test_the_abstract_and_conclusion_state_every_primary_result(paper_text: str):
    abstract = paper_text[:paper_text.find("Introduction")]
    conclusion = paper_text[paper_text.find("Conclusion"):paper_text.find("Limitations")]
    assert "primary comparisons" in abstract and "Holm" in abstract
    tally = re.search(r"Of the (\d+) primary comparisons[^,]*, (\d+) show a difference after the Holm correction, "
                      r"(\d+) show equivalence within their declared margin, and (\d+) cannot tell", abstract)
    assert tally, "the abstract states how the primary family came out"
    n, diff, same, unknown = map(int, tally.groups())
    assert diff + same + unknown == n
    # every measured primary comparison's sentence is in the conclusion, the negative ones included
    assert conclusion.count(f"over the {n} primary comparisons") == n
    assert conclusion.count("cannot tell them apart") == unknown


# -- the sources ------------------------------------------------------------------------------------

def _running_numbers(tex: str) -> list[str]:
    tex = re.sub(r"(?<!\\)%.*", "", tex)
    tex = re.sub(r"\\begin\{(equation|align)\*?\}.*?\\end\{\1\*?\}|\\\[.*?\\\]", "", tex, flags=re.S)
    tex = re.sub(r"\\(includegraphics|label|ref|cite[pt]?|input|bibliography\w*|usepackage|documentclass|begin|end)"
                 r"(\[[^]]*\])?(\[[^]]*\])?\{[^}]*\}", "", tex)
    tex = re.sub(r"\[[!htbp]+\]|width=[0-9.]+\\linewidth|\\\\\[[0-9.]+em\]", "", tex)
    tex = re.sub(r"\$[^$]*\$", "", tex)  # mathematics: constants of the definitions
    return re.findall(r"(?<![A-Za-z\\])\d+(?:\.\d+)?", tex)


def test_numbers_typed_in_the_sections_are_the_known_constants():
    """Every number typed in a section (outside mathematics) is one of these constants, each kept
    true here; anything measured or set by a preset is a macro."""
    import inspect

    from modclust.core.cnn import CNN
    from modclust.core.stats import mean_ci

    known = {
        "95": inspect.signature(mean_ci).parameters["level"].default == 0.95,  # every interval is a 95 % one
        "50": True,   # balanced agreement of a constant answer, by definition
        "0.5": True,  # the same, as a fraction
        "0": True,    # lambda = 0 and "gives a dead unit 0"
        "1": True,    # stage 1 (training), by the pipeline's numbering
    }
    found = {}
    for f in sorted(PAPER.glob("*.tex")):
        if f.name == "layout.tex":  # the page layout's lengths
            continue
        for n in _running_numbers(f.read_text()):
            found.setdefault(n, []).append(f.name)
    unknown = {n: where for n, where in found.items() if n not in known}
    assert not unknown, f"numbers typed by hand in the paper's sections: {unknown}"
    assert all(known[n] for n in found), {n: known[n] for n in found}
    # the CNN's geometry, stated in mathematics: 3x3 convolutions, 2x2 pools, 14x14 maps of conv2
    cnn = CNN(channels=(4, 8), hidden=8)
    assert cnn.conv1.kernel_size == (3, 3) and cnn.conv2.kernel_size == (3, 3) and cnn.fc1.in_features == 8 * 7 * 7


def test_notebook_markdown_has_no_stale_passages():
    for nb in sorted((paths.REPO / "notebooks").glob("0*.ipynb")):
        md = " ".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown")
        md = re.sub(r"\s+", " ", md)
        found = [s for s in STALE + SAMENESS if s in md]
        assert not found, f"{nb.name}'s markdown: {found}"
