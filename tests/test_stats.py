"""modclust.core.stats: intervals, the paired and Welch tests with TOST, Holm's correction, the
Pareto front and the size at a faithfulness level, each against its definition or scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from modclust.core.stats import (Interval, contrast, direction, holm, mean_ci, pareto_front, size_at_faithfulness,
                                 t_half_width)

NAN, INF = math.nan, math.inf


def test_mean_ci_is_the_student_t_interval():
    v = [0.91, 0.93, 0.90, 0.94, 0.92]
    iv = mean_ci(v)
    lo, hi = st.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=st.sem(v))
    assert (iv.mean, iv.lo, iv.hi) == pytest.approx((np.mean(v), lo, hi))
    assert iv.std == pytest.approx(np.std(v, ddof=1)) and iv.n == 5
    one = mean_ci([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo) and one.fmt() == "0.500"
    assert t_half_width(1.0, 1) == 0.0  # no interval from one value
    with pytest.raises(ValueError, match="nan"):
        mean_ci([0.5, math.nan])
    with pytest.raises(ValueError, match="level"):
        mean_ci(v, level=1.0)


def test_paired_and_welch_match_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 6), rng.normal(0.5, 1, 6)
    assert contrast(a, b, "paired").p == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert contrast(a, b, "welch").p == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    d = contrast(a, b, "paired").diff
    assert d.mean == pytest.approx((a - b).mean())
    # the paired interval is the one-sample interval of the differences
    half = st.t.ppf(0.975, 5) * (a - b).std(ddof=1) / math.sqrt(6)
    assert (d.lo, d.hi) == pytest.approx(((a - b).mean() - half, (a - b).mean() + half))


def test_a_paired_test_needs_one_value_per_seed_in_both():
    with pytest.raises(ValueError, match="one value per seed"):
        contrast([1, 2, 3], [1, 2], "paired")
    with pytest.raises(ValueError, match="rule must be"):
        contrast([1, 2], [1, 2], "student")
    with pytest.raises(ValueError, match="margin"):
        contrast([1, 2], [1, 3], "paired", margin=-1)


def test_tost_is_two_one_sided_tests():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 0.01, 8)
    b = a + rng.normal(0, 0.01, 8)
    t = contrast(a, b, "paired", margin=0.05)
    d = a - b
    lower = st.ttest_1samp(d, -0.05, alternative="greater").pvalue
    upper = st.ttest_1samp(d, 0.05, alternative="less").pvalue
    assert t.tost_p == pytest.approx(max(lower, upper))
    assert t.tost_p < 0.05  # a tiny difference, well inside the margin
    wide = contrast(a, b + 0.05, "paired", margin=0.05)
    assert wide.tost_p > 0.05  # a difference near the margin is not equivalence


def test_log_scale_compares_ratios():
    t = contrast([200, 220, 180], [100, 110, 90], "paired", margin=1.25, log=True)
    assert math.exp(t.diff.mean) == pytest.approx(2.0)
    assert t.reach >= 2.0


def test_holm_matches_its_definition():
    ps = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> 0.06 (monotone)
    assert holm(ps) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(holm([0.01, math.nan])[1]) and holm([0.01, math.nan])[0] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_pareto_front_keeps_the_undominated_points_by_x():
    pts = [(0.2, 0.9), (0.5, 0.8), (0.4, 0.7), (0.9, 0.5), (0.5, 0.8)]
    # (0.4, 0.7) is beaten by (0.5, 0.8) on both; equal points are both kept
    assert pareto_front(pts) == [0, 1, 4, 3]
    assert pareto_front([]) == []


def test_size_at_faithfulness_interpolates_log_size():
    pts = [(0.8, 100.0), (1.0, 400.0), (math.nan, 5.0), (0.95, 0.0)]
    assert size_at_faithfulness(pts, 0.9) == pytest.approx(200.0)  # geometric midpoint
    assert size_at_faithfulness(pts, 0.8) == pytest.approx(100.0)
    assert math.isnan(size_at_faithfulness(pts, 0.7))  # the sweep does not reach it
    assert size_at_faithfulness([(0.9, 50.0)], 0.9) == 50.0


def test_stats_check_their_numbers():
    for level in (0.0, 1.0, NAN, 1.5, 95):
        with pytest.raises(ValueError, match=r"level must be a finite number in \(0, 1\)"):
            mean_ci([1.0, 2.0, 3.0], level)
    for bad in (NAN, INF):
        with pytest.raises(ValueError, match=r"mean_ci values must hold finite numbers, got (nan|inf) at index 1"):
            mean_ci([1.0, bad, 3.0])
    with pytest.raises(ValueError, match=r"mean_ci values needs at least 1 value, got 0"):
        mean_ci([])
    with pytest.raises(TypeError, match=r"mean_ci values must hold finite numbers, got None at index 0"):
        mean_ci([None, 1.0])
    with pytest.raises(ValueError, match=r"level must be a finite number, got nan"):
        size_at_faithfulness([(0.5, 10.0), (0.9, 20.0)], NAN)
    with pytest.raises(ValueError, match=r"digits must be an int >= 0, got -1"):
        Interval(1.0, 0.5, 1.5, 0.1, 3).fmt(-1)
    iv = mean_ci([1, 2, np.float64(3.0)])  # valid inputs: the same numbers as before
    assert iv.mean == 2.0 and iv.n == 3 and iv.lo < 2.0 < iv.hi
    assert math.isnan(mean_ci([4.0]).lo)


def test_t_half_width_is_scipys_t_interval():
    vals = [0.91, 0.93, 0.92, 0.95, 0.90]
    std, n = float(np.std(vals, ddof=1)), len(vals)
    for level in (0.95, 0.9, 0.5):
        lo, hi = st.t.interval(level, n - 1, loc=np.mean(vals), scale=std / math.sqrt(n))
        assert t_half_width(std, n, level) == pytest.approx((hi - lo) / 2, rel=1e-12)
        iv = mean_ci(vals, level)
        assert (iv.hi - iv.lo) / 2 == pytest.approx(t_half_width(std, n, level), rel=1e-12)
    assert t_half_width(2.0, 2) == pytest.approx(st.t.ppf(0.975, 1) * 2.0 / math.sqrt(2))
    stds = np.array([0.0, 1.0, 2.5])
    np.testing.assert_allclose(t_half_width(stds, 4), st.t.ppf(0.975, 3) * stds / 2.0)
    # no interval below two values: 0, as a float or one per entry of an array
    assert t_half_width(1.3, 1) == 0.0 and t_half_width(1.3, 0) == 0.0
    assert t_half_width(np.array([1.0, 2.0]), 1).tolist() == [0.0, 0.0]


def test_direction_reads_the_side_of_zero():
    assert direction(mean_ci([0.1, 0.2, 0.15])) == "higher"
    assert direction(mean_ci([-0.1, -0.2, -0.15])) == "lower"
    straddling = mean_ci([-0.1, 0.2, 0.05])
    assert straddling.lo < 0 < straddling.hi and direction(straddling) == "indistinguishable"
    assert direction(mean_ci([5.0])) == "indistinguishable"  # one value: no interval
    assert direction(Interval(1.0, NAN, NAN, NAN, 1)) == "indistinguishable"
    assert direction(mean_ci([0.3, 0.3, 0.3])) == "higher"  # a constant positive difference
    assert direction(mean_ci([0.0, 0.0])) == "indistinguishable"  # touching 0 is not above it
    assert direction(Interval(0.5, 0.0, 1.0, 0.3, 3)) == "indistinguishable"
