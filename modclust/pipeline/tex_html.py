"""The LaTeX of the paper's generated files as HTML, for the report's headline.

The generated macros and tables (``build/<preset>/paper/generated/*.tex``, all written through
:mod:`modclust.paper.latex`) use a small part of LaTeX, and :func:`tex_to_html` renders that part:

- text: ``\\,`` (a narrow no-break space), ``~``, ``\\ ``, ``\\quad``, the escaped characters
  ``\\% \\& \\# \\$ \\_ \\{ \\}``, ``--`` and ``---`` (en and em dash), groups ``{...}``, ``%``
  comments, and ``\\emph``, ``\\textit``, ``\\textbf``, ``\\texttt``;
- math, ``$...$`` and ``\\ensuremath{...}``: letters in italics, ``\\mathrm``, sub- and
  superscripts, a minus sign for ``-``, and the symbols of :data:`SYMBOLS` (``\\pm``, ``\\times``,
  ``\\lambda``...);
- ``\\begin{tabular}`` (booktabs rules and ``\\multicolumn``) as a ``<table>``, the rows above
  ``\\midrule`` as its header, each cell of class l, r, c or p, its column's (:func:`tabular_html`);
- the macros given (name -> definition, e.g. from :func:`read_macros`), expanded.

Nothing else: any other command is shown as its source in ``<span class="tex-unknown">``, never
dropped, so a new command in a generated file shows on the page until it is added here.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

SYMBOLS = {"pm": "±", "times": "×", "lambda": "λ", "Delta": "Δ", "alpha": "α", "mu": "μ", "sigma": "σ",
           "leq": "≤", "geq": "≥", "neq": "≠", "approx": "≈", "cdot": "·", "ldots": "…", "dots": "…",
           "infty": "∞", "to": "→", "log": "log", "quad": "\u2003", "qquad": "\u2003\u2003",
           "textbackslash": "\\", "textasciitilde": "~"}
"""Commands that stand for one character or word, in text and in math."""

STYLES = {"emph": "em", "textit": "i", "textbf": "b", "texttt": "code"}
"""Commands of one argument that set their text in an HTML element."""

_ESCAPED = {"%": "%", "&": "&amp;", "#": "#", "$": "$", "_": "_", "{": "{", "}": "}", " ": " ",
            ",": "\u202f", ";": "\u2005", "!": "", "-": ""}
_UPRIGHT = ("mathrm", "text", "textrm", "mbox")  # text inside math
_RULES = ("toprule", "midrule", "bottomrule", "hline")
_COLUMN = re.compile(r"[lrc]|p\{[^}]*\}")
_NEWCOMMAND = re.compile(r"\\newcommand\{\\([A-Za-z]+)\}")
_MAX_DEPTH = 20


class TexError(ValueError):
    """The LaTeX is malformed (an unclosed group, ``$`` or environment, a macro that expands forever)."""


# -- reading ------------------------------------------------------------------------------------

def _group(tex: str, i: int) -> tuple[str, int]:
    """The text of the group opening at ``tex[i] == '{'`` and the index after its closing brace."""
    depth, j = 0, i
    while j < len(tex):
        c = tex[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return tex[i + 1:j], j + 1
        j += 1
    raise TexError(f"unclosed group: {tex[i:i + 60]!r}")


def _argument(tex: str, i: int) -> tuple[str, int]:
    """A command's argument from ``i``: a group's text, a command, or one character."""
    while i < len(tex) and tex[i] in " \t\n":
        i += 1
    if i >= len(tex):
        raise TexError("a command lacks its argument")
    if tex[i] == "{":
        return _group(tex, i)
    if tex[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", tex[i:], re.S)
        return m.group(0), i + len(m.group(0))
    return tex[i], i + 1


def macros_of(text: str) -> dict[str, str]:
    """The ``\\newcommand{\\Name}{definition}`` of a macro file's text, name -> definition, in order."""
    out = {}
    for m in _NEWCOMMAND.finditer(text):
        i = m.end()
        if i < len(text) and text[i] == "{":
            out[m.group(1)], _ = _group(text, i)
    return out


def read_macros(path: str | os.PathLike[str]) -> dict[str, str]:
    """:func:`macros_of` the file ``path``."""
    return macros_of(Path(path).read_text(encoding="utf-8"))


