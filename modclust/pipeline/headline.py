"""The report's headline: what the paper found, at the top of ``build/<preset>/report/index.html``.

What it shows (:data:`HEADLINE`), every word and number read from the build folder:

- the tally of the primary comparisons (``\\PrimaryTally``) and their table (``table_claims.tex``:
  effect with its interval, margin, p, Holm p, verdict), as the compiled paper states them in
  ``build/<preset>/paper/generated/`` (:mod:`modclust.paper.claims` writes them when the paper is
  compiled); each row links the cell of the stage notebook that recorded its seeds' values
  (the cell that writes ``claims_<stage>.json``);
- per part of the paper, its generated tables (the main text's ``table_main.tex``), the sentence
  of each of its primary comparisons (``\\Claim<key>Sentence``, grouped as the conclusion groups
  them, :data:`modclust.paper.claims.GROUPS`) and one or two key figures, each the PNG that
  :func:`modclust.paper.figures.save` wrote beside the figure's PDF, linking the cell that drew it
  (the cell whose code names ``<figure>.pdf``) and the PDF.

The LaTeX is rendered by :mod:`modclust.pipeline.tex_html`. Before the paper is compiled there
are no sentences or tables to show; the headline says so and shows the figures.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from modclust.paper.claims import DECLARED, GROUPS
from modclust.pipeline.tex_html import TexError, read_macros, tabular_html, tabular_rows, tex_to_html

GENERATED = Path("paper") / "generated"
"""The compiled paper's macros and tables, inside a build folder."""

CLAIMS_TABLE = "table_claims.tex"
TALLY = "PrimaryTally"


@dataclass(frozen=True)
class GeneratedTable:
    """A table of the paper's ``generated/`` folder: its file, a caption, the stage that writes it
    and a pattern (regular expression) found in the code of the cell that does."""

    file: str
    caption: str
    stage: str
    cell: str


@dataclass(frozen=True)
class HeadlinePart:
    """A part of the headline: a section of the paper, the groups of primary comparisons
    (titles of :data:`modclust.paper.claims.GROUPS`) whose sentences it shows, its generated
    tables, its key figures (names of figure PDFs without ``.pdf``) and a note."""

    title: str
    groups: tuple[str, ...] = ()
    tables: tuple[GeneratedTable, ...] = ()
    figures: tuple[str, ...] = ()
    note: str = ""


MAIN_TABLE = GeneratedTable("table_main.tex", "The paper's main table: one row per λ, each a mean ± the half-width "
                            "of its 95 % interval over seeds.", "05_numbers", r"write_paper_numbers\(")

HEADLINE: tuple[HeadlinePart, ...] = (
    HeadlinePart("The MLP: accuracy, separable clusters, specialised units",
         ("Accuracy", "Separable clusters", "Specialised units"), (MAIN_TABLE,), ("tradeoff", "ablation_classwise")),
    HeadlinePart("Circuits: smaller, and because of the blocks?", ("Smaller circuits",), figures=("circuit_sizes",)),
    HeadlinePart("Beyond the seed", figures=("beyond_pareto",),
         note="This section of the paper has no primary comparison: every comparison in it is exploratory."),
    HeadlinePart("A convolutional network", ("A CNN",), figures=("cnn_tradeoff", "cnn_circuits")),
    HeadlinePart("Modular addition", ("Modular addition",), figures=("modadd_summary",)),
)
"""The headline's parts, in the paper's order."""

FIGURE_CAPTIONS = {
    "tradeoff": "Test accuracy and clusterability C against λ.",
    "ablation_classwise": "Class-wise test accuracy of the clustered models with each cluster OFF, or only it ON.",
    "circuit_sizes": "Size of each label's faithful circuit, clustered against unclustered models.",
    "beyond_pareto": "Test accuracy against clusterability, every λ of the sweep and both placements of the loss.",
    "cnn_tradeoff": "The CNN: test accuracy and C of conv2 and fc1 against λ.",
    "cnn_circuits": "The CNN: how faithful each label's circuit is, against a random mask of its size.",
    "modadd_summary": "Modular addition: how much a neuron's cluster says about its frequency, against shuffled "
                      "clusters, and how specific a cluster's ablation is.",
}
"""A line under each figure of :data:`HEADLINE` (the paper's captions hold LaTeX and references)."""


