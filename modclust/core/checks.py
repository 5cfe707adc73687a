"""Checks for the numbers that enter the library: one place for the rules and the messages.

Every public entry point that takes a number passes it through one of these, so a bad value
stops where it enters with one message that names the parameter, the value received and what
is expected, e.g. ``TrainConfig.lam must be a finite number >= 0, got nan``. A value of the
wrong kind (a string, None, a bool where a number is meant) raises ``TypeError``; a number of
the right kind that is out of range, not finite, or not whole where an int is needed raises
``ValueError``.

Ints: Python ints and integer scalars (numpy, 0-d tensors) are accepted, and so is a float with
no fractional part (``64.0``); bools are not numbers here. Floats: any real number, including
numpy and 0-d tensor scalars, returned as a Python float.

This module imports nothing from modclust, so every other module can use it.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch


def _scalar(value: Any) -> Any:
    """A 0-d tensor or array as its Python scalar; anything else unchanged."""
    if not isinstance(value, (bool, numbers.Number, str)) and getattr(value, "ndim", None) == 0 \
            and hasattr(value, "item"):
        return value.item()
    return value


def _shown(value: Any) -> str:
    """The value as the message shows it: floats plainly (nan, inf, 1.5), others by repr."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return repr(float(value))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return repr(int(value))
    return repr(value)


