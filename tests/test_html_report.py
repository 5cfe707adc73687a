"""modclust.pipeline.report: the executed notebooks as HTML pages, checked in real headless Chromium.

A small fake build folder (two executed notebooks, one holding plotly figures in the mimetype the
pipeline produces, a figure PDF and a paper) is turned into ``build/<preset>/report/``; Chromium
loads the pages from disk (no network) and must find plotly's SVG drawn once per plotly output,
and every relative link of the index must lead to a file. Chromium is required: without it these
tests fail, naming ``make browser-tools``, which installs it.
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

import nbformat
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from modclust.core import io as atomic_io
from modclust.pipeline.report import PLOTLY_JS, PLOTLY_MIMETYPE, REPORT_DIR, ReportError, write_report

PRESET = "tiny"
STAGES = ["01_train", "02_ablate"]
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
    """Every ``href`` and ``src`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("href", "src") and v is not None]


def links_of(page_html: str) -> list[str]:
    parser = _Links()
    parser.feed(page_html)
    return parser.links


def relative_links(page_html: str) -> list[str]:
    """The links that point at files beside the page (no scheme, no host, not a bare #anchor)."""
    out = []
    for link in links_of(page_html):
        parts = urlsplit(link)
        if not parts.scheme and not parts.netloc and parts.path and not parts.path.startswith("/"):
            out.append(link)
    return out


def assert_links_resolve(page: Path, page_html: str) -> list[str]:
    links = relative_links(page_html)
    missing = [ln for ln in links if not (page.parent / unquote(urlsplit(ln).path)).is_file()]
    assert not missing, f"{page.name}: links to missing files: {missing}"
    return links


def assert_offline(page_html: str) -> None:
    """No script, style or image comes from the network (a CDN)."""
    remote = [ln for ln in links_of(page_html) if urlsplit(ln).scheme in ("http", "https") or ln.startswith("//")]
    assert not remote, f"the page loads from the network: {remote}"


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


def make_build(root: Path) -> Path:
    """``root/build/<PRESET>`` with two executed stage notebooks, a figure PDF and a paper."""
    build = root / "build" / PRESET
    (build / "05_numbers" / "figures").mkdir(parents=True)
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    train = new_notebook(metadata=meta, cells=[
        new_markdown_cell("# Training the models\nOne model per $\\lambda$."),
        new_code_cell("print('trained')\nfg.plotly_lines(...).show()", execution_count=1, outputs=[
            new_output("stream", name="stdout", text="trained\n"),
            plotly_output(FIGURE_TITLES[0], "display_data")]),
        new_code_cell("fig", execution_count=2, outputs=[plotly_output(FIGURE_TITLES[1], "execute_result")]),
    ])
    ablate = new_notebook(metadata=meta, cells=[
        new_markdown_cell("# Ablations"),
        new_code_cell("accuracy", execution_count=1, outputs=[
            new_output("execute_result", data={"text/plain": "accuracy 0.97"}, execution_count=1)]),
    ])
    nbformat.write(train, build / "01_train.ipynb")
    nbformat.write(ablate, build / "02_ablate.ipynb")
    (build / "05_numbers" / "figures" / "tradeoff.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
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
    assert set(links) == {"01_train.html", "02_ablate.html", "../05_numbers/figures/tradeoff.pdf", "../paper.pdf"}


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
    assert sorted(p.name for p in report.glob("*.html")) == ["01_train.html", "02_ablate.html", "index.html"]
    assert leftovers(build) == []
    page = dump_dom(chromium, report / "index.html", tmp_path / "profile")
    links = assert_links_resolve(report / "index.html", page)
    assert set(links) == {"01_train.html", "02_ablate.html", "../05_numbers/figures/tradeoff.pdf"}
    assert "make paper PRESET=tiny" in page  # no paper yet: said, not linked


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