class CellSource(Protocol):
    """A stage's page as the headline links it (:class:`modclust.pipeline.report.StagePage`)."""

    @property
    def file(self) -> str: ...

    def cell_with(self, pattern: str) -> str | None: ...


_esc = html.escape


def _render(tex: str, macros: Mapping[str, str], table: bool = False) -> str:
    """LaTeX as HTML; malformed LaTeX is shown as its source (flagged), not dropped."""
    try:
        return tabular_html(tex, macros) if table else tex_to_html(tex, macros)
    except TexError as err:
        return f'<span class="tex-unknown" title="{_esc(str(err))}">{_esc(tex)}</span>'


def source_link(pages: Mapping[str, CellSource], stage: str, pattern: str, verb: str = "") -> str:
    """A link to the cell of ``stage``'s page whose code matches ``pattern``, reading "<verb> in
    <stage>" (or the stage's name); to the page when no cell matches, and plain words when the
    stage has no page in the report."""
    text = f"{verb} in {stage}" if verb else stage
    page = pages.get(stage)
    if page is None:
        return f'<span class="source">{_esc(text)} (not in this report)</span>'
    cell = page.cell_with(pattern)
    href = page.file + (f"#{quote('cell-id=' + cell, safe='=')}" if cell else "")
    return f'<a class="source" href="{_esc(href)}">{_esc(text)}</a>'


def claim_stages(generated: Path) -> dict[str, str]:
    """Which stage measured each primary comparison: key -> stage, from the ``claims_<stage>.json``
    the paper was compiled with (a comparison a stage records as not measured is left out)."""
    out = {}
    for f in sorted(generated.glob("claims_*.json")):
        for r in json.loads(f.read_text(encoding="utf-8")):
            if "missing" not in r:
                out[r["key"]] = f.stem.removeprefix("claims_")
    return out


def _records_pattern(stage: str) -> str:
    return re.escape(f"claims_{stage}.json")


def _claims_table(generated: Path, macros: Mapping[str, str], pages: Mapping[str, CellSource],
                  stages: Mapping[str, str]) -> str:
    tex = (generated / CLAIMS_TABLE).read_text(encoding="utf-8")
    keys = {d.question: d.key for d in DECLARED.values()}
    try:
        _, _, body = tabular_rows(tex)
        links = []
        for row in body:
            stage = stages.get(keys.get(row[0], ""))
            links.append(source_link(pages, stage, _records_pattern(stage)) if stage else "")
        table = tabular_html(tex, macros, extra=("notebook", links))
    except TexError:
        table = _render(tex, macros, table=True)
    return f'<div class="table-wrap" data-tex="{_esc(CLAIMS_TABLE)}">{table}</div>'


def _figure(name: str, build: Path, figures: Mapping[str, Path], pages: Mapping[str, CellSource]) -> str:
    pdf = figures.get(name)
    if pdf is None:
        return f'<p class="note">Figure <code>{_esc(name)}.pdf</code> is not in this build.</p>'
    stage, png = pdf.parts[0], pdf.with_suffix(".png")
    caption = _esc(FIGURE_CAPTIONS.get(name, ""))
    drawn = source_link(pages, stage, rf"(?<![\w-]){re.escape(pdf.name)}", "drawn")
    pdf_link = f'<a href="{_esc(quote("../" + pdf.as_posix()))}">PDF</a>'
    if not (build / png).is_file():
        return (f'<figure class="missing"><p class="note">No PNG of <code>{_esc(pdf.name)}</code> beside it (drawn '
                f'before the report showed figures): run stage {_esc(stage)} again.</p>'
                f'<figcaption>{caption} {drawn} &middot; {pdf_link}</figcaption></figure>')
    src = _esc(quote("../" + png.as_posix()))
    return (f'<figure><a href="{src}"><img src="{src}" alt="{_esc(pdf.name)}: {caption}"></a>'
            f'<figcaption>{caption} <code>{_esc(pdf.name)}</code>, {drawn} &middot; {pdf_link}</figcaption></figure>')


