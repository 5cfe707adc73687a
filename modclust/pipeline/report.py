"""The executed notebooks as a browsable HTML report that works offline: ``build/<preset>/report/``.

``python -m modclust.pipeline report PRESET [STAGE...]`` (or :func:`write_report`) writes

- ``report/<stage>.html``, one page per executed stage notebook ``build/<preset>/<stage>.ipynb``,
  converted by nbconvert's HTMLExporter (the ``lab`` template, code, outputs and all), with links
  to the previous and the next stage's page and to the index at its top and bottom; each cell is
  an anchor, ``<stage>.html#cell-id=<the cell's id>``;
- ``report/index.html``: the preset's name, then the headline (:mod:`modclust.pipeline.headline`:
  the paper's primary comparisons, main table, headline sentences and key figures as images, each
  linking the cell that computed it), then a link to every stage page, to every figure PDF under
  ``build/<preset>/*/figures/`` (e.g. ``../01_train/figures/tradeoff.pdf``) and the PNG beside it,
  and to ``../paper.pdf`` when the paper is compiled; every link is relative, so the folder can be
  browsed straight from disk or from a copy of the whole build folder;
- ``report/plotly.min.js``: plotly.js from the installed ``plotly`` package (about 5 MB).

Plotly figures. With ``PLOTLY_RENDERER=plotly_mimetype`` (pipeline.mk) a figure is stored in the
executed notebook as an ``application/vnd.plotly.v1+json`` output, the figure's JSON only, no
plotly.js. nbconvert's lab template has no renderer for that mimetype (it is not in its display
priority, so the output is silently dropped), and its page loads require.js, MathJax and mermaid
from a CDN. The page template here (:data:`PAGE_TEMPLATE`, an extension of ``lab/index.html.j2``)
renders each plotly output as a ``<div>`` filled by ``Plotly.newPlot`` from the figure's JSON,
kept in the page, with the local ``plotly.min.js``, and drops every CDN script: a page loads
nothing from the network. (Without MathJax, TeX in markdown cells stays as its source, e.g.
``$\\lambda$``.)

Atomic. The whole folder is built in a temporary folder beside it,
``build/<preset>/.report.<host>.<pid>.<random>.tmp`` (the naming of :mod:`modclust.core.io`), and
swapped in only when every page is written: a reader sees the old report or the new one, never a
mix, and a failure leaves the old report as it was and no temporary folder. The folder of a
writer that was killed (SIGKILL) is removed by the next write on the same host.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import nbformat
import plotly
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from traitlets.config import Config

from modclust.core.io import atomic_dir
from modclust.pipeline import provenance
from modclust.pipeline.headline import headline_html

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
"""The mimetype of a plotly figure output (``PLOTLY_RENDERER=plotly_mimetype``)."""

REPORT_DIR = "report"
"""The report's folder inside a build folder."""

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
"""plotly.js as the installed ``plotly`` package ships it (the version its figures' JSON is for)."""

_PAGE_TEMPLATE_NAME = "modclust_report.html.j2"

PAGE_TEMPLATE = r"""
{%- extends 'lab/index.html.j2' -%}

{#- No CDN: plotly.js from beside the page instead of require.js; no MathJax, mermaid or widgets. -#}
{%- block html_head_js_requirejs -%}
<script src="plotly.min.js"></script>
<script>
/* Fill the plotly output that holds `script` from the figure JSON beside it. */
function modclustPlot(script) {
  var output = script.parentElement;
  var div = output.querySelector(".modclust-plotly-figure");
  var fig = JSON.parse(output.querySelector('script[type="{{ plotly_mimetype }}"]').textContent);
  if (!window.Plotly) {
    div.classList.add("modclust-plotly-missing");
    div.textContent = "This figure needs plotly.min.js beside this page (it did not load).";
    return;
  }
  Plotly.newPlot(div, {data: fig.data || [], layout: fig.layout || {}, frames: fig.frames || [],
                       config: Object.assign({responsive: true}, fig.config || {})});
}
</script>
{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}

{%- block html_head_css -%}
<style type="text/css">
.modclust-nav { padding: 8px 16px; font-family: var(--jp-ui-font-family); font-size: 14px;
                border-bottom: 1px solid var(--jp-border-color2); }
.modclust-nav a { color: var(--jp-content-link-color); text-decoration: underline; }
.modclust-nav .none { color: var(--jp-ui-font-color3); }
.modclust-plotly-figure { width: 100%; }
.modclust-provenance { padding: 4px 16px 8px; font-family: var(--jp-ui-font-family); font-size: 13px; }
.modclust-provenance th { text-align: left; padding-right: 12px; font-weight: normal;
                          color: var(--jp-ui-font-color2); vertical-align: top; }
</style>
{%- endblock html_head_css -%}

{%- block body_header -%}
{{ super() }}
{{ resources.modclust_nav }}
{{ resources.modclust_provenance }}
{%- endblock body_header -%}

{%- block body_footer -%}
{{ resources.modclust_nav }}
{{ super() }}
{%- endblock body_footer -%}

{%- block data_other scoped -%}
{%- set mimetype = (output.data | filter_data_type)[0] -%}
{%- if mimetype == plotly_mimetype -%}
<div class="jp-OutputArea-output modclust-plotly {{ extra_class }}" data-mime-type="{{ mimetype }}">
<div class="modclust-plotly-figure"></div>
<script type="{{ mimetype }}">{{ output.data[mimetype] | script_json }}</script>
<script>modclustPlot(document.currentScript);</script>
</div>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock data_other -%}
"""
"""The stage pages' nbconvert template (held here, not as a file, so it ships with the module)."""

