"""`doit history`: builds, deploys, rollbacks and destroys, newest first."""

from __future__ import annotations

from proxpipe.base.console import console, table
from proxpipe.domain.history import History


def show(history: History, limit: int) -> None:
    entries = list(reversed(history.entries()))[:limit]
    if not entries:
        console.out(f"no history yet in {history.store.where}")
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
