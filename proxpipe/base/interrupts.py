"""Ctrl-C (SIGINT) and SIGTERM: stop the running tools the way they expect, then end the run cleanly.

Tools run in their own sessions, so a terminal's Ctrl-C reaches only the pipeline; it forwards the
interrupt. The first signal sends SIGINT to the process group of every running tool (Terraform and Packer
then stop cleanly and release their locks) and gives them a grace period; a second signal, or the grace
running out, sends SIGKILL. In the main thread the signal raises Interrupted, which the stage's code turns
into one line, a history entry and exit code 128 + the signal (130, 143). Interrupted is a SystemExit:
wherever it ends up, the process exits with that code and without a traceback.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(SystemExit):
    """Raised in the main thread at SIGINT or SIGTERM; its exit code is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


_received: list[int] = []
_tools: dict[int, float] = {}  # process group of a running tool -> its grace period in seconds
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
    _deferred, _reported = 0, False


def received() -> Interrupted | None:
    """The first interrupt this process got, if any."""
    return Interrupted(_received[0]) if _received else None


def count() -> int:
    """How many interrupts this process got (a second one kills the tools at once)."""
    return len(_received)


def track(pgid: int, grace: float) -> None:
    """A tool started in its own process group: forward interrupts to it."""
    _tools[pgid] = grace
    if _received:  # it started just as an interrupt came
        forward({pgid: grace})


def untrack(pgid: int) -> None:
    _tools.pop(pgid, None)


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


def forward(groups: dict[int, float]) -> None:
    """SIGINT to these tools now; SIGKILL to those still running when their grace period is over."""
    if not groups:
        return
    send(list(groups), signal.SIGINT)
    timer = threading.Timer(max(groups.values()), lambda: send([g for g in groups if g in _tools], signal.SIGKILL))
    timer.daemon = True
    timer.start()


def send(groups: list[int], signum: int) -> None:
    """signum to each of these process groups, those that still exist."""
    for pgid in groups:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass
