"""The logs of JSON objects in a state store: the history (one entry per stage run, rollback, destroy and
template deletion; append-only) and the run log. A line cut short by a crash is skipped when reading, with a
warning (once per process), never fatal."""

from __future__ import annotations

import json
import time
from typing import Any

from proxpipe.base import secrets
from proxpipe.base.console import console
from proxpipe.domain.state.store import HISTORY, StateStore

_warned: set[tuple[str, int]] = set()


class Journal:
    """An append-only log of JSON objects; every line passes through the secret mask before it is stored."""

    def __init__(self, store: StateStore, log: str):
        self.store = store
        self.log = log

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry}
        self.store.append(self.log, secrets.mask(json.dumps(entry, sort_keys=True)))
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """All readable entries, oldest first."""
        out = []
        lines = self.store.lines(self.log)
        for number, line in enumerate(lines, 1):
            try:
                item = json.loads(line)
            except ValueError:
                item = None
            if isinstance(item, dict):
                out.append(item)
            elif line.strip():
                self._skipped(number, number == len(lines))
        return out

    def _skipped(self, number: int, last: bool) -> None:
        label = self.store.log_label(self.log)
        if (label, number) in _warned:
            return
        _warned.add((label, number))
        why = "cut short, by a crash or a full disk" if last else "not a JSON object"
        console.warn(f"{label}: line {number} is {why}; skipped")


class History(Journal):
    def __init__(self, store: StateStore):
        super().__init__(store, HISTORY)

    def builds(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Successful template builds (of one build stage, or all), newest first; not a run that took its template
        from a channel (it built nothing)."""
        return [e for e in reversed(self.entries())
                if e.get("action") == "build" and e.get("outcome") == "ok" and isinstance(e.get("template_id"), int)
                and stage in (None, e.get("stage")) and not e.get("channel")]

    def templates(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Successful builds (of one build stage, or all), newest first, one entry per template id."""
        seen, out = set(), []
        for entry in self.builds(stage):
            if entry["template_id"] not in seen:
                seen.add(entry["template_id"])
                out.append(entry)
        return out
