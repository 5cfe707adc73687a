"""Progress bars for the library's long loops, visible in a notebook and from the pipeline.

:func:`bar` is tqdm's (a widget in a notebook, text in a terminal). When the environment names
a progress file (``MODCLUST_PROGRESS``, set by the pipeline for the notebook it runs), each bar
also writes its state there, one line ``desc<TAB>n<TAB>total``, at most a few times a second:
the pipeline reads it to show a stage's inner loop on its one terminal line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

PROGRESS_ENV = "MODCLUST_PROGRESS"
T = TypeVar("T")


class Bar(tqdm):
    """tqdm's bar, mirrored into ``$MODCLUST_PROGRESS`` when it is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", 0.5)
        super().__init__(*args, **kwargs)
        target = os.environ.get(PROGRESS_ENV)
        self._mirror = Path(target) if target and not self.disable else None
        self._mirrored_at = 0.0
        self._write_mirror()

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        if self._mirror is not None and time.monotonic() - self._mirrored_at > 0.25:
            self._write_mirror()
        return shown

    def close(self) -> None:
        if getattr(self, "_mirror", None) is not None:
            self._write_mirror()
            self._mirror = None
        super().close()

    def _write_mirror(self) -> None:
        if self._mirror is None:
            return
        self._mirrored_at = time.monotonic()
        try:
            tmp = self._mirror.with_name(self._mirror.name + ".new")
            tmp.write_text(f"{self.desc}\t{self.n:g}\t{self.total or 0:g}\n")
            os.replace(tmp, self._mirror)
        except OSError:  # progress is a courtesy: never fail a computation over it
            self._mirror = None


def bar(total: int | None = None, desc: str = "", disable: bool = False, **kwargs: Any) -> Bar:
    """A progress bar over ``total`` steps (call ``update``; use it as a context manager)."""
    return Bar(total=total, desc=desc, disable=disable, **kwargs)


def track(items: Iterable[T], desc: str = "", total: int | None = None, disable: bool = False) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (``total`` defaults to ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with bar(total, desc, disable) as b:
        for item in items:
            yield item
            b.update(1)


def read_progress(path: Path) -> tuple[str, float, float] | None:
    """The last state a bar wrote to ``path`` (desc, n, total), or None when there is none yet."""
    try:
        desc, n, total = path.read_text().rstrip("\n").split("\t")
        return desc, float(n), float(total)
    except (OSError, ValueError):
        return None
