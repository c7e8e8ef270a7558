"""Waiting for hosts: until each accepts SSH, then until its readiness commands succeed.

All hosts are waited for in parallel, each with exponential backoff, under one deadline; the
console says every few seconds which hosts are still awaited. Never a fixed sleep. An interrupt (Ctrl-C,
SIGTERM) ends the wait at once: the probing threads stop and their ssh processes are killed, so nothing
holds up the exit.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable

from proxpipe.base import interrupts
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError
from proxpipe.domain.inventory import Host
from proxpipe.domain.toolrunner import tool_path_env

PROGRESS_EVERY = 5.0
_probes: set[subprocess.Popen] = set()  # ssh processes of the probes running now
_probes_lock = threading.Lock()


def ssh_banner(host: Host, timeout: float) -> str | None:
    """None when the host's SSH server answers with its banner; else what went wrong."""
    try:
        with socket.create_connection((host.address, host.port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            banner = conn.recv(256)
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None if banner.startswith(b"SSH-") else f"not an SSH server (it said {banner[:40]!r})"


def run_ssh(host: Host, command: str, connect_timeout: float, limit: float = 60,
            control_dir: str | None = None) -> tuple[int, str]:
    """Run command on host with OpenSSH as Ansible would connect; (exit code, output). With control_dir the
    connection stays open there for Ansible to reuse (its ControlPath is the same %(directory)s/%%C)."""
    shared = ["-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", f"ControlPath={control_dir}/%C"] \
        if control_dir else []
    argv = ["ssh", *shared, *host.ssh_args(connect_timeout=connect_timeout), command]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tool_path_env(),
                                stdin=subprocess.DEVNULL)
    except OSError as exc:
        return 127, f"cannot run ssh: {exc.strerror}"
    with _probes_lock:
        _probes.add(proc)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return 124, "timed out"
    finally:
        with _probes_lock:
            _probes.discard(proc)
    return proc.returncode, (out + err).strip()


def wait_all(hosts: list[Host], what: str, probe: Callable[[Host], str | None], deadline: float,
             notify: Callable[[str], None] = console.step) -> None:
    """Call probe(host) for every host in parallel until it returns None, with backoff, until the deadline.

    Raises PipelineError naming every host that was not ready in time and its last problem.
    """
    if not hosts:
        return
    end = time.monotonic() + deadline
    last: dict[str, str] = {}
    pending = {host.name for host in hosts}
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()  # set when the waiting thread is interrupted: the probing threads end

    def one(host: Host) -> None:
        delay = 0.05
        try:
            while not stop.is_set():
                problem = probe(host)
                with lock:
                    if problem is None:
                        pending.discard(host.name)
                        return
                    last[host.name] = problem
                if time.monotonic() + delay > end:
                    return
                stop.wait(delay)
                delay = min(delay * 1.5, 3.0)
        except Exception as exc:  # noqa: BLE001 - a probe's bug is raised in the waiting thread
            errors.append(exc)

    # Daemon threads, not a pool: an interrupted wait must not wait for a probe to time out before exiting.
    threads = [threading.Thread(target=one, args=(host,), daemon=True, name=f"{what}: {host.name}")
               for host in hosts]
    for thread in threads:
        thread.start()
    try:
        _watch(threads, hosts, pending, lock, what, notify)
    except BaseException:
        stop.set()
        with _probes_lock:
            for proc in list(_probes):
                proc.kill()
        raise
    if errors:
        raise errors[0]
    if pending:
        late = [h for h in hosts if h.name in pending]
        details = "; ".join(f"{h.label()}: {last.get(h.name, 'no answer')}" for h in late)
        raise PipelineError(f"{what}: {len(late)} host{'s' if len(late) != 1 else ''} not ready within "
                            f"{deadline:.0f}s: {details}")


def _watch(threads: list[threading.Thread], hosts: list[Host], pending: set[str], lock: threading.Lock, what: str,
           notify: Callable[[str], None]) -> None:
    """Wait for the probing threads, saying every few seconds which hosts are still awaited."""
    started = time.monotonic()
    next_note = started + PROGRESS_EVERY
    for thread in threads:
        while thread.is_alive():
            # Short joins: off the main thread (a stage of a parallel run) an interrupt is seen only by looking.
            thread.join(min(0.2, max(0.0, next_note - time.monotonic())))
            stop = interrupts.received()
            if stop is not None:
                raise stop
            if thread.is_alive() and time.monotonic() >= next_note:
                with lock:
                    waiting = [h.label() for h in hosts if h.name in pending]
                notify(f"{what}: still waiting for {len(waiting)} host{'s' if len(waiting) != 1 else ''} "
                       f"after {time.monotonic() - started:.0f}s: {', '.join(waiting[:5])}"
                       + (" ..." if len(waiting) > 5 else ""))
                next_note += PROGRESS_EVERY


def wait_for_ssh(hosts: list[Host], deadline: float, connect_timeout: float = 5.0) -> None:
    wait_all(hosts, "SSH wait", lambda host: ssh_banner(host, connect_timeout), deadline)


def wait_until_ready(hosts: list[Host], commands: list[str], deadline: float, connect_timeout: float = 5.0,
                     control_dir: str | None = None) -> None:
    """Run each readiness command on each host until it succeeds (e.g. `cloud-init status --wait`)."""
    if not commands:
        return

    def probe(host: Host) -> str | None:
        for command in commands:
            code, output = run_ssh(host, command, connect_timeout, limit=deadline, control_dir=control_dir)
            if code != 0:
                tail = output.splitlines()[-1] if output else ""
                return f"`{command}` exited {code}" + (f": {tail[:120]}" if tail else "")
        return None

    wait_all(hosts, "readiness", probe, deadline)
