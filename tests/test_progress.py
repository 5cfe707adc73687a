"""modclust.core.progress: tqdm's bars, mirrored into the file ``$MODCLUST_PROGRESS`` names
(one line ``desc<TAB>n<TAB>total``) for the pipeline to show, and read back from it."""

from __future__ import annotations

import io
import types

import pytest

from modclust.core import progress
from modclust.core.progress import PROGRESS_ENV, bar, read_progress, track


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """The progress file the pipeline would name."""
    path = tmp_path / "progress"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    return path


@pytest.fixture
def clock(monkeypatch):
    """The module's clock, moved by hand: ``clock.now`` seconds."""
    fake = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(progress, "time", types.SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def test_track_yields_every_item_in_order_with_or_without_a_length():
    assert list(track([3, 1, 2], desc="list")) == [3, 1, 2]
    assert list(track((i * i for i in range(4)), desc="generator")) == [0, 1, 4, 9]
    assert list(track([], desc="empty")) == []


def test_a_bar_writes_its_state_at_once_and_when_it_closes(mirror, clock):
    b = bar(5, "train", file=io.StringIO())
    assert mirror.read_text() == "train\t0\t5\n"
    assert read_progress(mirror) == ("train", 0.0, 5.0)
    b.update(2)
    b.update(3)  # within a quarter second of the last write: not written yet
    assert read_progress(mirror) == ("train", 0.0, 5.0)
    b.close()
    assert read_progress(mirror) == ("train", 5.0, 5.0)
    assert not mirror.with_name("progress.new").exists(), "written through a temporary, then moved"


def test_updates_are_written_at_most_four_times_a_second(mirror, clock):
    with bar(10, "prune", file=io.StringIO()) as b:
        clock.now += 0.2
        b.update(1)
        assert read_progress(mirror) == ("prune", 0.0, 10.0)
        clock.now += 0.1  # 0.3 s since the first write
        b.update(2)
        assert read_progress(mirror) == ("prune", 3.0, 10.0)
        b.update(4)
        assert read_progress(mirror) == ("prune", 3.0, 10.0)


def test_track_mirrors_its_items_and_a_bar_without_total_writes_zero(mirror):
    assert list(track(["a", "b"], desc="labels")) == ["a", "b"]
    assert read_progress(mirror) == ("labels", 2.0, 2.0)  # total from len
    assert list(track(iter("xyz"), desc="stream")) == ["x", "y", "z"]
    assert mirror.read_text() == "stream\t3\t0\n"
    list(track(iter("xy"), desc="told", total=7))
    assert read_progress(mirror) == ("told", 2.0, 7.0)


def test_a_disabled_bar_or_no_progress_file_writes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "progress"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    assert list(track(range(3), desc="quiet", disable=True)) == [0, 1, 2]
    assert not path.exists()
    monkeypatch.delenv(PROGRESS_ENV)
    with bar(2, "plain", file=io.StringIO()) as b:
        b.update(2)
    assert not list(tmp_path.iterdir())


def test_a_progress_file_that_cannot_be_written_never_fails_the_computation(tmp_path, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "no such folder" / "progress"))
    out = io.StringIO()
    with bar(3, "work", file=out) as b:
        b.update(3)
    assert b.n == 3 and "work" in out.getvalue()  # the bar itself still ran
    assert not (tmp_path / "no such folder").exists()


def test_read_progress_is_none_until_a_whole_line_is_there(tmp_path):
    path = tmp_path / "progress"
    assert read_progress(path) is None  # no file yet
    path.write_text("")
    assert read_progress(path) is None
    path.write_text("desc only\n")
    assert read_progress(path) is None
    path.write_text("a\tb\tc\n")
    assert read_progress(path) is None
    path.write_text("circuits 3/8\t2\t10\n")
    assert read_progress(path) == ("circuits 3/8", 2.0, 10.0)
