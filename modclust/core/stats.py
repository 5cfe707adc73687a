"""Summaries over seeds: mean and a Student-t confidence interval, comparisons, a Pareto front,
interpolation.

Every interval, test and "which side of zero" verdict in the package comes from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats as _st

from modclust.core.checks import check_finite_numbers, check_float, check_int, check_open_unit


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    std: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def fmt(self, digits: int = 3) -> str:
        digits = check_int("digits", digits, 0)
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def t_half_width(std, n: int, level: float = 0.95):
    """Half-width of the two-sided Student-t interval of a mean of ``n`` values with sample std ``std``.

    ``std`` may be a float or a numpy array (one half-width per entry); 0 for ``n < 2``, where
    there is no interval, so callers can draw a bare mean.
    """
    if n < 2:
        return std * 0.0
    return _st.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean with a two-sided Student-t interval (nan bounds for a single value).

    ``values`` must be finite (drop undefined, nan, values first: a nan would make every bound
    nan); ``level`` lies strictly between 0 and 1.
    """
    level = check_open_unit("level", level, hint="the confidence level, e.g. 0.95")
    values = check_finite_numbers("mean_ci values", values, min_length=1,
                                  hint="drop undefined (nan) values before summarising")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_half_width(std, n, level)
    return Interval(mean, mean - half, mean + half, std, n)


def direction(iv: Interval) -> str:
    """'higher' or 'lower' when the interval lies above or below 0, else 'indistinguishable'.

    The verdict for a difference (e.g. paired over seeds); a single value (no interval) or an
    undefined bound is 'indistinguishable'.
    """
    if iv.n < 2:
        return "indistinguishable"
    return "higher" if iv.lo > 0 else "lower" if iv.hi < 0 else "indistinguishable"


@dataclass(frozen=True)
class Contrast:
    """One comparison of ``a`` against ``b`` over seeds, by one stated rule.

    ``rule`` is 'paired' (a paired t-test on the seeds both share: the two settings of a seed
    share its initialisation and data order) or 'welch' (Welch's t-test of two independent
    samples). ``diff`` is the difference a - b with its 95 % interval (of the paired differences,
    or Welch's, with the Welch--Satterthwaite degrees of freedom), ``p`` the two-sided p-value of
    no difference and ``tost_p`` that of the equivalence test (two one-sided tests against
    ``-margin`` and ``+margin``; nan without a margin). With ``log`` the values are compared on a
    log scale, so ``diff`` is a log ratio and ``margin`` a ratio above 1 (1.25: within 25 %).
    """

    rule: str
    a: Interval
    b: Interval
    diff: Interval
    p: float
    tost_p: float = math.nan
    margin: float = math.nan
    log: bool = False

    @property
    def reach(self) -> float:
        """The largest difference the interval leaves possible, ``max(|lo|, |hi|)`` of ``diff``
        (a ratio for ``log``): what the data could have missed when they cannot tell."""
        r = max(abs(self.diff.lo), abs(self.diff.hi))
        return math.exp(r) if self.log else r


RULES = ("paired", "welch")


def _welch_df(va: float, na: int, vb: float, nb: int) -> float:
    num = (va / na + vb / nb) ** 2
    den = (va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)
    return num / den if den > 0 else float(na + nb - 2)


