"""Atomic file writes: a reader sees the old file or the new one, never half of one. Private files and
directories: what the pipeline keeps is for its user's eyes only (files 0600, directories 0700)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from proxpipe.base.errors import FileError

# Temporary files are hidden and carry this marker, so nothing mistakes them for a handoff.
TMP_MARK = ".tmp-"


# (directory, errno) of every FileError made in this process: what later bookkeeping need not say again.
_failed: set[tuple[str, int | None]] = set()


def file_error(exc: OSError, path: Path | str, doing: str = "write") -> FileError:
    """The one line for an OSError on a file of the pipeline's own: its path, what failed and the errno's meaning,
    e.g. ``.pipeline/lab/history.jsonl: cannot write: No space left on device``."""
    if isinstance(exc, FileError):
        return exc
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)
    _failed.add((os.path.dirname(os.path.abspath(path)), exc.errno))
    return FileError(f"{display(Path(path))}: cannot {doing}: {reason}", exc.errno, str(path))


def failed_in(directory: Path | str) -> set[int | None]:
    """The errnos of the FileErrors made so far for files in directory and below it."""
    directory = os.path.abspath(directory)
    return {errno for where, errno in _failed if where == directory or where.startswith(directory + os.sep)}


@contextlib.contextmanager
def on_disk(path: Path | str, doing: str = "write") -> Iterator[None]:
    """Within the block, an OSError is file_error() of path: one line, no traceback, and still an OSError."""
    try:
        yield
    except OSError as exc:
        raise file_error(exc, path, doing) from None


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write data to path through a temporary file in the same directory, then rename it; the file gets exactly
    mode (owner-only by default; 0o644 for what is meant to be shared, like generated docs). durable: fsync
    first, so a power cut cannot lose it (handoffs); caches and bookkeeping skip that. A full disk or a read-only
    directory is a FileError naming path, and path is left as it was."""
    path = Path(path)
    with on_disk(path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = _temporary(path)
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, mode)  # exactly mode, whatever the umask
            with os.fdopen(fd, "wb") as out:
                out.write(raw)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            _fsync_dir(path.parent)


@contextlib.contextmanager
def private_file(path: Path, data: str) -> Iterator[Path]:
    """A file only this user can read, holding data (secrets for a tool), removed when the block ends. Its name
    carries the temporary marker, so remove_stale_temps() deletes one that a killed process left behind."""
    path = Path(path)
    tmp = _temporary(path)
    with on_disk(path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def make_private(directory: Path, everything: bool = False) -> None:
    """Take group and other permissions away from directory and, when it had any (a state directory made before
    they were private) or when asked to (what a tool unpacked with its own modes), from everything in it. One stat
    when there is nothing to do."""
    directory = Path(directory)
    try:
        if not everything and not stat.S_IMODE(directory.stat().st_mode) & 0o077:
            return
    except FileNotFoundError:
        return
    path = directory
    try:
        for top, dirs, files in os.walk(directory):
            for name in [*dirs, *files]:
                path = os.path.join(top, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode):
                    os.chmod(path, stat.S_IMODE(mode) & ~0o077)
        path = directory
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise file_error(exc, path, "make private") from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    """A hidden name next to path, its own per process and per thread (checks write the same cache at once); the
    pid comes last, so remove_stale_temps() knows whose it is."""
    return path.with_name(f".{path.name}.{threading.get_native_id()}{TMP_MARK}{os.getpid()}")


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temporary files that a killed process left behind; returns them."""
    removed = []
    if directory.is_dir():
        for tmp in directory.glob(f".*{TMP_MARK}*"):
            pid = tmp.name.rsplit(TMP_MARK, 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for block in iter(lambda: src.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def display(path: Path) -> str:
    """path as a user reads it in a message: relative to the current directory unless that is far off."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("../..") else str(path)