def _bound(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _range_text(minimum: float | None, maximum: float | None, strict_min: bool = False,
                strict_max: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f" in {'(' if strict_min else '['}{_bound(minimum)}, {_bound(maximum)}{')' if strict_max else ']'}"
    if minimum is not None:
        return f" {'>' if strict_min else '>='} {_bound(minimum)}"
    if maximum is not None:
        return f" {'<' if strict_max else '<='} {_bound(maximum)}"
    return ""


def _fail(cls: type[Exception], name: str, expected: str, value: Any, hint: str) -> Exception:
    tail = f" ({hint})" if hint else ""
    return cls(f"{name} must be {expected}, got {_shown(value)}{tail}")


def is_number(value: Any) -> bool:
    """True for a real number (not a bool), also a numpy or 0-d tensor scalar."""
    value = _scalar(value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None,
              hint: str = "") -> int:
    """``value`` as an int, checked to be whole and within [minimum, maximum] (None: unbounded)."""
    if type(value) is int and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return value  # the common case, without building a message
    expected = "an int" + _range_text(minimum, maximum)
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(TypeError, name, expected, value, hint)
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or not float(value).is_integer():
            raise _fail(ValueError, name, expected, value, hint)
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise _fail(ValueError, name, expected, value, hint)
    return out


def check_float(name: str, value: Any, minimum: float | None = None, maximum: float | None = None, *,
                strict_min: bool = False, strict_max: bool = False, hint: str = "") -> float:
    """``value`` as a finite float within the bounds (``strict_*``: the bound itself excluded)."""
    if type(value) is float and math.isfinite(value) and (minimum is None or value > minimum
                                                          or (value == minimum and not strict_min)) \
            and (maximum is None or value < maximum or (value == maximum and not strict_max)):
        return value  # the common case, without building a message
    expected = "a finite number" + _range_text(minimum, maximum, strict_min, strict_max)
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(TypeError, name, expected, value, hint)
    out = float(value)
    if not math.isfinite(out):
        raise _fail(ValueError, name, expected, value, hint)
    if minimum is not None and (out < minimum or (strict_min and out == minimum)):
        raise _fail(ValueError, name, expected, value, hint)
    if maximum is not None and (out > maximum or (strict_max and out == maximum)):
        raise _fail(ValueError, name, expected, value, hint)
    return out


def check_fraction(name: str, value: Any, hint: str = "") -> float:
    """A finite number in [0, 1]."""
    return check_float(name, value, 0.0, 1.0, hint=hint)


def check_open_unit(name: str, value: Any, hint: str = "") -> float:
    """A finite number strictly between 0 and 1 (a confidence level, a significance level)."""
    return check_float(name, value, 0.0, 1.0, strict_min=True, strict_max=True, hint=hint)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    options = list(choices)
    try:
        ok = value in options
    except TypeError:  # an unhashable value against dict keys
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def check_ints(name: str, values: Any, minimum: int | None = None, maximum: int | None = None,
               min_length: int = 0, hint: str = "") -> tuple[int, ...]:
    """A sequence of ints (not a string), each checked as by :func:`check_int`."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) \
            or getattr(values, "ndim", 1) == 0:
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}" + (f" ({hint})" if hint else ""))
    items = list(values)
    out = tuple(check_int(f"{name}[{i}]", v, minimum, maximum, hint) for i, v in enumerate(items))
    if len(out) < min_length:
        raise ValueError(f"{name} must have at least {min_length} entries, got {tuple(items)!r}"
                         + (f" ({hint})" if hint else ""))
    return out


def check_list(name: str, value: Any) -> list[Any]:
    """``value`` as a list: a list or tuple (not a string), the one check of a settings field that
    holds several values (YAML gives a list, the dataclass keeps a tuple)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list, got {value!r}")
    return list(value)


def check_finite_numbers(name: str, values: Sequence[Any], min_length: int = 0, hint: str = "") -> list[float]:
    """A sequence of finite real numbers, as floats; says which entry is not one."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    out = []
    for i, v in enumerate(values):
        v = _scalar(v)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must hold finite numbers, got {_shown(v)} at index {i}"
                            + (f" ({hint})" if hint else ""))
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must hold finite numbers, got {_shown(v)} at index {i}"
                             + (f" ({hint})" if hint else ""))
        out.append(float(v))
    if len(out) < min_length:
        raise ValueError(f"{name} needs at least {min_length} value{'s' if min_length != 1 else ''}, "
                         f"got {len(out)}" + (f" ({hint})" if hint else ""))
    return out


def check_finite_array(name: str, array: Any, hint: str = "") -> None:
    """Raise if a tensor or numpy array holds nan or inf (says how many entries do)."""
    finite = _isfinite(array)
    if finite is None:
        return
    n_bad = int((~finite).sum())
    if n_bad:
        total = finite.numel() if hasattr(finite, "numel") else finite.size
        raise ValueError(f"{name} must be finite, got {n_bad} nan or inf entr{'y' if n_bad == 1 else 'ies'} "
                         f"of {total}" + (f" ({hint})" if hint else ""))


def _isfinite(array: Any) -> Any:
    mod = type(array).__module__.split(".")[0]
    if mod == "torch":
        if not torch.is_floating_point(array) and not torch.is_complex(array):
            return None
        return torch.isfinite(array)
    if mod == "numpy":
        if not np.issubdtype(array.dtype, np.inexact):
            return None
        return np.isfinite(array)
    return None


def check_labels(name: str, labels: Any, n_classes: int, hint: str = "") -> None:
    """Raise if an integer label tensor or array has a value outside 0 .. n_classes - 1."""
    if getattr(labels, "numel", None) is not None:
        if labels.numel() == 0:
            return
        lo, hi = int(labels.min()), int(labels.max())
    elif getattr(labels, "size", 0):
        lo, hi = int(labels.min()), int(labels.max())
    else:
        return
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} must lie in 0 .. {n_classes - 1} (n_classes={n_classes}), got a label {bad}"
                         + (f" ({hint})" if hint else ""))


# --- settings: every problem at once ---------------------------------------------------------------

class SettingsError(ValueError, TypeError):
    """Every problem found in one settings object's values, each with the fields it concerns.

    ``problems`` holds ``(fields, message)`` pairs; the error's text is the messages, one a line.
    It is both a ValueError and a TypeError, as the checks it gathers raise either.
    """

    def __init__(self, problems: Sequence[tuple[tuple[str, ...], str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(message for _, message in self.problems))


class Problems:
    """The problems of a settings object's checks, gathered so that one error names them all.

    Each check runs under :meth:`about` (the fields it reads); a failing check is recorded and
    the next one runs. A check that combines fields runs only when they passed their own
    (:meth:`ok`). :meth:`raise_any` ends the checks with one :class:`SettingsError`.
    """

    def __init__(self) -> None:
        self.found: list[tuple[tuple[str, ...], str]] = []

    @contextlib.contextmanager
    def about(self, *fields: str) -> Iterator[None]:
        try:
            yield
        except (TypeError, ValueError) as err:
            self.found.append((fields, str(err)))

    def add(self, message: str, *fields: str) -> None:
        self.found.append((fields, message))

    def ok(self, *fields: str) -> bool:
        """Whether no recorded problem concerns any of ``fields``."""
        return not any(set(fields) & set(concerned) for concerned, _ in self.found)

    def raise_any(self) -> None:
        if self.found:
            raise SettingsError(self.found)


def check_distinct(name: str, values: Sequence[Any], what: str = "a run", hint: str = "") -> None:
    """A ValueError naming the repeated items of ``values`` (each would count ``what`` twice)."""
    seen: set[Any] = set()
    twice = [v for v in values if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
    if twice:
        raise ValueError(f"{name} lists {', '.join(repr(v) for v in dict.fromkeys(twice))} more than once, "
                         f"which would count {what} twice: remove the repeats" + (f" ({hint})" if hint else ""))


def check_seeds(name: str, values: Any, maximum: int | None = None) -> tuple[int, ...]:
    """A study's seeds: at least one, each an int in [0, maximum], none twice (a run counted twice)."""
    if not isinstance(values, (str, bytes)) and isinstance(values, Sequence) and len(values) == 0:
        raise ValueError(f"{name} is empty: give at least one seed, e.g. [0, 1, 2, 3, 4] (each seed is one run "
                         "per setting)")
    seeds = check_ints(name, values, 0, maximum, hint="one run per seed and setting")
    check_distinct(name, seeds)
    return seeds