def contrast(a: Sequence[float], b: Sequence[float], rule: str, margin: float | None = None, log: bool = False,
         level: float = 0.95) -> Contrast:
    """:class:`Contrast` of ``a`` against ``b`` by ``rule`` ('paired': ``a[i]`` and ``b[i]`` are one
    seed's two settings, so both have one value per seed in the same order; 'welch': independent).

    ``margin`` (optional) is the equivalence margin in the values' unit (a ratio above 1 with
    ``log``). Values must be finite (positive with ``log``).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    a = check_finite_numbers("test's a", a, min_length=1, hint="drop undefined (nan) values first")
    b = check_finite_numbers("test's b", b, min_length=1, hint="drop undefined (nan) values first")
    if rule == "paired" and len(a) != len(b):
        raise ValueError(f"a paired test needs one value per seed in both settings, got {len(a)} and {len(b)}")
    if log and (min(a) <= 0 or min(b) <= 0):
        raise ValueError("a comparison on a log scale needs positive values")
    ta = [math.log(v) for v in a] if log else list(a)
    tb = [math.log(v) for v in b] if log else list(b)
    if margin is not None:
        margin = check_float("margin", margin,
                             hint="the equivalence margin, e.g. 0.5 (or a ratio such as 1.25 with log)")
        if margin <= (1.0 if log else 0.0):
            raise ValueError(f"an equivalence margin must be above {'1 (a ratio)' if log else '0'}, got {margin}")
    m = math.log(margin) if (margin is not None and log) else margin
    if rule == "paired":
        d = [x - y for x, y in zip(ta, tb)]
        diff = mean_ci(d, level)
        n = len(d)
        se, df = (diff.std / math.sqrt(n), n - 1) if n > 1 else (math.nan, 0)
    else:
        ia, ib = mean_ci(ta, level), mean_ci(tb, level)
        mean = ia.mean - ib.mean
        if ia.n < 2 or ib.n < 2:
            se, df = math.nan, 0
            diff = Interval(mean, math.nan, math.nan, math.nan, min(ia.n, ib.n))
        else:
            va, vb = ia.std ** 2, ib.std ** 2
            se, df = math.sqrt(va / ia.n + vb / ib.n), _welch_df(va, ia.n, vb, ib.n)
            half = _st.t.ppf(0.5 + level / 2, df) * se if se > 0 else 0.0
            diff = Interval(mean, mean - half, mean + half, se, min(ia.n, ib.n))
    if df < 1 or not se == se:
        p = tost = math.nan
    elif se == 0:
        p = 1.0 if diff.mean == 0 else 0.0
        tost = (0.0 if abs(diff.mean) < m else 1.0) if m is not None else math.nan
    else:
        p = float(2 * _st.t.sf(abs(diff.mean) / se, df))
        tost = (float(max(_st.t.sf((diff.mean + m) / se, df), _st.t.cdf((diff.mean - m) / se, df)))
                if m is not None else math.nan)
    return Contrast(rule, mean_ci(list(a), level), mean_ci(list(b), level), diff, p, tost,
                math.nan if margin is None else float(margin), log)


def holm(ps: Sequence[float]) -> list[float]:
    """Holm--Bonferroni adjusted p-values, in the given order: reject at level alpha where the
    adjusted value is below alpha, which controls the family-wise error over all of ``ps``.

    An undefined (nan) p-value counts in the family's size and stays nan.
    """
    m = len(ps)
    order = sorted((i for i in range(m) if ps[i] == ps[i]), key=lambda i: ps[i])
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both maximised), by x.

    A point is dominated when another is at least as good on both and better on one; equal
    points are all kept. For (clusterability, accuracy) this is the trade-off curve.
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best_y, best_x = [], float("-inf"), None
    for i in order:
        x, y = points[i]
        if y > best_y or (y == best_y and x == best_x):
            front.append(i)
            if y > best_y:
                best_y, best_x = y, x
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def size_at_faithfulness(points: Sequence[tuple[float, float]], level: float) -> float:
    """The circuit size at faithfulness ``level``, from (faithfulness, size) points of a threshold sweep.

    Linear interpolation of log size between the two sweep points that bracket ``level`` (sorted
    by faithfulness); nan when the sweep does not reach ``level`` on both sides. Points with an
    undefined (nan) faithfulness or a size that is not positive are left out.
    """
    level = check_float("level", level, hint="the faithfulness to match, e.g. 0.9")
    pts = sorted((f, s) for f, s in points if f == f and s > 0)
    for (f0, s0), (f1, s1) in zip(pts, pts[1:]):
        if f0 <= level <= f1:
            if f1 == f0:
                return math.sqrt(s0 * s1)
            t = (level - f0) / (f1 - f0)
            return math.exp((1 - t) * math.log(s0) + t * math.log(s1))
    if len(pts) == 1 and pts[0][0] == level:
        return pts[0][1]
    return float("nan")