def _split(text: str, sep: str) -> list[str]:
    """``text`` cut at each ``sep`` outside groups, math and commands (``\\&`` is no cell break)."""
    parts, depth, math, start, i = [], 0, False, 0, 0
    while i < len(text):
        if depth == 0 and not math and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "%":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        depth += (c == "{") - (c == "}")
        math ^= c == "$"
        i += 1
    parts.append(text[start:])
    return parts


def _strip_rules(row: str) -> tuple[str, bool]:
    """A row without its leading booktabs rules, and whether one of them was ``\\midrule``."""
    mid = False
    while True:
        row = re.sub(r"^(\s|%[^\n]*\n)+", "", row)
        m = re.match(r"\\(" + "|".join(_RULES) + r")(?![A-Za-z])", row) or re.match(r"\\cmidrule(\([^)]*\))?\{[^}]*\}", row)
        if not m:
            return row, mid
        mid |= m.group(0) == "\\midrule"
        row = row[m.end():]


def tabular_rows(tex: str) -> tuple[str, list[list[str]], list[list[str]]]:
    """The first ``tabular`` of ``tex``: its column spec, the header rows (above ``\\midrule``;
    none without one) and the body rows, each a list of its cells' LaTeX."""
    begin = re.search(r"\\begin\{tabular\}", tex)
    if begin is None:
        raise TexError("no \\begin{tabular} in the text")
    spec, i = _argument(tex, begin.end())
    end = tex.find("\\end{tabular}", i)
    if end < 0:
        raise TexError("\\begin{tabular} without \\end{tabular}")
    rows: list[list[str]] = []
    header = None  # the rows above the first \midrule
    for raw in _split(tex[i:end], "\\\\"):
        row, mid = _strip_rules(raw)
        if mid and header is None:
            header = len(rows)
        if row.strip():
            rows.append([cell.strip() for cell in _split(row, "&")])
    header = header or 0
    return spec, rows[:header], rows[header:]


# -- rendering ----------------------------------------------------------------------------------

