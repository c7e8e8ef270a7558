"""One lock per environment, so two runs never change the same environment at once.

Locally an flock on `<state>/lock` is the lock itself (the kernel drops it when the holder dies, even by SIGKILL);
`<state>/lock.json` says who holds it, for the message the second run prints. The shared state backend keeps the
same holder record in its database. Both wait (`--wait-lock SECONDS`) by trying again with backoff.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from proxpipe.base.console import console
from proxpipe.base.errors import LockedError
from proxpipe.base.fsutil import atomic_write, on_disk, pid_alive

# Where CI systems say which job is running (GitHub Actions, GitLab CI, Jenkins, Buildkite).
_CI_URL = (("GITHUB_RUN_ID", lambda e: f"{e.get('GITHUB_SERVER_URL', 'https://github.com')}/"
                                       f"{e.get('GITHUB_REPOSITORY', '')}/actions/runs/{e['GITHUB_RUN_ID']}"),
           ("CI_JOB_URL", lambda e: e["CI_JOB_URL"]), ("BUILD_URL", lambda e: e["BUILD_URL"]),
           ("BUILDKITE_BUILD_URL", lambda e: e["BUILDKITE_BUILD_URL"]))

_held: dict[Path, int] = {}


def holder_info(command: str) -> dict:
    """Who takes a lock: user, host, pid, command, since, and the CI job's URL when there is one."""
    info = {"user": _user(), "host": socket.gethostname(), "pid": os.getpid(), "command": command,
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    job = next((url(os.environ) for name, url in _CI_URL if os.environ.get(name)), None)
    return {**info, "ci_job": job} if job else info


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def describe(info: dict | None, local: bool = True) -> str:
    """USER@HOST pid N (command, since T[, job URL]), and whether that process still runs (same host only)."""
    if not info:
        return "another process"
    same_host = info.get("host") in (None, socket.gethostname())
    gone = local and same_host and not pid_alive(int(info.get("pid", 0)))
    who = f"{info['user']}@{info['host']} " if info.get("user") and info.get("host") else ""
    job = f", {info['ci_job']}" if info.get("ci_job") else ""
    return (f"{who}pid {info.get('pid')} ({info.get('command', '?')}, since {info.get('since', '?')}{job}"
            f"{', no longer running' if gone else ''})")


def locked_error(environment: str, info: dict | None, local: bool = True) -> LockedError:
    return LockedError(f"environment {environment} is locked by {describe(info, local)}; wait for it to finish, "
                       "or pass --wait-lock SECONDS (status, validate, docs and history still work)")


def warn_taken_over(environment: str, previous: dict) -> None:
    """The lock was free, but its holder record says who died holding it."""
    console.warn(f"taking over the lock of environment {environment} left by {describe(previous, False)}, "
                 "which no longer runs")


def retrying(try_once: Callable[[], bool], wait: float) -> bool:
    """Call try_once() until it returns True or `wait` seconds have passed; whether it succeeded."""
    deadline = time.monotonic() + wait
    delay = 0.05
    while not try_once():
        if time.monotonic() + delay > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return True


def acquire(state_dir: Path, environment: str, command: str, wait: float = 0.0) -> None:
    """Take the environment's lock for the rest of this process, or raise LockedError (after `wait` seconds)."""
    state_dir = Path(state_dir).absolute()
    if state_dir in _held:
        return
    with on_disk(state_dir / "lock"):
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)

    def try_once() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    if not retrying(try_once, wait):
        os.close(fd)
        raise locked_error(environment, holder(state_dir))
    previous = holder(state_dir)
    if previous and previous.get("pid") != os.getpid():
        warn_taken_over(environment, previous)
    try:
        atomic_write(state_dir / "lock.json", json.dumps(holder_info(command)), 0o600, durable=False)
    except OSError:
        os.close(fd)  # the lock is not taken: nothing will run
        raise
    _held[state_dir] = fd


def release(state_dir: Path) -> None:
    state_dir = Path(state_dir).absolute()
    fd = _held.pop(state_dir, None)
    if fd is None:
        return
    try:
        (state_dir / "lock.json").unlink(missing_ok=True)
    except OSError:
        pass  # a stale record: the next holder overwrites it, and the flock below is what counts
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holder(state_dir: Path) -> dict | None:
    try:
        data = json.loads((Path(state_dir) / "lock.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
