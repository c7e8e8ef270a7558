"""Ctrl-C (SIGINT) and SIGTERM: stop the running tools the way they expect, then end the run cleanly.

Tools run in their own sessions, so a terminal's Ctrl-C reaches only the pipeline; it forwards the
interrupt. The first signal sends SIGINT to the process group of every running tool (Terraform and Packer
then stop cleanly and release their locks) and gives them a grace period; a second signal, or the grace
running out, sends SIGKILL. A tool whose second interrupt means "stop now" without losing anything
(ansible-playbook, which can miss the first one while it forks) gets SIGINT again after a few seconds. Every
signal also reaches the processes the tool started in sessions of their own (Ansible's workers), and those
still alive once the tool ended are killed: nothing it started outlives the run. In the main thread the
signal raises Interrupted, which the stage's code turns into one line, a history entry and exit code 128 +
the signal (130, 143). Interrupted is a SystemExit: wherever it ends up, the process exits with that code
and without a traceback.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(SystemExit):
    """Raised in the main thread at SIGINT or SIGTERM; its exit code is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


ENV_MARK = "PROXPIPE_TOOL_RUN"  # in a tool's environment: which of its processes left its process group


@dataclass(frozen=True)
class Tool:
    """A running tool as an interrupt stops it: SIGKILL after grace seconds; SIGINT again after again seconds.
    mark: the value of ENV_MARK in its environment, which every process it starts inherits."""
    grace: float
    again: float | None
    mark: str


_received: list[int] = []
_tools: dict[int, Tool] = {}  # process group of a running tool -> the tool
_again: set[int] = set()  # process groups sent SIGINT a second time
_deferred = 0
_reported = False


def install() -> None:
    """Handle SIGINT and SIGTERM in this process from now on (in the main thread only)."""
    for signum in SIGNALS:
        signal.signal(signum, _handler)


def uninstall() -> None:
    """Back to Python's defaults, with nothing received (for tests)."""
    global _deferred, _reported
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _received.clear()
    _tools.clear()
    _again.clear()
    _deferred, _reported = 0, False


def received() -> Interrupted | None:
    """The first interrupt this process got, if any."""
    return Interrupted(_received[0]) if _received else None


def count() -> int:
    """How many interrupts this process got (a second one kills the tools at once)."""
    return len(_received)


def track(pgid: int, tool: Tool) -> None:
    """A tool started in its own process group: forward interrupts to it."""
    _tools[pgid] = tool
    if _received:  # it started just as an interrupt came
        forward({pgid: tool})


def untrack(pgid: int) -> None:
    _tools.pop(pgid, None)
    _again.discard(pgid)


def finish(pgid: int) -> None:
    """The tool of this process group ended after an interrupt: kill what it left behind, in its group or not
    (an Ansible worker it forked just then, which its own cleanup missed)."""
    send([pgid], signal.SIGKILL)


def mark_reported() -> None:
    """The one line about the interrupt was printed; nobody else needs to."""
    global _reported
    _reported = True


def was_reported() -> bool:
    return _reported


@contextmanager
def deferred() -> Iterator[None]:
    """A section of the main thread that must not be cut in two (a handoff and its history line): a signal that
    arrives inside it is raised at its end. (Signals reach only the main thread: elsewhere this changes nothing.)"""
    global _deferred
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = len(_received)
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
    if len(_received) > before and not _deferred:
        raise Interrupted(_received[0])


def _handler(signum: int, frame) -> None:
    _received.append(signum)
    if len(_received) == 1:
        forward(dict(_tools))
    else:
        send(list(_tools), signal.SIGKILL)
    if not _deferred:
        raise Interrupted(signum)


def forward(groups: dict[int, Tool]) -> None:
    """SIGINT to these tools now (and again later to those that want it); SIGKILL to those still running when
    their grace period is over."""
    send(list(groups), signal.SIGINT)
    for pgid, tool in groups.items():
        if tool.again is not None and tool.again < tool.grace:
            _later(tool.again, pgid, signal.SIGINT)
        _later(tool.grace, pgid, signal.SIGKILL)


def sent_again(pgid: int) -> bool:
    """Whether this tool was sent SIGINT a second time, as it wants when it has not stopped at the first."""
    return pgid in _again


def _later(seconds: float, pgid: int, signum: int) -> None:
    def fire():
        if pgid in _tools:  # still running
            if signum == signal.SIGINT:
                _again.add(pgid)
            send([pgid], signum)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def send(groups: list[int], signum: int) -> None:
    """signum to each of these process groups, those that still exist, and to the processes their tools started
    in process groups of their own (Ansible's workers), found by the mark in their environment."""
    marks = {f"{ENV_MARK}={_tools[pgid].mark}".encode(): pgid for pgid in groups if pgid in _tools}
    for pid in _marked(marks) if marks else ():
        _quietly(os.kill, pid, signum)
    for pgid in groups:
        _quietly(os.killpg, pgid, signum)


def _quietly(kill, target: int, signum: int) -> None:
    try:
        kill(target, signum)
    except (ProcessLookupError, PermissionError):  # gone already, or not ours
        pass


def _marked(marks: dict[bytes, int]) -> list[int]:
    """The processes whose environment holds one of these NAME=mark entries, but those in that tool's own process
    group (the signal to the group reaches them: twice would be a second interrupt); none without /proc."""
    found = []
    for pid in (int(name) for name in _listdir("/proc") if name.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                entries = environ.read().split(b"\0")
            if any(needle in entries and os.getpgid(pid) != pgid for needle, pgid in marks.items()):
                found.append(pid)
        except OSError:  # gone, or another user's
            continue
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
