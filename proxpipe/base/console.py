"""Console output: stage banners, progress lines, warnings. Everything shown is secret-masked."""

from __future__ import annotations

import os
import sys
import threading

from proxpipe.base import secrets

_COLORS = {"green": "32", "red": "31", "yellow": "33", "dim": "2", "bold": "1", "cyan": "36"}


class Console:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.quiet = False

    @property
    def color(self) -> bool:
        return sys.stdout.isatty() and "NO_COLOR" not in os.environ

    def paint(self, text: str, color: str) -> str:
        return f"\033[{_COLORS[color]}m{text}\033[0m" if self.color else text

    def out(self, text: str = "", stream=None) -> None:
        stream = stream or sys.stdout
        with self._lock:
            stream.write(secrets.mask(text) + "\n")
            stream.flush()

    def info(self, text: str) -> None:
        if not self.quiet:
            self.out(text)

    def step(self, text: str) -> None:
        """A progress line inside a stage."""
        if not self.quiet:
            self.out(self.paint(f"    {text}", "dim"))

    def warn(self, text: str) -> None:
        self.out(self.paint(f"warning: {text}", "yellow"), sys.stderr)

    def error(self, text: str) -> None:
        self.out(self.paint(f"error: {text}", "red"), sys.stderr)


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