def headline_html(build: str | os.PathLike[str], preset: str, pages: Mapping[str, CellSource],
                  figures: Sequence[Path]) -> str:
    """The headline section of the index page for the build folder ``build`` (``build/<preset>``).

    ``pages``: the report's stage pages by stage; ``figures``: the figure PDFs, relative to
    ``build`` (``<stage>/figures/<name>.pdf``). Links are relative to ``build/report/``.
    """
    build = Path(build)
    generated = build / GENERATED
    compiled = (generated / "claims.tex").is_file()
    macros: dict[str, str] = {}
    for f in sorted(generated.glob("*.tex")) if compiled else ():
        macros.update(read_macros(f))
    stages = claim_stages(generated) if compiled else {}
    by_name = {f.stem: f for f in figures}
    parts = ['<section id="headline">', "<h2>Headline</h2>"]
    if compiled:
        parts.append(f'<p class="note">What the paper found, in its own words and numbers (<code>build/{_esc(preset)}/'
                     f'{GENERATED.as_posix()}/</code>), and its key figures as the stages drew them; each links the '
                     "notebook cell that computed it.</p>")
        if TALLY in macros:
            parts.append(f'<p class="tally"><span class="tex" data-macro="{TALLY}">{_render(macros[TALLY], macros)}'
                         "</span></p>")
        parts.append('<h3 id="primary">The primary comparisons</h3>')
        parts.append('<p class="caption">Declared before the data were read, each the clustered models against '
                     "another setting at the same seeds, their p-values Holm-corrected together when the paper was "
                     "compiled; the effect is a difference, or a ratio (×), with its 95 % interval.</p>")
        if (generated / CLAIMS_TABLE).is_file():
            parts.append(_claims_table(generated, macros, pages, stages))
    else:
        parts.append(f'<p class="note">The paper is not compiled yet (<code>make paper PRESET={_esc(preset)}</code>): '
                     "its sentences and tables show here once it is. The figures as the stages drew them:</p>")
    groups = dict(GROUPS)
    for n, part in enumerate(HEADLINE, start=1):
        parts.append(f'<h3 id="part-{n}">{_esc(part.title)}</h3>')
        if part.note:
            parts.append(f'<p class="note">{_esc(part.note)}</p>')
        for t in part.tables if compiled else ():
            if (generated / t.file).is_file():
                table = _render((generated / t.file).read_text(encoding="utf-8"), macros, table=True)
                parts.append(f'<div class="table-wrap" data-tex="{_esc(t.file)}">{table}</div>'
                             f'<p class="caption">{_esc(t.caption)} '
                             f'{source_link(pages, t.stage, t.cell, "computed")}</p>')
        for title in part.groups if compiled else ():
            if len(part.groups) > 1:
                parts.append(f"<h4>{_esc(title)}</h4>")
            for key in groups[title]:
                name = f"Claim{key}Sentence"
                if name not in macros:
                    parts.append(f'<p class="note">The compiled paper has no <code>\\{name}</code>.</p>')
                    continue
                stage = stages.get(key)
                link = source_link(pages, stage, _records_pattern(stage), "computed") if stage else ""
                parts.append(f'<p class="claim"><span class="tex" data-macro="{name}">'
                             f"{_render(macros[name], macros)}</span> {link}</p>")
        if part.figures:
            parts.append('<div class="figures">' + "".join(_figure(f, build, by_name, pages) for f in part.figures)
                         + "</div>")
    parts.append("</section>")
    return "\n".join(parts)
