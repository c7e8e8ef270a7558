"""Running the tools: one log per stage, secrets masked, output tail on failure, timeouts,
and retries of steps whose output matches a retryable pattern (like Terragrunt's retryable errors)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from proxpipe.base import interrupts, secrets
from proxpipe.base.console import console, seconds
from proxpipe.base.errors import FileError, ToolError
from proxpipe.base.fsutil import atomic_write, file_error, on_disk
from proxpipe.base.retry import Backoff
from proxpipe.domain.config import Retry

TAIL_LINES = 25
READER = "tool-output:"  # the name of a thread that reads a tool's output into its log, before the tool's pid


def _seconds_from_env(name: str, default: float) -> float:
    try:
        return max(0.05, float(os.environ.get(name, default)))
    except ValueError:
        return default


# A tool silent this long gets a line saying what it is still doing, and another each time as long again passes in
# silence: people see it is not stuck, and CI runners that end silent jobs do not. PROXPIPE_HEARTBEAT: other seconds.
HEARTBEAT_DEFAULT = 15.0
HEARTBEAT = _seconds_from_env("PROXPIPE_HEARTBEAT", HEARTBEAT_DEFAULT)


@dataclass
class StepResult:
    argv: list[str]
    returncode: int
    output: str  # stdout and stderr as they came, masked
    duration: float
    stdout: str = ""  # with capture=True: stdout alone, unmasked, for parsing
    attempts: int = 1


def tool_path_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for tools: this Python's bin directory is on PATH (ansible-playbook, pipeline-lab),
    and HashiCorp tools do not phone home."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    parts = env.get("PATH", "").split(os.pathsep)
    if bindir not in parts:
        env["PATH"] = os.pathsep.join([bindir] + [p for p in parts if p])
    env.setdefault("CHECKPOINT_DISABLE", "1")
    return env


def which(program: str, root: Path) -> str | None:
    """The path of program: relative to the project when it contains a slash, else looked up on PATH."""
    if "/" in program:
        path = Path(program) if os.path.isabs(program) else root / program
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    # sbin directories are often not on a user's PATH, but daemons such as sshd live there.
    return shutil.which(program, path=os.pathsep.join([tool_path_env().get("PATH", ""), "/usr/sbin", "/sbin"]))


def require(program: str, root: Path, hint: str) -> str:
    """which(), or a ToolError that names the program and says how to fix it."""
    found = which(program, root)
    if not found:
        raise ToolError(f"{program} not found: {hint}")
    return found


_libc = None


def _die_with_parent() -> None:
    # In the child, before exec: the tool gets SIGTERM when the pipeline dies, even by SIGKILL. (A new
    # session lets us stop its whole process group on a timeout.)
    if _libc:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _load_libc() -> None:
    global _libc
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            _libc = False


class ToolRunner:
    """Runs one stage's tool steps, all logged to one file."""

    def __init__(self, log_path: Path, cwd: Path, env: dict[str, str], timeout: float, retry: Retry,
                 label: str, grace: float = 30.0, again: float | None = None):
        self.log_path = Path(log_path)
        self.cwd = Path(cwd)
        self.env = tool_path_env({**os.environ, **env})
        self.timeout = timeout
        self.retry = retry
        self.label = label
        # At an interrupt its tool gets SIGINT, SIGINT again after `again` seconds if it wants that, and SIGKILL
        # after `grace` seconds.
        self.grace, self.again = grace, again
        self._patterns = [re.compile(p) for p in retry.patterns]
        self.on_start: Callable[[], None] | None = None  # called once, before the first tool process starts
        self.retries = 0  # retries its steps took (see run())
        self._log_problem: FileError | None = None  # the log could not be written while a tool ran
        _load_libc()

    def log(self, text: str) -> None:
        """Append to the stage's log; FileError (one line) when it cannot be written, so no tool starts unlogged."""
        with on_disk(self.log_path):
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8", errors="replace") as out:
                out.write(secrets.mask(text).rstrip("\n") + "\n")

    def _log_after(self, text: str) -> None:
        """Append to the log once a tool has run: a failure then must not hide what the tool did; it is told once."""
        try:
            self.log(text)
        except FileError as exc:
            self._log_problem = self._log_problem or exc

    def _tell_log_problem(self) -> None:
        problem, self._log_problem = self._log_problem, None
        if problem is not None:
            console.warn(f"{problem}; the log lacks the rest of the tool's output (the tool's outcome stands)")

    def run(self, argv: Sequence[str], step: str, *, retryable: bool = True, check: bool = True,
            env: dict[str, str] | None = None, cwd: Path | None = None,
            on_line: Callable[[str], None] | None = None, capture: bool = False, private: bool = False
            ) -> StepResult:
        """Run argv; retry while its output matches a retryable pattern; ToolError when it fails.

        capture=True keeps stdout apart from stderr (for JSON output); both are logged. private=True captures
        stdout without logging or showing it (a plan's JSON holds the variables' values in clear).
        """
        backoff = Backoff(self.retry.attempts, self.retry.max_seconds)
        while True:
            result = self._once(list(argv), step, env, cwd, on_line, capture or private, private)
            result.attempts = backoff.attempt
            stop = interrupts.received()
            if stop is not None:  # it failed because it was stopped (in a thread beside the interrupted one)
                raise stop
            if result.returncode == 0 or not check:
                # what it took: its own retries, and the Proxmox API's that a program it ran printed (pipeline-lab)
                self.retries += result.attempts - 1 + len(re.findall(r"; retrying in \d", result.output))
                return result
            matched = self._retryable(result.output) if retryable else None
            delay = backoff.next_delay() if matched else None
            if delay is None:
                raise self._failure(step, result)
            message = (f"{step} failed (exit {result.returncode}); retrying in {delay:.1f}s "
                       f"(attempt {backoff.attempt} of {self.retry.attempts}): output matched {matched!r}")
            self.log(f"# {message}")
            console.step(message)
            time.sleep(delay)

    def _retryable(self, output: str) -> str | None:
        for pattern in self._patterns:
            if pattern.search(output):
                return pattern.pattern
        return None

    def _once(self, argv, step, env, cwd, on_line, capture, private=False) -> StepResult:
        stop = interrupts.received()
        if stop is not None:  # never start a tool once the run is interrupted
            raise stop
        started = time.monotonic()
        self.log(f"\n$ {shlex.join(argv)}    # {step}, in {cwd or self.cwd}, at {_now()}")
        proc = tool = None
        if any(secrets.holds_secret(arg) for arg in argv):
            # Any user of the machine can read a command line (ps, /proc/<pid>/cmdline).
            self.log("# not started: its command line would hold a secret")
            raise ToolError(f"{step}: not started: its command line would hold a secret; pass secrets as a stage's "
                            "vars or env, which reach the tool through its environment or a private file")
        if self.on_start is not None:
            started_hook, self.on_start = self.on_start, None
            started_hook()
        lines: list[str] = []
        stdout: list[str] = []
        readers: list[threading.Thread] = []
        beat = Heartbeat(self.label.rsplit(".", 1)[-1], step, HEARTBEAT)
        try:
            with interrupts.deferred():  # a tool that starts is tracked and read, so an interrupt reaches it
                tool = interrupts.Tool(self.grace, self.again, os.urandom(6).hex())
                proc = self._start(argv, step, {**(env or {}), interrupts.ENV_MARK: tool.mark}, cwd, capture)
                interrupts.track(proc.pid, tool)
                streams = [(proc.stdout, stdout if capture else None, private)] + (
                    [(proc.stderr, None, False)] if capture else [])
                tag = console.tag()  # the stage's name on its progress lines, when stages run at once
                for stream, keep, unlogged in streams:
                    readers.append(threading.Thread(target=self._read,
                                                    args=(stream, lines, on_line, keep, tag, unlogged, beat),
                                                    name=f"{READER}{proc.pid}", daemon=True))
                    readers[-1].start()
                beat.start()
            expired = self._wait(proc)
            lost = interrupts.received()
            if lost is not None:  # Python dropped the handler's exception (it landed in a weakref callback): the same
                raise lost
        except (interrupts.Interrupted, KeyboardInterrupt) as exc:
            beat.stop()  # it is being stopped now, not waited for
            if proc is not None:
                self._settle(proc, tool, exc, started, readers)
            raise
        finally:
            beat.stop()
            if proc is not None:
                interrupts.untrack(proc.pid)
        if expired:
            for reader in readers:
                reader.join(5)
            self._log_after(f"# stopped after {self.timeout:.0f}s")
            self._tell_log_problem()
            raise ToolError(f"{step} timed out after {self.timeout:.0f}s and was stopped "
                            f"(raise {self.label}.timeout in pipeline.yaml if it needs longer)",
                            lines[-TAIL_LINES:], str(self.log_path))
        for reader in readers:
            reader.join()
        duration = time.monotonic() - started
        self._log_after(f"# exit {proc.returncode} after {duration:.1f}s, at {_now()}")
        self._tell_log_problem()
        return StepResult(argv, proc.returncode, "\n".join(lines), duration, stdout="\n".join(stdout))

    def _start(self, argv, step, env, cwd, capture) -> subprocess.Popen:
        try:
            return subprocess.Popen(argv, cwd=cwd or self.cwd, env={**self.env, **(env or {})},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE if capture else subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", bufsize=1,
                                    start_new_session=True, preexec_fn=_die_with_parent, umask=0o077)
        except OSError as exc:
            raise ToolError(f"{step}: cannot start {argv[0]}: {exc.strerror}") from None
        except UnicodeEncodeError:  # Python in a C locale, without UTF-8 mode
            raise ToolError(f"{step}: cannot start {argv[0]}: its command line or environment holds characters the "
                            "locale cannot pass; run with a UTF-8 locale (LC_ALL=C.UTF-8)") from None

    def _settle(self, proc, tool: interrupts.Tool, exc: BaseException, started: float,
                readers: list[threading.Thread]) -> None:
        """After an interrupt: wait until the tool has stopped (it got SIGINT, and SIGKILL after its grace period or
        at a second interrupt), then kill what it left behind (a provisioner's children, Ansible's workers)."""
        if isinstance(exc, KeyboardInterrupt):  # no handler installed (a library caller): stop it here
            interrupts.forward({proc.pid: tool})
        while True:
            try:
                proc.wait()
                break
            except (interrupts.Interrupted, KeyboardInterrupt):  # a second interrupt: SIGKILL, at once
                interrupts.send([proc.pid], signal.SIGKILL)
        interrupts.finish(proc.pid)
        for reader in readers:  # its last words, for the log
            reader.join(2)
        self._log_after(f"# interrupted: the tool was sent SIGINT; {self._how(proc, started)}, at {_now()}")
        self._tell_log_problem()

    def _how(self, proc, started: float) -> str:
        """How the tool ended after the interrupt, for the log."""
        again = (f"it did not stop within {self.again:g}s and was sent SIGINT again; "
                 if interrupts.sent_again(proc.pid) else "")
        if proc.returncode == -signal.SIGKILL:
            why = ("a second interrupt came" if interrupts.count() > 1
                   else f"it did not stop within {self.grace:g}s")
            return f"{again}killed after {time.monotonic() - started:.1f}s: {why}"
        return f"{again}it stopped ({_exit(proc.returncode)})"

    def _wait(self, proc) -> bool:
        """Wait for proc to exit; True if it ran past the timeout and was stopped. A blocking wait, with a timer
        for the timeout: Popen.wait(timeout) polls, which added up to 50 ms to every step."""
        expired = threading.Event()

        def expire():
            expired.set()
            self._stop(proc)

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        return expired.is_set()

    def _read(self, stream, lines: list[str], on_line, keep: list[str] | None, tag: str | None = None,
              private: bool = False, beat: Heartbeat | None = None) -> None:
        """Read the tool's output to its end, into lines and the log (only into keep when private). The pipe is
        drained even when the log cannot be written (a full disk): a tool must never block on it."""
        if tag:
            with console.tagged(tag):
                return self._read(stream, lines, on_line, keep, None, private, beat)
        if private:  # not heard by the heartbeat either: its last line would be said
            keep.extend(raw.rstrip("\n") for raw in stream)
            self.log(f"# its output ({len(keep)} lines) is not logged: it holds the variables' values")
            return
        log = self._open_log()
        try:
            for raw in stream:
                line = secrets.mask(raw.rstrip("\n"))
                lines.append(line)
                if beat is not None:
                    beat.heard(line)
                if keep is not None:
                    keep.append(raw.rstrip("\n"))
                if log is not None:
                    try:
                        log.write(line + "\n")
                        log.flush()
                    except OSError as exc:
                        self._log_problem = self._log_problem or file_error(exc, self.log_path)
                        log = _close_quietly(log)
                if on_line:
                    on_line(line)
        finally:
            _close_quietly(log)

    def _open_log(self):
        try:
            return open(self.log_path, "a", encoding="utf-8", errors="replace")
        except OSError as exc:
            self._log_problem = self._log_problem or file_error(exc, self.log_path)
            return None

    @staticmethod
    def _stop(proc) -> None:
        """At its timeout: SIGTERM, SIGKILL 10 s later, then what it left behind, in its group or not."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            interrupts.send([proc.pid], sig)
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        interrupts.finish(proc.pid)

    def _failure(self, step: str, result: StepResult) -> ToolError:
        tail = [line for line in result.output.splitlines() if line.strip()][-TAIL_LINES:]
        reason = _reason(tail)
        tries = f" after {result.attempts} attempts" if result.attempts > 1 else ""
        return ToolError(f"{step} failed (exit {result.returncode}){tries}" + (f": {reason}" if reason else ""),
                         tail, str(self.log_path))


class Heartbeat:
    """While a tool runs: a line once it has been silent for `interval` seconds, then one per `interval` it stays
    silent. It names the stage, the step (what it waits for: `packer build`), the time so far and the tool's last
    line (Packer's "Waiting for SSH to become available...")."""

    def __init__(self, stage: str, step: str, interval: float):
        self.stage, self.step, self.interval = stage, step, interval
        self.started = self.last_heard = time.monotonic()
        self.last_line = ""
        self._said = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.started = self.last_heard = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def heard(self, line: str) -> None:
        self.last_heard = time.monotonic()
        if line.strip():
            self.last_line = line.strip()

    def _run(self) -> None:
        while not self._done.wait(max(0.05, max(self.last_heard, self._said) + self.interval - time.monotonic())):
            now = time.monotonic()
            if now - self.last_heard >= self.interval and now - self._said >= self.interval:
                self._said = now
                console.step(self.line(now))

    def line(self, now: float) -> str:
        last = f"; its last line: {self.last_line[:100]}" if self.last_line else ""
        return (f"{self.stage}: {self.step} still running after {seconds(now - self.started)}, no output for "
                f"{seconds(now - self.last_heard)}{last}")


def _close_quietly(stream) -> None:
    """Close stream, whose last buffered write may fail again on a full disk; None, for `log = _close_quietly(log)`."""
    if stream is not None:
        try:
            stream.close()
        except OSError:
            pass
    return None


def _exit(returncode: int) -> str:
    """Popen's returncode as words: exit 1, signal SIGINT."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"


def _now() -> str:
    return time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"


_ERROR_LINE = r"(?i)(error|fatal|failed|unreachable)"


def _reason(tail: list[str]) -> str:
    """The most telling line of a failed tool's output: its first error line near the end."""
    for line in tail:
        text = line.strip().lstrip("│╷╵ ").strip()
        if re.search(_ERROR_LINE, text) and len(text) > 6:
            return text[:300]
    return tail[-1].strip()[:300] if tail else ""


# ----------------------------------------------------------------------------- versions


def version(path: str, args: Sequence[str], pattern: str, state_dir: Path) -> str:
    """The tool's version, cached in the state directory by binary path, size and mtime, so that it costs a
    process only once."""
    cache_file = state_dir / "tool-versions.json"
    try:
        stat = os.stat(path)
    except OSError:
        return "unknown"
    key = f"{path}:{stat.st_size}:{int(stat.st_mtime)}"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    try:
        # A scratch HOME: `ansible-playbook --version` alone would create ~/.ansible.
        home = cache_file.parent / "tool-home"
        home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([path, *args], capture_output=True, text=True, timeout=30,
                              env=tool_path_env({**os.environ, "HOME": str(home)}))
        out = done.stdout + done.stderr  # ssh -V answers on stderr
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(pattern, out)
    found = match.group(1) if match else "unknown"
    cache[key] = found
    try:
        atomic_write(cache_file, json.dumps(cache, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only or full state directory: asked again next time
    return found