_INDEX_CSS = """
body { font-family: system-ui, sans-serif; max-width: 64em; margin: 2em auto; padding: 0 1em; line-height: 1.5; }
code { background: #f3f3f3; padding: 0 0.25em; }
.note, .caption { color: #666; }
.caption { font-size: 0.9em; }
.tally { font-size: 1.1em; }
.math i { font-family: Georgia, serif; }
.tex-unknown { color: #b00; font-family: monospace; }
.source { font-size: 0.85em; white-space: nowrap; }
.table-wrap { overflow-x: auto; }
.tex-table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
.tex-table th, .tex-table td { padding: 0.2em 0.6em; vertical-align: top; white-space: nowrap; }
.tex-table thead { border-top: 2px solid #333; border-bottom: 1px solid #333; }
.tex-table tbody { border-bottom: 2px solid #333; }
.tex-table .r { text-align: right; }
.tex-table .c { text-align: center; }
.tex-table .l { text-align: left; }
.tex-table .p { text-align: left; white-space: normal; min-width: 12em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
"""


class ReportError(RuntimeError):
    """The report cannot be written; the message says why and what to do."""


@dataclass(frozen=True)
class StagePage:
    """One stage's page as the index lists it; ``cells`` are its code cells, (id, code), in order."""

    stage: str
    title: str
    plotly_figures: int
    cells: tuple[tuple[str, str], ...] = ()

    @property
    def file(self) -> str:
        return f"{self.stage}.html"

    def cell_with(self, pattern: str) -> str | None:
        """The id of the first code cell whose code matches ``pattern`` (a regular expression), the
        anchor ``#cell-id=<id>`` of the page; None when none does or the cell has no id."""
        return next((cid for cid, code in self.cells if re.search(pattern, code)), None) or None


def _script_json(obj: object) -> str:
    """``obj`` as JSON safe inside a ``<script>`` element (no ``<``, ``>`` or ``&`` in it)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def exporter() -> HTMLExporter:
    """An HTMLExporter with the report's page template, plotly outputs first in its priority."""
    exp = HTMLExporter(template_name="lab", extra_loaders=[DictLoader({_PAGE_TEMPLATE_NAME: PAGE_TEMPLATE})],
                       template_file=_PAGE_TEMPLATE_NAME, filters={"script_json": _script_json})
    priority = [m for m in exp.config.NbConvertBase.display_data_priority if m != PLOTLY_MIMETYPE]
    exp.update_config(Config({"NbConvertBase": {"display_data_priority": [PLOTLY_MIMETYPE, *priority]}}))
    exp.environment.globals["plotly_mimetype"] = PLOTLY_MIMETYPE
    return exp


def executed_stages(build: str | os.PathLike[str]) -> list[str]:
    """The stages with an executed notebook in ``build`` (``<stage>.ipynb``, the marker), sorted."""
    return sorted(p.stem for p in Path(build).glob("*.ipynb") if not p.name.startswith("."))


