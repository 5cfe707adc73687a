"""Summaries over seeds: mean and a Student-t confidence interval, comparisons, interpolation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from scipy import stats as _st


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
        if self.n < 2:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def mean_ci(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean with a two-sided Student-t interval (nan bounds for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _st.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, std, n)


def compare(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> str:
    """'higher', 'lower' or 'indistinguishable': values ``a`` against ``b`` by Welch's t-test.

    Used to generate sentences whose direction depends on the data, so a rerun with other
    parameters cannot leave a false claim in the paper.
    """
    if len(a) < 2 or len(b) < 2:
        return "indistinguishable"
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if ma == mb:
        return "indistinguishable"
    p = _st.ttest_ind(a, b, equal_var=False).pvalue
    if not p < alpha:  # also catches nan (both samples constant)
        return "indistinguishable"
    return "higher" if ma > mb else "lower"


def size_at_faithfulness(points: Sequence[tuple[float, float]], level: float) -> float:
    """The circuit size at faithfulness ``level``, from (faithfulness, size) points of a threshold sweep.

    Linear interpolation of log size between the two sweep points that bracket ``level`` (sorted
    by faithfulness); nan when the sweep does not reach ``level`` on both sides.
    """
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
