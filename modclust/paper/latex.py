"""LaTeX for the paper's generated files: numbers, ``mean ± half-width``, escaping, macro names,
tables and the ``\\newcommand`` files the paper ``\\input``s.

Every generated number and macro file goes through here, so the paper's formatting has one
rule each: a number (``num``), an interval over seeds (``pm``), a layer's name in a macro name
(``layer_word``), a macro name (``check_macro_names``) and a generated file's header.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modclust.core.io import write_atomic
from modclust.core.stats import Interval, mean_ci

_MACRO_NAME = re.compile(r"[A-Za-z]+")
_COLUMN = re.compile(r"[lrc]|p\{[^}]*\}")  # one column of a tabular's alignment
_LAYER = re.compile(r"fc([0-9]+)")
_DIGITS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")
_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


# -- names ------------------------------------------------------------------------------------

def letters(n: int) -> str:
    """A number spelt for a LaTeX macro name, which may hold letters only: 12 -> 'OneTwo'."""
    return "".join(_DIGITS[int(d)] for d in str(int(n)))


def has_layer_word(layer: str) -> bool:
    """Whether :func:`layer_word` spells ``layer`` (a layer ``fcN``, or the layer set ``'all'``)."""
    return layer == "all" or _LAYER.fullmatch(layer) is not None


def layer_word(layer: str) -> str:
    """A layer's name spelt for macro names: 'fc2' -> 'FcTwo', 'fc12' -> 'FcOneTwo', 'all' -> 'All'.

    ``'all'`` is the layer set of every layer (``experiments.grid.layers_label``); any other
    name (e.g. 'fc2+fc3') raises ValueError: check with :func:`has_layer_word` first.
    """
    if layer == "all":
        return "All"
    match = _LAYER.fullmatch(layer)
    if match is None:
        raise ValueError(f"no macro word for layer {layer!r}: expected a layer fcN or the layer set 'all'")
    return "Fc" + letters(int(match.group(1)))


def check_macro_names(names: Iterable[str]) -> None:
    """ValueError naming every macro name that is not letters only (LaTeX's rule for ``\\newcommand``)."""
    bad = [n for n in names if not isinstance(n, str) or _MACRO_NAME.fullmatch(n) is None]
    if bad:
        raise ValueError(f"LaTeX macro names take letters only, got {', '.join(map(repr, bad))} "
                         "(spell numbers: letters(3) -> 'Three')")


# -- text and numbers -------------------------------------------------------------------------

def tex_escape(text: str) -> str:
    """Escape the characters LaTeX treats specially in running text."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def num(x: float, digits: int = 2) -> str:
    """A plain number, with a real minus sign in math mode where negative; 'n/a' for nan."""
    if math.isnan(x):
        return "n/a"
    s = f"{x:.{digits}f}"
    if float(s) == 0:
        s = s.lstrip("-")  # no "-0" for a value that rounds to zero
    return s.replace("-", "\\ensuremath{-}") if s.startswith("-") else s


_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def number_word(n: int) -> str:
    """A count in words for running text up to twelve ("eight"), digits above."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def count_noun(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless n is 1: "1 epoch", "10 epochs" (never "epoch(s)");
    ``plural`` for a noun that does not add an s ("moduli")."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def pm(iv: Interval, digits: int = 2, scale: float = 1.0) -> str:
    """``mean ± half-width`` of a 95 % interval (just the mean for a single seed)."""
    if iv.n < 2 or math.isnan(iv.hi):
        return num(iv.mean * scale, digits)
    half = (iv.hi - iv.lo) / 2 * scale
    return f"{num(iv.mean * scale, digits)}\\,\\ensuremath{{\\pm}}\\,{num(half, digits)}"


def pm_values(values: Sequence[float], digits: int = 2) -> str:
    """:func:`pm` of the seeds' values, undefined ones (nan) left out; 'n/a' when none is defined."""
    vals = [float(v) for v in values if v == v]
    return pm(mean_ci(vals), digits) if vals else "n/a"


def p_text(p: float) -> str:
    """A p-value in math mode: '$p<0.001$', '$p=0.012$' or '$p$ undefined' (nan)."""
    if math.isnan(p):
        return "$p$ undefined"
    if p < 0.001:
        return "$p<0.001$"
    return f"$p={p:.3f}$"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A booktabs ``tabular`` (the float and caption stay in the paper)."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(_COLUMN.findall(align)) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError("every row of a table needs one cell per header column")
    lines = [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(header) + " \\\\", "\\midrule"]
    lines += [" & ".join(r) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# -- generated files --------------------------------------------------------------------------

def generated_header(source: str | None = None) -> str:
    """The comment line that opens every generated file, naming the notebook that wrote it."""
    return f"% Generated by the paper pipeline{f' ({source})' if source else ''}. Do not edit."


def macros_tex(macros: Mapping[str, object], source: str | None = None) -> str:
    """``\\newcommand`` lines for the macros (name -> value), after the generated-file header."""
    check_macro_names(macros)
    lines = [generated_header(source)]
    lines += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in macros.items()]
    return "\n".join(lines) + "\n"


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_macros(path: str | os.PathLike[str], macros: Mapping[str, object], source: str | None = None) -> Path:
    """The macros as a ``\\newcommand`` file (:func:`macros_tex`), written atomically."""
    return write_text(path, macros_tex(macros, source))


@dataclass
class Macros:
    """An ordered set of LaTeX macros; names are letters only and defined once.

    ``source`` names the notebook that writes them, for the file's header.
    """

    items: dict[str, str] = field(default_factory=dict)
    source: str | None = None

    def add(self, name: str, value: str | float | int, digits: int = 2) -> str:
        check_macro_names([name])
        if name in self.items:
            raise ValueError(f"macro \\{name} is defined twice")
        if isinstance(value, float):
            value = num(value, digits)
        self.items[name] = str(value)
        return name

    def tex(self) -> str:
        return macros_tex(self.items, self.source)

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_text(path, self.tex())
