"""`doit history`: builds, deploys, rollbacks and destroys, newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.api.command import JSON, Command, Param, at_least
from proxpipe.base.console import console, table

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


def show(pipeline: Pipeline, limit: int = 20, json: bool = False) -> None:
    history = pipeline.history
    entries = list(reversed(history.entries()))[:limit]
    if json:  # schemas/history.schema.json
        console.json({"format_version": 1, "environment": pipeline.env.name, "entries": entries})
        return
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


COMMANDS = (
    Command("history", "builds, deploys and rollbacks, newest first", show,
            (Param("limit", "limit", int, 20, "how many entries", metavar="N", check=at_least(1)), JSON), group="look",
            description="Lists the environment's history: every stage run, rollback, destroy and template deletion.",
            example="doit history --limit 50"),
)
