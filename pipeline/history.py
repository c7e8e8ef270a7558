"""history.jsonl: one line per stage run, rollback and destroy; append-only.

Lines are appended under an exclusive lock in one write, so concurrent writers never interleave;
a line cut short by a crash is skipped when reading.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from . import secrets


class History:
    def __init__(self, path: Path, durable: bool = True):
        self.path = Path(path)
        self.durable = durable  # fsync every line (the history); a log of runs can do without

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}
        line = secrets.mask(json.dumps(entry, sort_keys=True)) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size and not self._ends_with_newline():
                line = "\n" + line  # a crash cut the last line short; keep ours whole
            os.write(fd, line.encode())
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as src:
            src.seek(-1, os.SEEK_END)
            return src.read(1) == b"\n"

    def entries(self) -> list[dict[str, Any]]:
        """All readable entries, oldest first."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def builds(self) -> list[dict[str, Any]]:
        """Successful template builds, newest first."""
        return [e for e in reversed(self.entries())
                if e.get("action") == "build" and e.get("outcome") == "ok" and e.get("template_id")]


def show(history: History, limit: int) -> None:
    """`doit history`: builds, deploys, rollbacks and destroys, newest first."""
    from .console import console, table

    entries = list(reversed(history.entries()))[:limit]
    if not entries:
        console.out(f"no history yet in {history.path}")
        return
    rows = []
    for entry in entries:
        what = entry.get("handoff") or (f"template {entry['template_id']}" if entry.get("template_id") else "")
        if entry.get("from"):
            what += f" (was {entry['from']})"
        note = entry.get("message") or entry.get("plan") or entry.get("git_ref") or ""
        rows.append([entry.get("time", "")[:19].replace("T", " "), entry.get("stage", ""), entry.get("action", ""),
                     entry.get("outcome", ""), what, entry.get("git") or "", note[:80]])
    console.out(table(rows, ["time", "stage", "action", "outcome", "handoff", "git", "note"]))
