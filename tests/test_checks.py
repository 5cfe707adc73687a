"""modclust.core.checks: the one place for the rules on numbers and settings, and their messages.

Each check returns the value in its plain Python form or raises one TypeError (wrong kind) or
ValueError (wrong value) whose message names the parameter, the value and what is expected.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from modclust.core.checks import (Problems, SettingsError, check_choice, check_distinct, check_finite_array,
                                  check_finite_numbers, check_float, check_fraction, check_int, check_ints,
                                  check_labels, check_list, check_open_unit, check_seeds, is_number)

NAN, INF = float("nan"), float("inf")


# --- numbers ------------------------------------------------------------------------------------


def test_check_messages_name_the_parameter_value_and_expectation():
    with pytest.raises(ValueError, match=re.escape("TrainConfig.lam must be a finite number >= 0, got nan")):
        check_float("TrainConfig.lam", NAN, 0.0)
    with pytest.raises(ValueError, match=re.escape("lr must be a finite number > 0, got 0.0")):
        check_float("lr", 0.0, 0.0, strict_min=True)
    with pytest.raises(ValueError, match=re.escape("steps must be an int >= 0, got 1.5")):
        check_int("steps", 1.5, 0)
    with pytest.raises(TypeError, match=re.escape("steps must be an int >= 0, got True")):
        check_int("steps", True, 0)
    with pytest.raises(TypeError, match=re.escape("k must be an int, got '3'")):
        check_int("k", "3")
    with pytest.raises(TypeError, match="lam must be a finite number"):
        check_float("lam", None)
    with pytest.raises(ValueError, match=re.escape("p must be a finite number in [0, 1], got 1.5")):
        check_float("p", 1.5, 0.0, 1.0)


def test_checks_accept_every_kind_of_real_number_and_return_python_ones():
    for v in (3, 3.0, np.int64(3), np.float32(3.0), torch.tensor(3)):
        out = check_int("n", v, 1)
        assert out == 3 and type(out) is int
    for v in (0.5, np.float64(0.5), torch.tensor(0.5), 1):
        out = check_float("x", v, 0.0, 1.0)
        assert out == float(v) and type(out) is float
    assert check_ints("w", [784, 64.0, np.int64(10)], 1, min_length=2) == (784, 64, 10)


def test_is_number_means_a_real_scalar_and_not_a_bool():
    for v in (0, -2, 1.5, NAN, np.float32(1.0), np.int8(3), torch.tensor(2.0), np.array(4.0)):
        assert is_number(v), repr(v)
    for v in (True, np.True_, "1", None, 1j, torch.tensor([1.0]), np.array([1.0]), [1]):
        assert not is_number(v), repr(v)


@pytest.mark.parametrize("call, err, message", [
    (lambda: check_int("n", 5, 1, 3), ValueError, "n must be an int in [1, 3], got 5"),
    (lambda: check_int("n", 0, maximum=-1), ValueError, "n must be an int <= -1, got 0"),
    (lambda: check_int("n", INF), ValueError, "n must be an int, got inf"),
    (lambda: check_int("n", NAN, 0), ValueError, "n must be an int >= 0, got nan"),
    (lambda: check_int("n", np.True_), TypeError, "n must be an int, got True"),
    (lambda: check_int("n", None, 1, hint="the batch size"), TypeError,
     "n must be an int >= 1, got None (the batch size)"),
    (lambda: check_float("x", 1.0, 0.0, 1.0, strict_max=True), ValueError,
     "x must be a finite number in [0, 1), got 1.0"),
    (lambda: check_float("x", 3.0, maximum=2.5, strict_max=True), ValueError,
     "x must be a finite number < 2.5, got 3.0"),
    (lambda: check_float("x", 2.5, maximum=2.5, strict_max=True), ValueError,
     "x must be a finite number < 2.5, got 2.5"),
    (lambda: check_float("x", -INF), ValueError, "x must be a finite number, got -inf"),
    (lambda: check_float("x", 1j), TypeError, "x must be a finite number, got 1j"),
    (lambda: check_float("x", False, hint="a rate"), TypeError, "x must be a finite number, got False (a rate)"),
    (lambda: check_float("x", 0.0005, 0.001), ValueError, "x must be a finite number >= 0.001, got 0.0005"),
    (lambda: check_fraction("f", -0.1), ValueError, "f must be a finite number in [0, 1], got -0.1"),
    (lambda: check_fraction("f", 1.0001, hint="a share"), ValueError,
     "f must be a finite number in [0, 1], got 1.0001 (a share)"),
    (lambda: check_open_unit("a", 0), ValueError, "a must be a finite number in (0, 1), got 0"),
    (lambda: check_open_unit("a", 1.0), ValueError, "a must be a finite number in (0, 1), got 1.0"),
])
def test_each_bad_number_gets_one_message_with_name_bounds_value_and_hint(call, err, message):
    with pytest.raises(err) as info:
        call()
    assert type(info.value) is err and str(info.value) == message


def test_the_bounds_themselves_pass_unless_strict():
    assert check_int("n", 1, 1, 3) == 1 and check_int("n", 3, 1, 3) == 3
    assert check_float("x", 0.0, 0.0, 1.0) == 0.0 and check_float("x", 1.0, 0.0, 1.0) == 1.0
    assert check_fraction("f", 0) == 0.0 and check_fraction("f", 1) == 1.0
    assert check_open_unit("a", 0.5) == 0.5 and check_open_unit("a", np.float32(0.25)) == 0.25
    assert check_int("n", 1e20) == 10 ** 20  # a whole float, however large


@pytest.mark.parametrize("v", [k / 2 for k in range(-4, 11)] + [NAN, INF, -INF])
def test_check_int_accepts_exactly_the_whole_numbers_in_range(v):
    """Against the rule written out plainly: whole, finite and in [0, 3]."""
    ok = math.isfinite(v) and v == int(v) and 0 <= v <= 3
    if ok:
        assert check_int("n", v, 0, 3) == int(v)
    else:
        with pytest.raises(ValueError, match=r"n must be an int in \[0, 3\]"):
            check_int("n", v, 0, 3)


@pytest.mark.parametrize("v", [-1.0, -1e-9, 0.0, 1e-9, 0.5, 1.0 - 1e-9, 1.0, 1.0 + 1e-9, 2.0])
@pytest.mark.parametrize("strict_min, strict_max", [(False, False), (True, False), (False, True), (True, True)])
def test_check_float_bounds_follow_the_interval(v, strict_min, strict_max):
    inside = (0.0 < v or (v == 0.0 and not strict_min)) and (v < 1.0 or (v == 1.0 and not strict_max))
    if inside:
        assert check_float("x", v, 0.0, 1.0, strict_min=strict_min, strict_max=strict_max) == v
    else:
        with pytest.raises(ValueError, match="x must be a finite number in"):
            check_float("x", v, 0.0, 1.0, strict_min=strict_min, strict_max=strict_max)


# --- choices and sequences ----------------------------------------------------------------------


def test_check_choice_returns_the_value_or_lists_the_options():
    assert check_choice("mode", "b", ("a", "b")) == "b"
    assert check_choice("mode", "a", (c for c in "ab")) == "a"  # any iterable of choices
    with pytest.raises(ValueError, match=re.escape("mode must be one of ['a', 'b'], got 'z'")):
        check_choice("mode", "z", ("a", "b"))
    with pytest.raises(ValueError, match=re.escape("mode must be one of ['a'], got [1]")):
        check_choice("mode", [1], {"a": 1})  # unhashable against dict keys: a plain ValueError


def test_check_ints_names_the_bad_entry_and_refuses_a_string_or_a_scalar():
    assert check_ints("w", np.array([3, 4])) == (3, 4) and check_ints("w", ()) == ()
    with pytest.raises(ValueError, match=re.escape("w[2] must be an int >= 1, got 0")):
        check_ints("w", [5, 4, 0], 1)
    with pytest.raises(TypeError, match=re.escape("w must be a sequence of ints, got '12'")):
        check_ints("w", "12")
    with pytest.raises(TypeError, match=re.escape("w must be a sequence of ints, got tensor(3)")):
        check_ints("w", torch.tensor(3))
    with pytest.raises(TypeError, match=re.escape("w must be a sequence of ints, got 7 (widths)")):
        check_ints("w", 7, hint="widths")
    with pytest.raises(ValueError, match=re.escape("w must have at least 2 entries, got (1,) (widths)")):
        check_ints("w", [1], min_length=2, hint="widths")


def test_check_list_takes_a_list_or_a_tuple_only():
    t = (1, 2)
    assert check_list("s", t) == [1, 2] and check_list("s", []) == []
    original = [3]
    out = check_list("s", original)
    assert out == original and out is not original  # a copy: the caller's list is not handed on
    for bad in ("ab", b"ab", {1: 2}, {1}, 3, None, (v for v in t)):
        with pytest.raises(TypeError, match=r"^s must be a list, got "):
            check_list("s", bad)


def test_check_finite_numbers_says_which_entry_is_not_one():
    out = check_finite_numbers("v", [1, np.float32(0.5), torch.tensor(2)])
    assert out == [1.0, 0.5, 2.0] and all(type(x) is float for x in out)
    with pytest.raises(ValueError, match=re.escape("v must hold finite numbers, got nan at index 2")):
        check_finite_numbers("v", [1, 2, NAN])
    with pytest.raises(TypeError, match=re.escape("v must hold finite numbers, got 'x' at index 1 (scores)")):
        check_finite_numbers("v", [1, "x"], hint="scores")
    with pytest.raises(TypeError, match=re.escape("v must hold finite numbers, got True at index 0")):
        check_finite_numbers("v", [True])
    with pytest.raises(ValueError, match=re.escape("v needs at least 2 values, got 1")):
        check_finite_numbers("v", [1.0], min_length=2)
    with pytest.raises(ValueError, match=re.escape("v needs at least 1 value, got 0")):
        check_finite_numbers("v", [], min_length=1)
    with pytest.raises(TypeError, match="v must be a sequence of numbers"):
        check_finite_numbers("v", "12")


# --- arrays and labels --------------------------------------------------------------------------


def test_check_finite_array_counts_the_bad_entries():
    check_finite_array("a", torch.ones(3))
    check_finite_array("a", np.zeros((2, 2)))
    check_finite_array("a", torch.tensor([1, 2]))  # integers cannot be nan: not checked
    check_finite_array("a", [NAN])  # not an array: nothing to check here
    with pytest.raises(ValueError, match=re.escape("a must be finite, got 2 nan or inf entries of 4")):
        check_finite_array("a", torch.tensor([[1.0, NAN], [INF, 2.0]]))
    with pytest.raises(ValueError, match=re.escape("a must be finite, got 1 nan or inf entry of 3 (the inputs)")):
        check_finite_array("a", np.array([0.0, -INF, 1.0]), hint="the inputs")


def test_check_labels_names_the_label_outside_the_classes():
    check_labels("y", torch.tensor([0, 9]), 10)
    check_labels("y", np.array([2, 0]), 3)
    check_labels("y", torch.tensor([], dtype=torch.long), 1)  # nothing to check
    with pytest.raises(ValueError, match=re.escape("y must lie in 0 .. 9 (n_classes=10), got a label 10")):
        check_labels("y", torch.tensor([0, 10, 3]), 10)
    with pytest.raises(ValueError, match=re.escape("y must lie in 0 .. 2 (n_classes=3), got a label -1 (targets)")):
        check_labels("y", np.array([-1, 3]), 3, hint="targets")


# --- settings: every problem at once ------------------------------------------------------------


def test_problems_gathers_each_failing_check_and_raises_them_together():
    problems = Problems()
    with problems.about("a"):
        check_int("a", "x")  # TypeError
    with problems.about("b", "c"):
        check_float("b", -1.0, 0.0)  # ValueError
    with problems.about("d"):
        check_int("d", 4)  # passes: nothing recorded
    problems.add("c and e disagree", "c", "e")
    assert problems.ok("d") and not problems.ok("a") and not problems.ok("d", "e")
    with pytest.raises(SettingsError) as info:
        problems.raise_any()
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, TypeError)
    assert [fields for fields, _ in err.problems] == [("a",), ("b", "c"), ("c", "e")]
    assert str(err).splitlines() == ["a must be an int, got 'x'", "b must be a finite number >= 0, got -1.0",
                                     "c and e disagree"]


def test_problems_lets_other_errors_through_and_raises_nothing_when_all_pass():
    problems = Problems()
    with pytest.raises(KeyError):
        with problems.about("a"):
            {}["missing"]
    assert problems.ok("a") and problems.found == []
    problems.raise_any()  # nothing found: no error


def test_check_distinct_names_each_repeat_once():
    check_distinct("s", [1, 2, 3])
    with pytest.raises(ValueError, match=re.escape("s lists 1, 2 more than once, which would count a run twice: "
                                                   "remove the repeats")):
        check_distinct("s", [1, 2, 1, 2, 1, 3])
    with pytest.raises(ValueError, match=re.escape("s lists 'fc2' more than once, which would count a layer twice: "
                                                   "remove the repeats (layers)")):
        check_distinct("s", ["fc2", "fc1", "fc2"], "a layer", hint="layers")


def test_check_seeds_wants_distinct_ints_in_range_and_at_least_one():
    assert check_seeds("seeds", [0, 4, 2]) == (0, 4, 2)
    assert check_seeds("seeds", (3.0,), 3) == (3,)
    with pytest.raises(ValueError, match=r"seeds is empty: give at least one seed, e\.g\. \[0, 1, 2, 3, 4\]"):
        check_seeds("seeds", [])
    with pytest.raises(ValueError, match=re.escape("seeds[1] must be an int in [0, 3], got 5 (one run per seed")):
        check_seeds("seeds", [0, 5], 3)
    with pytest.raises(ValueError, match=re.escape("seeds[0] must be an int >= 0, got -1")):
        check_seeds("seeds", [-1])
    with pytest.raises(ValueError, match="seeds lists 2 more than once, which would count a run twice"):
        check_seeds("seeds", [2, 2])
    with pytest.raises(TypeError, match="seeds must be a sequence of ints, got '01'"):
        check_seeds("seeds", "01")
