"""modclust.pipeline.report: the executed notebooks as HTML pages, checked in real headless Chromium.

A small fake build folder (three executed notebooks, one holding plotly figures in the mimetype the
pipeline produces, figures as modclust.paper.figures.save writes them, the compiled paper's
generated macros and tables, and a paper) is turned into ``build/<preset>/report/``; Chromium
loads the pages from disk (no network) and must find plotly's SVG drawn once per plotly output,
every image of the headline loaded, and the headline's sentences and tables saying what the
paper's macro files say; every relative link of every page must lead to a file, and every anchor
to an element of it. Chromium is required: without it these tests fail, naming
``make browser-tools``, which installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import matplotlib
import nbformat
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from modclust.core import io as atomic_io
from modclust.paper import claims
from modclust.paper import figures as fg
from modclust.paper import numbers
from modclust.paper.latex import generated_header
from modclust.pipeline.headline import FIGURE_CAPTIONS, GENERATED, HEADLINE
from modclust.pipeline.report import PLOTLY_JS, PLOTLY_MIMETYPE, REPORT_DIR, ReportError, StagePage, write_report

matplotlib.use("Agg")

PRESET = "tiny"
STAGES = ["01_train", "02_ablate", "05_numbers"]
FIGURE_TITLES = ["Loss per epoch", "Accuracy per lambda"]


# -- the browser -------------------------------------------------------------------------------

def find_chromium() -> str:
    """Chromium's executable; a test that needs it fails (never skips) when it is missing."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed to check the HTML report, and neither chromium nor "
                "chromium-browser is on PATH: run `make browser-tools` (it installs it with apt-get)",
                pytrace=False)


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_chromium()