def figure_pdfs(build: str | os.PathLike[str]) -> list[Path]:
    """The figure PDFs in ``build``: ``<folder>/figures/*.pdf``, relative to ``build``, sorted."""
    build = Path(build)
    return sorted(p.relative_to(build) for p in build.glob("*/figures/*.pdf")
                  if not p.parts[-3].startswith(".") and p.parts[-3] != REPORT_DIR)


def _stage_notebooks(build: Path, preset: str, stages: Sequence[str]) -> list[Path]:
    """The executed notebook of every stage; a missing one stops the report before it starts."""
    if not stages:
        raise ReportError(f"{build} holds no executed stage notebook (<stage>.ipynb): "
                          f"run the pipeline first, e.g. make results PRESET={preset}")
    bad = [s for s in stages if not s or Path(s).name != s or s.startswith(".")]
    if bad:
        raise ReportError(f"not a stage name: {', '.join(map(repr, bad))} (stages are names such as 01_train)")
    missing = [s for s in stages if not (build / f"{s}.ipynb").is_file()]
    if missing:
        raise ReportError(f"{build} has no executed notebook for stage {', '.join(missing)} "
                          f"({', '.join(f'{s}.ipynb' for s in missing)}): run the pipeline first, "
                          f"e.g. make results PRESET={preset}, then write the report again")
    return [build / f"{s}.ipynb" for s in stages]


def _title(nb: nbformat.NotebookNode, stage: str) -> str:
    """The notebook's first markdown heading (its title), or the stage's name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip() or stage
    return stage


def _count_plotly(nb: nbformat.NotebookNode) -> int:
    return sum(PLOTLY_MIMETYPE in out.get("data", {})
               for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))


def stage_nav(preset: str, stage: str, previous: str | None, following: str | None) -> str:
    """The links at the top and bottom of a stage's page: the previous stage, the index, the next."""
    esc = html.escape
    def link(other: str | None, text: str, rel: str) -> str:
        if other is None:
            return f'<span class="none">{esc(text)}</span>'
        return f'<a href="{esc(quote(other + ".html"))}" rel="{rel}">{esc(text.replace("STAGE", other))}</a>'

    return (f'<nav class="modclust-nav">{link(previous, "← STAGE" if previous else "← first stage", "prev")} '
            f'&middot; <a href="index.html">report index</a> &middot; '
            f'{link(following, "STAGE →" if following else "last stage →", "next")} &middot; '
            f"preset <code>{esc(preset)}</code> &middot; stage <code>{esc(stage)}</code></nav>")


def provenance_html(stage_dir: Path) -> str:
    """The stage's provenance record (:mod:`modclust.pipeline.provenance`) as a folded table, or a
    line saying the stage was built before records were kept."""
    rec = provenance.read(stage_dir)
    if rec is None:
        return ('<div class="modclust-provenance">No provenance record: this stage was built before records '
                "were kept, or by hand.</div>")
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in provenance.summary_rows(rec))
    return (f'<details class="modclust-provenance"><summary>Provenance: what made this stage '
            f'(<code>python -m modclust.pipeline provenance PRESET</code> compares it with the checkout)</summary>'
            f"<table>{rows}</table></details>")


def write_stage_page(notebook: Path, out: Path, preset: str, exp: HTMLExporter | None = None,
                     previous: str | None = None, following: str | None = None) -> StagePage:
    """Convert one executed notebook into the page ``out``, linking the pages of the stages
    ``previous`` and ``following`` (None: no such stage); returns what the index says of it."""
    stage = notebook.stem
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError) as err:
        raise ReportError(f"{notebook} cannot be read ({type(err).__name__}: {err}): "
                          f"run its stage again (make results PRESET={preset})") from err
    exp = exp or exporter()
    try:
        body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": stage},
                                                        "modclust_nav": stage_nav(preset, stage, previous, following),
                                                        "modclust_provenance": provenance_html(notebook.parent / stage)})
    except Exception as err:  # nbconvert's own errors have no common base; name the notebook
        raise ReportError(f"{notebook} cannot be converted to HTML ({type(err).__name__}: {err})") from err
    out.write_text(body, encoding="utf-8")
    cells = tuple((str(c.get("id", "")), c.source) for c in nb.cells if c.cell_type == "code")
    return StagePage(stage, _title(nb, stage), _count_plotly(nb), cells)