class _Renderer:
    def __init__(self, macros: Mapping[str, str]) -> None:
        self.macros = macros
        self.depth = 0

    def text(self, tex: str) -> str:
        return self._render(tex, math=False)

    def math(self, tex: str) -> str:
        return f'<span class="math">{self._render(tex, math=True)}</span>'

    def _unknown(self, source: str) -> str:
        return f'<span class="tex-unknown">{html.escape(source)}</span>'

    def _render(self, tex: str, math: bool) -> str:
        out: list[str] = []
        i, n = 0, len(tex)
        while i < n:
            c = tex[i]
            if c == "%":
                end = tex.find("\n", i)
                i = n if end < 0 else end + 1
            elif c == "\\":
                html_, i = self._command(tex, i, math)
                out.append(html_)
            elif c == "{":
                body, i = _group(tex, i)
                out.append(self._render(body, math))
            elif c == "}":
                raise TexError(f"unmatched '}}' in {tex!r}")
            elif c == "$":
                end = tex.find("$", i + 1)
                while end > 0 and tex[end - 1] == "\\":
                    end = tex.find("$", end + 1)
                if end < 0:
                    raise TexError(f"unclosed $ in {tex!r}")
                out.append(self._render(tex[i + 1:end], True) if math else self.math(tex[i + 1:end]))
                i = end + 1
            elif c == "~":
                out.append("\u00a0")
                i += 1
            elif math:
                i = self._math_char(tex, i, out)
            elif tex.startswith("---", i):
                out.append("\u2014")
                i += 3
            elif tex.startswith("--", i):
                out.append("\u2013")
                i += 2
            else:
                out.append(html.escape(c, quote=False))
                i += 1
        return "".join(out)

    def _math_char(self, tex: str, i: int, out: list[str]) -> int:
        c = tex[i]
        if c.isspace():
            return i + 1
        if c in "_^":
            arg, j = _argument(tex, i + 1)
            tag = "sub" if c == "_" else "sup"
            out.append(f"<{tag}>{self._render(arg, True)}</{tag}>")
            return j
        m = re.match(r"[A-Za-z]+", tex[i:])
        if m:
            out.append(f"<i>{m.group(0)}</i>")
            return i + len(m.group(0))
        if c == "-":
            out.append("\u2212")
        elif c in "=<>" and tex[:i].strip() and tex[i + 1:].strip():
            out.append(f"\u202f{html.escape(c)}\u202f")  # a relation between two sides, no line break
        else:
            out.append(html.escape(c, quote=False))
        return i + 1

    def _command(self, tex: str, i: int, math: bool) -> tuple[str, int]:
        m = re.match(r"\\([A-Za-z]+)[ \t]*\n?[ \t]*|\\(.)", tex[i:], re.S)
        if m is None:
            return self._unknown("\\"), i + 1
        j = i + m.end()
        name = m.group(1)
        if name is None:  # a control symbol
            sym = m.group(2)
            if sym == "\\":
                return "<br>", j
            return (_ESCAPED[sym], j) if sym in _ESCAPED else (self._unknown(m.group(0)), j)
        if name in self.macros:
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise TexError(f"\\{name} expands more than {_MAX_DEPTH} macros deep (a macro that defines itself?)")
            try:
                return self._render(self.macros[name], math), j
            finally:
                self.depth -= 1
        if name in SYMBOLS:
            return SYMBOLS[name], j
        if name == "ensuremath":
            arg, j = _argument(tex, j)
            return (self._render(arg, True) if math else self.math(arg)), j
        if name in STYLES:
            arg, j = _argument(tex, j)
            tag = STYLES[name]
            return f"<{tag}>{self._render(arg, False)}</{tag}>", j
        if name in _UPRIGHT:
            arg, j = _argument(tex, j)
            return self._render(arg, False), j
        if name == "begin" and re.match(r"\{tabular\}", tex[j:]):
            end = tex.find("\\end{tabular}", j)
            if end < 0:
                raise TexError("\\begin{tabular} without \\end{tabular}")
            end += len("\\end{tabular}")
            return self.tabular(tex[i:end]), end
        source = m.group(0)
        return self._unknown(source.rstrip()) + (" " if source != source.rstrip() else ""), j

    def tabular(self, tex: str, extra: tuple[str, Sequence[str]] | None = None) -> str:
        spec, header, body = tabular_rows(tex)
        aligns = [a[0] for a in _COLUMN.findall(spec)]  # l, r, c or p (a paragraph, wrapped)
        if extra is not None and len(extra[1]) != len(body):
            raise ValueError(f"an extra column needs one cell per body row ({len(body)}), got {len(extra[1])}")
        parts = ['<table class="tex-table">']
        for name, rows, cell_tag in (("thead", header, "th"), ("tbody", body, "td")):
            if not rows:
                continue
            parts.append(f"<{name}>")
            for r, row in enumerate(rows):
                cells, col = [], 0
                for cell in row:
                    span, align = 1, aligns[col] if col < len(aligns) else "l"
                    mc = re.match(r"\\multicolumn\s*", cell)
                    if mc:
                        n, k = _argument(cell, mc.end())
                        a, k = _argument(cell, k)
                        cell, _ = _argument(cell, k)
                        span, align = int(n), (_COLUMN.findall(a) or ["l"])[0][0]
                    attrs = f' class="{align}"' + (f' colspan="{span}"' if span > 1 else "")
                    cells.append(f"<{cell_tag}{attrs}>{self.text(cell)}</{cell_tag}>")
                    col += span
                if extra is not None:
                    cells.append(f'<{cell_tag} class="source">'
                                 f'{html.escape(extra[0]) if name == "thead" else extra[1][r]}</{cell_tag}>')
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append(f"</{name}>")
        parts.append("</table>")
        return "".join(parts)


def tex_to_html(tex: str, macros: Mapping[str, str] | None = None) -> str:
    """``tex`` (running text, which may hold math and a ``tabular``) as HTML; ``macros`` (name ->
    definition) are expanded. Raises :class:`TexError` on malformed LaTeX."""
    return _Renderer(macros or {}).text(tex)


def tabular_html(tex: str, macros: Mapping[str, str] | None = None,
                 extra: tuple[str, Sequence[str]] | None = None) -> str:
    """The first ``tabular`` of ``tex`` as a ``<table class="tex-table">``; ``extra`` = (header, one
    HTML cell per body row) adds a last column of class ``source`` (e.g. links), not LaTeX."""
    return _Renderer(macros or {}).tabular(tex, extra)