def dump_dom(chromium: str, page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium serializes it."""
    assert page.is_file(), page
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                           "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "</html>" in done.stdout, done.stderr[-3000:]
    return done.stdout


class _Links(HTMLParser):
    """Every ``href`` and ``src`` of a page, and every ``id``."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("href", "src") and v is not None]
        self.ids |= {v for k, v in attrs if k == "id" and v is not None}


def _parsed(page_html: str) -> _Links:
    parser = _Links()
    parser.feed(page_html)
    return parser


def links_of(page_html: str) -> list[str]:
    return _parsed(page_html).links


def relative_links(page_html: str) -> list[str]:
    """The links that point at files beside the page (no scheme, no host, not a bare #anchor)."""
    out = []
    for link in links_of(page_html):
        parts = urlsplit(link)
        if not parts.scheme and not parts.netloc and parts.path and not parts.path.startswith("/"):
            out.append(link)
    return out


def broken_links(page: Path, page_html: str) -> list[str]:
    """The links of a page that lead nowhere: a relative link to a missing file, or an anchor
    (``page.html#id``, ``#id``) to an element that is not in that page."""
    ids: dict[Path, set[str]] = {page.resolve(): _parsed(page_html).ids}
    broken = []
    for link in links_of(page_html):
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or parts.path.startswith("/"):
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
        if not target.is_file():
            broken.append(link)
            continue
        if parts.fragment:
            if target not in ids:
                ids[target] = _parsed(target.read_text(encoding="utf-8", errors="replace")).ids
            if parts.fragment not in ids[target] and unquote(parts.fragment) not in ids[target]:
                broken.append(link)  # a browser tries the fragment as written, then percent-decoded
    return broken


def assert_links_resolve(page: Path, page_html: str) -> list[str]:
    broken = broken_links(page, page_html)
    assert not broken, f"{page.name}: links to missing files or anchors: {broken}"
    return relative_links(page_html)


def assert_offline(page_html: str) -> None:
    """No script, style or image comes from the network (a CDN)."""
    remote = [ln for ln in links_of(page_html) if urlsplit(ln).scheme in ("http", "https") or ln.startswith("//")]
    assert not remote, f"the page loads from the network: {remote}"


# -- what the headline must say ------------------------------------------------------------------

_PROBE = """<script>
window.addEventListener("load", function () {
  for (const img of document.images) {
    img.setAttribute("data-natural-width", String(img.complete ? img.naturalWidth : 0));
  }
  document.body.setAttribute("data-probed", "yes");
});
</script>
"""


def probe_dom(chromium: str, page: Path, profile: Path) -> str:
    """The DOM of ``page`` after it loaded, each image carrying its ``naturalWidth`` (0: it did not
    load) as ``data-natural-width``: a copy of the page with a small script, beside it (so its
    relative links are the page's own), loaded in Chromium."""
    probe = page.with_name(f".probe.{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        dom = dump_dom(chromium, probe, profile)
    finally:
        probe.unlink()
    assert 'data-probed="yes"' in dom, "the page's load event did not fire"
    return dom


class _Headline(HTMLParser):
    """From a page: each image's src and naturalWidth, the text of each element with
    ``data-macro`` (by macro name) and the cells of each table inside ``data-tex`` (by file),
    cells of class ``source`` (the links the report adds) left out."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, int]] = []
        self.macros: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._open: list[tuple[str, str | None, list[str]]] = []  # tag, macro, text
        self._table: str | None = None
        self._depth = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append((a.get("src") or "", int(a.get("data-natural-width") or 0)))
        if "data-macro" in a:
            self._open.append((tag, a["data-macro"], []))
        elif self._open and tag not in ("br", "img", "hr", "wbr"):  # void elements have no end tag
            self._open.append((tag, None, []))
        if "data-tex" in a:
            self._table, self._depth = a["data-tex"], 0
            self.tables[self._table] = []
        if self._table is not None:
            self._depth += tag == "div"
            if tag == "tr":
                self.tables[self._table].append([])
            elif tag in ("td", "th") and "source" not in (a.get("class") or ""):
                self._cell = []
                self.tables[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            _, macro, text = self._open.pop()
            if macro is not None:
                self.macros[macro] = "".join(text)
            elif self._open:
                self._open[-1][2].extend(text)
        if self._table is not None:
            if tag in ("td", "th") and self._cell is not None:
                self.tables[self._table][-1][-1] = "".join(self._cell)
                self._cell = None
            if tag == "div":
                self._depth -= 1
                if self._depth == 0:
                    self._table = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)
        if self._cell is not None:
            self._cell.append(data)


def headline_of(dom: str) -> _Headline:
    parser = _Headline()
    parser.feed(dom)
    return parser


def words_and_numbers(text: str) -> list[str]:
    """The words and numbers of a rendered text, in order (a minus sign kept with its number)."""
    return re.findall(r"−?\d+(?:\.\d+)?|[A-Za-z]+", text)


def tex_words_and_numbers(tex: str) -> list[str]:
    """The same of LaTeX source, read independently of the report's converter: the minus sign
    and escaped characters spelt out, command names dropped."""
    tex = tex.replace("\\ensuremath{-}", " −").replace("\\%", "%").replace("\\&", "&")
    return words_and_numbers(re.sub(r"\\[A-Za-z]+", " ", tex))


def macro_file(path: Path) -> dict[str, str]:
    """``\\newcommand{\\Name}{value}`` per line, as modclust.paper.latex writes them."""
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def tabular_file(path: Path) -> list[list[str]]:
    """The rows of a generated tabular (one per line ending in ``\\\\``), each a list of cells."""
    return [[c.strip() for c in line.removesuffix("\\\\").split(" & ")]
            for line in path.read_text().splitlines() if line.endswith("\\\\")]


def headline_problems(build: Path, dom: str) -> list[str]:
    """What the headline page (its DOM after loading, :func:`probe_dom`) gets wrong against the
    build folder: an image that did not load, a sentence or table that is missing or says other
    words or numbers than the compiled paper's macro files."""
    page = headline_of(dom)
    problems = [f"image {src} did not load" for src, width in page.images if width <= 0]
    generated = build / GENERATED
    macros = macro_file(generated / "claims.tex")
    shown = ["PrimaryTally"] + [f"Claim{k}Sentence" for k in claims.DECLARED]
    for name in shown:
        if name not in page.macros:
            problems.append(f"\\{name} is not on the page")
        elif words_and_numbers(page.macros[name]) != tex_words_and_numbers(macros[name]):
            problems.append(f"\\{name} reads {page.macros[name]!r}, the paper {macros[name]!r}")
    for file in ("table_claims.tex", "table_main.tex"):
        expected = [[tex_words_and_numbers(c) for c in row] for row in tabular_file(generated / file)]
        got = [[words_and_numbers(c) for c in row] for row in page.tables.get(file, [])]
        if got != expected:
            problems.append(f"{file} on the page: {got}, in the paper: {expected}")
    return problems


# -- a fake build folder -----------------------------------------------------------------------

def plotly_output(title: str, kind: str) -> nbformat.NotebookNode:
    """A figure as a stage stores it under PLOTLY_RENDERER=plotly_mimetype (numpy data: typed arrays)."""
    x = np.arange(8)
    fig = go.Figure([go.Scatter(x=x, y=np.exp(-x / 3.0), mode="lines+markers", name="λ=0"),
                     go.Scatter(x=x, y=np.exp(-x / 2.0), mode="lines", name="λ=1")],
                    layout={"title": {"text": title}, "width": 600, "height": 350})
    data = {PLOTLY_MIMETYPE: json.loads(pio.to_json(fig))}
    if kind == "execute_result":
        return new_output(kind, data=data, execution_count=2)
    return new_output(kind, data=data)


def write_generated(build: Path) -> Path:
    """``build/paper/generated/`` as compiling the paper leaves it: each stage's records of the
    primary comparisons, the claims and their table (modclust.paper.claims), the main table."""
    generated = build / GENERATED
    generated.mkdir(parents=True)
    rng = np.random.default_rng(0)
    def values(shift: float) -> tuple[list[float], list[float]]:
        b = rng.uniform(0.5, 0.9, 4)
        return [float(v) for v in b * (1 + shift) + rng.normal(0, 0.01, 4)], [float(v) for v in b]

    stage5 = [claims.record(k, *values(s)) for k, s in (("Acc", -0.01), ("Off", 0.2), ("On", 0.0), ("Sem", 0.0),
                                                         ("CircuitNone", -0.3), ("CircuitRandomMask", 0.0),
                                                         ("CircuitLOne", 0.3))]
    stage7 = [claims.record("CnnAccMnist", *values(-0.05)), claims.record("CnnCircuitMnist", *values(0.0)),
              claims.not_measured("CnnAccFashion", "this preset does not run Fashion-MNIST"),
              claims.not_measured("CnnCircuitFashion", "this preset does not run Fashion-MNIST")]
    claims.write_records(generated / "claims_05_numbers.json", stage5)
    claims.write_records(generated / "claims_07_cnn.json", stage7)
    claims.write_records(generated / "claims_08_modadd.json", [claims.record("ModaddMi", *values(0.5))])
    claims.write_claims(generated)
    runs = [{"lam": lam, "seed": s, "test_acc": 0.9 - lam / 1000 + s / 100, "clusterability": 0.25 + lam / 20}
            for lam in (0.0, 15.0) for s in range(3)]
    main = numbers.main_table(runs, [0.0, 15.0], {"fc2": {0.0: [0.5, 0.52, 0.49], 15.0: [0.6, 0.61, 0.58]}},
                              {0.0: [120.0, 130.0, 125.0]})
    (generated / "table_main.tex").write_text(generated_header() + "\n" + main)
    return generated


def make_build(root: Path) -> Path:
    """``root/build/<PRESET>`` with three executed stage notebooks, figures (one with its PNG, one
    drawn before figures had one), the compiled paper's generated files and a paper."""
    build = root / "build" / PRESET
    for stage in ("01_train", "02_ablate"):
        (build / stage / "figures").mkdir(parents=True)
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    train = new_notebook(metadata=meta, cells=[
        new_markdown_cell("# Training the models\nOne model per $\\lambda$."),
        new_code_cell("print('trained')\nfg.plotly_lines(...).show()", execution_count=1, outputs=[
            new_output("stream", name="stdout", text="trained\n"),
            plotly_output(FIGURE_TITLES[0], "display_data")]),
        new_code_cell("fig", execution_count=2, outputs=[plotly_output(FIGURE_TITLES[1], "execute_result")]),
        new_code_cell('fg.save(fg.tradeoff(lams, acc, c), figs / "tradeoff.pdf")', id="train-figures",
                      execution_count=3),
    ])
    ablate = new_notebook(metadata=meta, cells=[
        new_markdown_cell("# Ablations"),
        new_code_cell("accuracy", execution_count=1, outputs=[
            new_output("execute_result", data={"text/plain": "accuracy 0.97"}, execution_count=1)]),
        new_code_cell('for lam, name in ((main, "ablation_classwise.pdf"),):\n    fg.save(fig, figs / name)',
                      id="ablate-figures", execution_count=2),
    ])
    numbers_nb = new_notebook(metadata=meta, cells=[
        new_markdown_cell("# The paper's numbers"),
        new_code_cell("macros, tables = report.paper_numbers(train, ablation, interp, circ, preset)\n"
                      "written = report.write_paper_numbers(macros, tables, out / 'generated')\n"
                      "claims.write_records(out / 'generated' / 'claims_05_numbers.json', records)",
                      id="numbers-4", execution_count=1),
    ])
    nbformat.write(train, build / "01_train.ipynb")
    nbformat.write(ablate, build / "02_ablate.ipynb")
    nbformat.write(numbers_nb, build / "05_numbers.ipynb")
    fig = fg.tradeoff([0.0, 15.0], {0.0: [0.9, 0.91], 15.0: [0.89, 0.9]}, {0.0: [0.2, 0.3], 15.0: [0.9, 1.0]})
    fg.save(fig, build / "01_train" / "figures" / "tradeoff.pdf", close=True)  # the PDF and its PNG
    (build / "02_ablate" / "figures" / "ablation_classwise.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")  # no PNG
    write_generated(build)
    (build / "paper.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    return build


def leftovers(build: Path) -> list[str]:
    """Temporary folders or files of the report's writer left in the build folder."""
    return [p.name for p in build.iterdir() if p.name.startswith(f".{REPORT_DIR}")]


# -- the tests ---------------------------------------------------------------------------------

def test_stage_pages_draw_plotly_figures_offline_and_index_links_resolve(tmp_path: Path, chromium: str) -> None:
    build = make_build(tmp_path)
    index = write_report(build, PRESET, STAGES)
    report = build / REPORT_DIR
    assert index == report / "index.html"
    assert sorted(p.name for p in report.iterdir()) == [*(f"{s}.html" for s in STAGES), "index.html", "plotly.min.js"]
    assert (report / "plotly.min.js").read_bytes() == PLOTLY_JS.read_bytes()
    assert leftovers(build) == []

    train = dump_dom(chromium, report / "01_train.html", tmp_path / "profile")
    assert_offline((report / "01_train.html").read_text())
    assert train.count('class="plot-container plotly"') == 2, "one plotly figure per plotly output"
    assert 'class="main-svg"' in train
    for title in FIGURE_TITLES:  # each figure drawn with its own layout and data
        assert re.search(rf'class="gtitle"[^>]*>{re.escape(title)}<', train), title
    assert train.count('class="trace scatter') == 4
    assert "modclust-plotly-missing" not in train.split("</head>")[1]
    assert "trained" in train and "Training the models" in train
    assert_links_resolve(report / "01_train.html", train)

    ablate = dump_dom(chromium, report / "02_ablate.html", tmp_path / "profile")
    assert_offline((report / "02_ablate.html").read_text())
    assert "accuracy 0.97" in ablate and "main-svg" not in ablate

    page = dump_dom(chromium, index, tmp_path / "profile")
    assert_offline(index.read_text())
    assert PRESET in page
    links = assert_links_resolve(index, page)
    assert {"01_train.html", "02_ablate.html", "05_numbers.html", "../01_train/figures/tradeoff.pdf",
            "../01_train/figures/tradeoff.png", "../02_ablate/figures/ablation_classwise.pdf", "../paper.pdf"} <= set(links)
    assert "../02_ablate/figures/ablation_classwise.png" not in links  # drawn before figures had a PNG


def test_cli_writes_the_report_of_the_stages_found_replacing_the_old_one(tmp_path: Path, chromium: str) -> None:
    build = make_build(tmp_path / "root")
    (build / "paper.pdf").unlink()
    write_report(build, PRESET, ["01_train"])  # an older report, to be replaced whole
    assert not (build / REPORT_DIR / "02_ablate.html").exists()
    done = subprocess.run([sys.executable, "-m", "modclust.pipeline", "--root", str(tmp_path / "root"),
                           "report", PRESET], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "report/index.html" in done.stderr
    report = build / REPORT_DIR
    assert sorted(p.name for p in report.glob("*.html")) == [*(f"{s}.html" for s in STAGES), "index.html"]
    assert leftovers(build) == []
    page = dump_dom(chromium, report / "index.html", tmp_path / "profile")
    links = assert_links_resolve(report / "index.html", page)
    assert {"01_train.html", "02_ablate.html", "05_numbers.html", "../01_train/figures/tradeoff.pdf"} <= set(links)
    assert "../paper.pdf" not in links and "make paper PRESET=tiny" in page  # no paper yet: said, not linked


def test_the_headline_says_what_the_paper_says_with_the_builds_figures_and_links_each_to_its_cell(
        tmp_path: Path, chromium: str) -> None:
    build = make_build(tmp_path)
    index = write_report(build, PRESET, STAGES)
    dom = probe_dom(chromium, index, tmp_path / "profile")
    assert headline_problems(build, dom) == []
    page = headline_of(dom)
    assert [src for src, _ in page.images] == ["../01_train/figures/tradeoff.png"]  # loaded: no problem above
    assert len(page.macros) == 1 + len(claims.PRIMARY) and len(page.tables["table_claims.tex"]) == 1 + len(claims.PRIMARY)
    assert "No PNG of <code>ablation_classwise.pdf</code>" in dom  # drawn before figures had a PNG: said
    assert "Figure <code>circuit_sizes.pdf</code> is not in this build" in dom
    html_links = relative_links(index.read_text())
    # each sentence and claims row links the cell that recorded its seeds' values, the main table the
    # cell that wrote it, each figure the cell that drew it; a stage outside the report is named, not linked
    assert html_links.count("05_numbers.html#cell-id=numbers-4") == 1 + 7 + 7
    assert "01_train.html#cell-id=train-figures" in html_links and "02_ablate.html#cell-id=ablate-figures" in html_links
    assert "07_cnn (not in this report)" in dom and "computed in 08_modadd (not in this report)" in dom
    for stage_page in sorted((build / REPORT_DIR).glob("*.html")):
        assert broken_links(stage_page, stage_page.read_text()) == [], stage_page.name


def test_the_checks_catch_an_image_that_does_not_load_a_number_the_paper_does_not_state_and_a_lost_anchor(
        tmp_path: Path, chromium: str) -> None:
    build = make_build(tmp_path)
    index = write_report(build, PRESET, STAGES)
    generated = build / GENERATED
    (build / "01_train" / "figures" / "tradeoff.png").write_bytes(b"not a PNG")
    claims_tex = (generated / "claims.tex").read_text()
    acc = re.search(r"\\newcommand\{\\ClaimAccSentence\}.*", claims_tex).group(0)
    (generated / "claims.tex").write_text(claims_tex.replace(acc, re.sub(r"\d+\.\d+", "12.34", acc, count=1)))
    main = (generated / "table_main.tex").read_text()
    (generated / "table_main.tex").write_text(main.replace("\\midrule\n0 & 3", "\\midrule\n0 & 4"))
    numbers_page = build / REPORT_DIR / "05_numbers.html"
    numbers_page.write_text(numbers_page.read_text().replace('id="cell-id=numbers-4"', ""))

    problems = headline_problems(build, probe_dom(chromium, index, tmp_path / "profile"))
    assert any("tradeoff.png did not load" in p for p in problems), problems
    assert any("ClaimAccSentence reads" in p for p in problems), problems
    assert any(p.startswith("table_main.tex on the page") for p in problems), problems
    assert len(problems) == 3, problems
    assert set(broken_links(index, index.read_text())) == {"05_numbers.html#cell-id=numbers-4"}


def test_before_the_paper_is_compiled_the_headline_says_so_and_shows_the_figures(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    shutil.rmtree(build / GENERATED.parent)
    (build / "paper.pdf").unlink()
    index = write_report(build, PRESET, STAGES)
    page = index.read_text()
    assert "The paper is not compiled yet (<code>make paper PRESET=tiny</code>)" in page
    assert "data-macro" not in page and "data-tex" not in page  # no sentence or table to show
    assert '<img src="../01_train/figures/tradeoff.png"' in page
    assert broken_links(index, page) == []


def test_every_stage_page_links_the_previous_and_the_next_stage_and_the_index(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    write_report(build, PRESET, STAGES)
    for i, stage in enumerate(STAGES):
        page = (build / REPORT_DIR / f"{stage}.html").read_text()
        rels = re.findall(r'<a href="([^"]+)" rel="(prev|next)">', page)
        expected = ([(f"{STAGES[i - 1]}.html", "prev")] if i > 0 else []) + \
                   ([(f"{STAGES[i + 1]}.html", "next")] if i + 1 < len(STAGES) else [])
        assert rels == expected * 2, stage  # at the top and the bottom of the page
        assert page.count('<a href="index.html">report index</a>') == 2
        assert ("first stage" in page) == (i == 0) and ("last stage" in page) == (i == len(STAGES) - 1)


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _notebook_page(stage: str) -> StagePage:
    nb = nbformat.read(NOTEBOOKS / f"{stage}.ipynb", as_version=4)
    return StagePage(stage, stage, 0, tuple((c.get("id", ""), c.source) for c in nb.cells if c.cell_type == "code"))


def test_the_headline_finds_its_cells_in_the_stage_notebooks_and_shows_every_primary_comparison() -> None:
    pages = {p.stem: _notebook_page(p.stem) for p in sorted(NOTEBOOKS.glob("0*.ipynb"))}
    recording = [s for s, page in pages.items() if page.cell_with(r"claims\.write_records\(")]
    assert recording == ["05_numbers", "07_cnn", "08_modadd"]
    for stage in recording:  # the cell that writes the stage's records names their file
        assert pages[stage].cell_with(re.escape(f"claims_{stage}.json")), stage
    for part in HEADLINE:
        for table in part.tables:
            assert pages[table.stage].cell_with(table.cell), table
        for name in part.figures:
            drawn = [s for s, page in pages.items() if page.cell_with(rf"(?<![\w-]){re.escape(name)}\.pdf")]
            assert len(drawn) == 1, (name, drawn)
            assert name in FIGURE_CAPTIONS, name
    shown = [title for part in HEADLINE for title in part.groups]
    assert sorted(shown) == sorted(title for title, _ in claims.GROUPS)


def test_a_missing_stage_notebook_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    build = make_build(tmp_path / "root")
    before = sorted(os.listdir(build))
    with pytest.raises(ReportError, match=r"no executed notebook for stage 03_interpret .*make results PRESET=tiny"):
        write_report(build, PRESET, ["01_train", "03_interpret"])
    assert sorted(os.listdir(build)) == before  # no report/, no temporary folder

    done = subprocess.run([sys.executable, "-m", "modclust.pipeline", "--root", str(tmp_path / "root"), "report",
                           PRESET, "01_train", "03_interpret"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "03_interpret" in done.stderr and "make results PRESET=tiny" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(build)) == before


def test_a_failed_write_keeps_the_old_report_and_leaves_no_temporary_folder(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    write_report(build, PRESET, STAGES)
    report = build / REPORT_DIR
    old = {p.name: p.read_bytes() for p in report.iterdir()}
    (build / "02_ablate.ipynb").write_text("{ not a notebook")
    with pytest.raises(ReportError, match=r"02_ablate\.ipynb cannot be read"):
        write_report(build, PRESET, STAGES)
    assert {p.name: p.read_bytes() for p in report.iterdir()} == old
    assert leftovers(build) == []


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_write(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = build / f".{REPORT_DIR}.{atomic_io._HOST}.{gone.pid}.0123abcd.tmp"
    (stale / "half").mkdir(parents=True)
    live = build / f".{REPORT_DIR}.{atomic_io._HOST}.{os.getpid()}.0123abcd.tmp"  # a writer still running
    live.mkdir()
    write_report(build, PRESET, STAGES)
    assert not stale.exists() and live.is_dir()


def test_without_chromium_the_browser_tests_fail_naming_make_browser_tools(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="make browser-tools"):
        find_chromium()
