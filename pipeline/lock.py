"""One lock per environment, so two runs never change the same environment at once.

An flock on `<state>/lock` is the lock itself (the kernel drops it when the holder dies, even by
SIGKILL); `<state>/lock.json` says who holds it, for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from .console import console
from .errors import LockedError
from .fsutil import atomic_write, pid_alive

_held: dict[Path, int] = {}


def acquire(state_dir: Path, environment: str, command: str) -> None:
    """Take the environment's lock for the rest of this process, or raise LockedError at once."""
    state_dir = Path(state_dir).absolute()
    if state_dir in _held:
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockedError(f"environment {environment} is locked by {describe(holder(state_dir))}; "
                          "wait for it to finish (status, validate, docs and history still work)") from None
    previous = holder(state_dir)
    if previous and previous.get("pid") != os.getpid():
        console.warn(f"taking over the lock of environment {environment} left by "
                     f"{describe(previous, alive_note=False)}, which no longer runs")
    atomic_write(state_dir / "lock.json", json.dumps(
        {"pid": os.getpid(), "command": command, "since": time.strftime("%Y-%m-%d %H:%M:%S")}), durable=False)
    _held[state_dir] = fd


def release(state_dir: Path) -> None:
    state_dir = Path(state_dir).absolute()
    fd = _held.pop(state_dir, None)
    if fd is None:
        return
    (state_dir / "lock.json").unlink(missing_ok=True)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holder(state_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(state_dir) / "lock.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(info: dict | None, alive_note: bool = True) -> str:
    if not info:
        return "another process"
    alive = "" if not alive_note or pid_alive(int(info.get("pid", 0))) else ", no longer running"
    return f"pid {info.get('pid')} ({info.get('command', '?')}, since {info.get('since', '?')}{alive})"
