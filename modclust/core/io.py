"""Atomic writes of files and folders: a reader never sees a half-written one, a crash leaves no debris.

A write goes to a temporary file beside the target, ``.<name>.<host>.<pid>.<random>.tmp``,
which is flushed to disk and renamed over the target only when the write succeeded; a write
that raises removes it and leaves the old target as it was.

Modes. The temporary file is created with mode 0666 and the kernel applies the umask (and a
directory's default ACL), so a written file has the mode any newly created file gets, e.g.
0644 under umask 022. The mode of a file being replaced is not kept: everything written here
is regenerated output, and keeping it would keep the 0600 that files written by earlier
versions of this module (which used ``tempfile.mkstemp``) have.

Debris. A writer killed mid-write (SIGKILL, out of memory) leaves its temporary file behind.
Each write first removes the temporary files of its own target whose writer is gone, and
:func:`remove_stale_temps` cleans a whole folder. A temporary file is removed only when it was
made on this host (the host is in its name: a folder on a shared file system may be written
from several machines) by a process that no longer runs; a live writer's file is never touched.

Durability. The file is fsynced before the rename and its folder after it, so a power cut or a
kernel crash leaves the old file or the new one, not an empty or partial one (a few ms for a
small file, about 0.1 s for 80 MB, against the seconds it takes to write one).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.tmp$")


def _host_tag() -> str:
    """This machine's name as it appears in temporary names: no dots, at most 32 characters."""
    tag = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:32]
    return tag or "localhost"


_HOST = _host_tag()


def _temp_name(name: str) -> str:
    return f".{name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _pid_running(pid: int) -> bool:
    """Whether process ``pid`` (on this host) may still be running; True whenever unsure."""
    if os.name != "posix" or not 0 < pid < 2**31:  # os.kill on Windows terminates the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` left by dead writers (of ``name`` only, if given).

    Returns the paths removed. Only names this module makes are considered, and only those
    made on this host by a process that is no longer running; a missing folder has none.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or m["host"] != _HOST:
            continue
        if _pid_running(int(m["pid"])) or entry.is_symlink():
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # already gone (another cleaner), or the folder is read-only: not ours to fix
            continue
        removed.append(folder / entry.name)
    return removed


def _create_temp(folder: Path, name: str) -> Path:
    """A new empty file beside the target, created 0666 so that the kernel applies the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / _temp_name(name)
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file for {folder / name}")


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush ``path`` to disk. A folder's flush is best effort: some file systems refuse it."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as err:
        if not directory and err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise  # EIO and the like: the data may not be on disk, so the write failed
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file already exists (empty) when the block starts; the block writes it by
    name. If the block raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder, target.name)
    tmp = _create_temp(folder, target.name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(folder, directory=True)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; it replaces ``path`` whole only if the block succeeds.

    A reader sees the old folder or the new one, never a mix (for the instant between the two
    renames, neither). If the block raises, the new folder is removed and ``path`` is left as
    it was; a folder left by a killed writer is removed by the next write of the same target.
    """
    target = Path(path)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(parent, target.name)
    tmp = parent / _temp_name(target.name)
    tmp.mkdir()
    old: Path | None = None
    try:
        yield tmp
        if target.exists():
            old = parent / _temp_name(target.name)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None and not target.exists():
                os.replace(old, target)
            raise
        _fsync(parent, directory=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())
