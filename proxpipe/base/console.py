"""Console output: stage banners, progress lines, warnings. Everything shown is secret-masked.

Output never ends a command with a traceback: where the terminal cannot show a character (PYTHONIOENCODING=ascii,
a C locale without UTF-8), the project's symbols become ASCII and anything else `?`, for every writer of the
process's stdout and stderr (doit's included); where a stream cannot be written at all (a full disk behind a
redirection), that is said in one line on the other stream, once, and the command goes on without it.
"""

from __future__ import annotations

import codecs
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from proxpipe.base import secrets

_COLORS = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1", "cyan": "36"}
# The symbols the project prints, for a stream that cannot encode them (tools' own output becomes ? instead).
ASCII = {"▶": ">", "·": "-", "✓": "+", "✗": "x", "│": "|", "↶": "<", "↻": "~", "…": "...", "╷": "|", "╵": "|",
         "✅": "[ok]", "❌": "[x]", "⏹": "[stopped]", "—": "-", "–": "-", "→": "->", "“": '"', "”": '"', "’": "'"}
_ERRORS = "proxpipe-ascii"


def _to_ascii(exc: UnicodeError) -> tuple[str | bytes, int]:
    """The codec error handler: one character at a time, its ASCII stand-in, else `?`; an undecodable byte that
    Python kept as a surrogate (surrogateescape) is written back as the byte it was."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    char = exc.object[exc.start]
    if 0xDC80 <= ord(char) <= 0xDCFF:
        return bytes([ord(char) - 0xDC00]), exc.start + 1
    return ASCII.get(char, "?"), exc.start + 1


codecs.register_error(_ERRORS, _to_ascii)


def fit_stream(stream) -> None:
    """Make stream (a text file of this process) write what its encoding cannot hold as ASCII or `?` instead of
    failing. Nothing changes for a UTF-8 stream."""
    encoding = getattr(stream, "encoding", None)
    if not encoding or not hasattr(stream, "reconfigure"):
        return
    try:
        if codecs.lookup(encoding).name == "utf-8" or stream.errors == _ERRORS:
            return
        stream.reconfigure(errors=_ERRORS)
    except (LookupError, ValueError, OSError):
        pass  # an unknown or detached stream: left as it is


class Console:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()  # .tag: the stage whose lines this thread prints, in a parallel run
        self.quiet = False  # -q: progress and warnings left out; errors, results and the final line stay
        self.json_mode = False  # --json: stdout holds the one JSON document; everything else goes to stderr
        self.lost: dict[str, str] = {}  # "stdout"/"stderr" -> the one line said when it could not be written
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            fit_stream(stream)

    @property
    def color(self) -> bool:
        return colors(self._stream())

    def paint(self, text: str, color: str, stream=None) -> str:
        """text in color, when the stream it is for (stdout, or stderr with --json) shows colors."""
        return f"\033[{_COLORS[color]}m{text}\033[0m" if colors(stream or self._stream()) else text

    def _stream(self):
        return sys.stderr if self.json_mode else sys.stdout

    def out(self, text: str = "", stream=None) -> None:
        stream = stream or self._stream()
        name = "stderr" if stream is sys.stderr else "stdout"
        with self._lock:
            if name in self.lost:
                return
            fit_stream(stream)
            tag = getattr(self._local, "tag", None)
            if tag and text.startswith("    "):  # a line inside a stage: whose, when stages run at once
                text = "\n".join(f"    [{tag}] {line[4:]}" for line in text.split("\n"))
            try:
                stream.write(secrets.mask(text) + "\n")
                stream.flush()
            except OSError as exc:
                self._lose(name, stream, exc)

    def _lose(self, name: str, stream, exc: OSError) -> None:
        """stdout or stderr cannot be written: said once on the other one (unless the reader just went away, as
        `| head` does), and the stream's file descriptor pointed at /dev/null, so that nothing (Python's last flush
        at exit included) tries again."""
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # doit's writer of a task's output: the process's own stream
            fd = 1 if name == "stdout" else 2
        target = _target(fd)
        problem = f"{name}{f' ({target})' if target else ''}: cannot write: {exc.strerror or exc}"
        self.lost[name] = problem
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except OSError:
            pass
        if isinstance(exc, BrokenPipeError) or name == "stderr" or "stderr" in self.lost:
            return
        try:
            sys.stderr.write(self.paint(f"error: {problem}; the rest of its output is lost", "red") + "\n")
            sys.stderr.flush()
        except OSError:
            self.lost["stderr"] = problem

    def tag(self) -> str | None:
        """The stage this thread prints for, if it is tagged."""
        return getattr(self._local, "tag", None)

    @contextmanager
    def tagged(self, stage: str) -> Iterator[None]:
        """The lines this thread prints inside a stage carry its name (stages running at once)."""
        self._local.tag = stage
        try:
            yield
        finally:
            self._local.tag = None

    def info(self, text: str) -> None:
        if not self.quiet:
            self.out(text)

    def json(self, document: object) -> None:
        """A command's --json output: one JSON document on stdout, secrets masked, and nothing else there."""
        import json

        self.json_mode = True
        text = document if isinstance(document, str) else json.dumps(document, indent=2, sort_keys=True, default=str)
        self.out(text, sys.stdout)

    def step(self, text: str) -> None:
        """A progress line inside a stage."""
        if not self.quiet:
            self.out(self.paint(f"    {text}", "dim"))

    def warn(self, text: str) -> None:
        if not self.quiet:
            self.out(self.paint(f"warning: {text}", "yellow", sys.stderr), sys.stderr)

    def error(self, text: str) -> None:
        self.out(self.paint(f"error: {text}", "red", sys.stderr), sys.stderr)


def colors(stream) -> bool:
    """Whether to color what goes to stream: a terminal, unless NO_COLOR is set to anything (no-color.org; proxpipe
    --no-color sets it) or the terminal is a dumb one."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or detached stream
        return False
    return tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _target(fd: int) -> str:
    """What a file descriptor is written to (a file, /dev/full), for the message; "" for a terminal or pipe."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return target if target.startswith("/") and not target.startswith("/dev/pts") else ""


console = Console()


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table with aligned columns."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"
