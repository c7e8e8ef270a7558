"""The logs of JSON objects in a state store: the history (one entry per stage run, rollback, destroy and
template deletion; append-only) and the run log. A line cut short by a crash is skipped when reading."""

from __future__ import annotations

import json
import time
from typing import Any

from proxpipe.base import secrets
from proxpipe.domain.state.store import HISTORY, StateStore


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
        for line in self.store.lines(self.log):
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out


class History(Journal):
    def __init__(self, store: StateStore):
        super().__init__(store, HISTORY)

    def builds(self) -> list[dict[str, Any]]:
        """Successful template builds, newest first."""
        return [e for e in reversed(self.entries())
                if e.get("action") == "build" and e.get("outcome") == "ok" and e.get("template_id")]