def index_html(preset: str, pages: Sequence[StagePage], figures: Sequence[Path], paper: bool,
               headline: str = "", previews: Sequence[Path] = ()) -> str:
    """The index page: the preset, the ``headline`` (HTML, :func:`headline_html`), its stage
    pages, its figure PDFs and the PNGs among ``previews`` beside them (paths relative to the build
    folder), and the paper when ``paper``; every link relative to ``report/``."""
    esc = html.escape
    def link(href: str, text: str) -> str:
        return f'<a href="{esc(quote(href))}">{esc(text)}</a>'

    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<title>modclust report: preset {esc(preset)}</title>\n<style>{_INDEX_CSS}</style>\n</head>\n<body>",
             f"<h1>modclust report: preset <code>{esc(preset)}</code></h1>",
             f"<p class=\"note\">The executed notebooks of <code>build/{esc(preset)}/</code>, "
             "their figures and the paper; everything here works offline.</p>",
             '<nav><a href="#headline">headline</a> &middot; <a href="#paper">paper</a> &middot; '
             '<a href="#stages">stages</a> &middot; <a href="#figures">figures</a></nav>',
             headline, '<h2 id="paper">Paper</h2>']
    parts.append(f"<ul><li>{link('../paper.pdf', 'paper.pdf')}</li></ul>" if paper else
                 f"<p class=\"note\">Not compiled yet: <code>make paper PRESET={esc(preset)}</code>.</p>")
    parts.append('<h2 id="stages">Stages</h2>\n<ul>')
    for p in pages:
        figs = f" ({p.plotly_figures} interactive figure{'s' * (p.plotly_figures != 1)})" if p.plotly_figures else ""
        parts.append(f"<li>{link(p.file, p.stage)}: {esc(p.title)}{figs}</li>")
    parts.append('</ul>\n<h2 id="figures">Figures</h2>')
    if not figures:
        parts.append("<p class=\"note\">No figure PDFs yet.</p>")
    folders = sorted({f.parts[0] for f in figures})
    for folder in folders:
        parts.append(f"<h3><code>{esc(folder)}</code></h3>\n<ul>")
        for f in (f for f in figures if f.parts[0] == folder):
            png = f.with_suffix(".png")
            preview = f" ({link('../' + png.as_posix(), 'PNG')})" if png in previews else ""
            parts.append(f"<li>{link('../' + f.as_posix(), f.name)}{preview}</li>")
        parts.append("</ul>")
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


def write_report(build: str | os.PathLike[str], preset: str, stages: Sequence[str] | None = None) -> Path:
    """Write ``build/report/`` for ``preset`` from the executed notebooks of ``stages``.

    ``build`` is the preset's build folder (``build/<preset>``); ``stages`` defaults to every
    stage executed there (:func:`executed_stages`). Returns ``build/report/index.html``. Raises
    :class:`ReportError` before writing anything when a stage's notebook is missing.
    """
    build = Path(build)
    stages = executed_stages(build) if stages is None else list(stages)
    notebooks = _stage_notebooks(build, preset, stages)
    if not PLOTLY_JS.is_file():
        raise ReportError(f"the plotly package has no {PLOTLY_JS}: reinstall it (pip install --force-reinstall plotly)")
    try:
        with atomic_dir(build / REPORT_DIR) as tmp:
            shutil.copyfile(PLOTLY_JS, tmp / PLOTLY_JS.name)
            exp = exporter()
            pages = [write_stage_page(nb, tmp / f"{nb.stem}.html", preset, exp,
                                      stages[i - 1] if i > 0 else None, stages[i + 1] if i + 1 < len(stages) else None)
                     for i, nb in enumerate(notebooks)]
            figures = figure_pdfs(build)
            previews = [f.with_suffix(".png") for f in figures if (build / f.with_suffix(".png")).is_file()]
            try:
                headline = headline_html(build, preset, {p.stage: p for p in pages}, figures)
            except (ValueError, KeyError) as err:  # a claims_<stage>.json that is not the records' JSON
                raise ReportError(f"the compiled paper's files in {build / 'paper' / 'generated'} cannot be read "
                                  f"({type(err).__name__}: {err}): compile the paper again "
                                  f"(make paper PRESET={preset})") from err
            index = index_html(preset, pages, figures, (build / "paper.pdf").is_file(), headline, previews)
            (tmp / "index.html").write_text(index, encoding="utf-8")
    except OSError as err:
        raise ReportError(f"could not write {build / REPORT_DIR} ({err}): make {build} writable and run again") from err
    return build / REPORT_DIR / "index.html"
