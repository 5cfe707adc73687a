import os
import stat
import subprocess
import sys

import pytest

from modclust.core import io


@pytest.fixture
def umask():
    """Set the process umask for one test, restored after it."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    new = io.write_json(tmp_path / "new.json", {"a": 1})
    assert _mode(new) == 0o666 & ~mask
    old = tmp_path / "old.txt"
    old.write_text("before")
    old.chmod(0o600)  # as files written by earlier versions (tempfile.mkstemp) are
    io.write_atomic(old, lambda tmp: tmp.write_text("after"))
    assert old.read_text() == "after" and _mode(old) == 0o666 & ~mask
    with io.atomic_path(tmp_path / "deep" / "x.bin") as tmp:
        assert _mode(tmp) == 0o666 & ~mask  # the temporary file already has it
        tmp.write_bytes(b"x")
    assert _mode(tmp_path / "deep" / "x.bin") == 0o666 & ~mask


def _temp_for(target, pid, host=None):
    """A temporary file named as ``atomic_path`` names them, for writer ``pid``."""
    p = target.parent / f".{target.name}.{host or io._HOST}.{pid}.0123abcd.tmp"
    p.write_bytes(b"half a checkpoint")
    return p


def test_temp_names_carry_host_and_pid(tmp_path):
    target = tmp_path / "model.pt"
    with io.atomic_path(target) as tmp:
        m = io._TEMP_NAME.match(tmp.name)
        assert m and m["name"] == "model.pt" and m["host"] == io._HOST and int(m["pid"]) == os.getpid()
        tmp.write_bytes(b"x")


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)  # exited and reaped: no such process any more
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        target = tmp_path / "model.pt"
        target.write_bytes(b"old")
        stale = _temp_for(target, dead_pid)
        live = _temp_for(target, sleeper.pid)
        mine = _temp_for(target, os.getpid())
        elsewhere = _temp_for(target, dead_pid, host="another-machine")  # its pid means nothing here
        other_target = _temp_for(tmp_path / "other.pt", dead_pid)
        not_ours = tmp_path / f".model.pt.{dead_pid}.tmp"  # not a name atomic_path makes
        not_ours.write_bytes(b"?")
        io.write_atomic(target, lambda tmp: tmp.write_bytes(b"new"))
        assert target.read_bytes() == b"new"
        assert not stale.exists()
        assert live.exists() and mine.exists() and elsewhere.exists() and not_ours.exists()
        assert other_target.exists()  # a write cleans only its own target's temporaries
        assert io.remove_stale_temps(tmp_path) == [other_target]
        assert live.exists() and mine.exists() and elsewhere.exists() and not_ours.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert io.remove_stale_temps(tmp_path) == [live]  # its writer is gone now
    assert io.remove_stale_temps(tmp_path / "absent") == []


def test_a_failing_block_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "train.json"
    io.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError, match="boom"):
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("boom")
    assert io.read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(tmp_path / "new.json") as tmp:
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]


def test_fsync_failure_fails_the_write(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def eio(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(OSError, match="Input/output"):
        io.write_atomic(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_a_writer_we_may_not_signal_is_alive(tmp_path, monkeypatch):
    def kill(pid, sig):
        assert sig == 0
        raise PermissionError(1, "Operation not permitted")  # another user's running process

    monkeypatch.setattr(os, "kill", kill)
    kept = _temp_for(tmp_path / "model.pt", 12345)
    odd = _temp_for(tmp_path / "model.pt", 0)  # pid 0 would signal our own process group
    assert io.remove_stale_temps(tmp_path) == []
    assert kept.exists() and odd.exists()
