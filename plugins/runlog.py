"""Built-in plugin: the run log. Every run appends one entry to the environment's run log (runs.jsonl in the
local state): run id, command, start, end, the signal that interrupted it if one did, and per stage whether it
ran, was skipped, failed or was interrupted, its duration, handoff, outcome and tool versions. `doit report`
prints the recent runs from it."""

from __future__ import annotations

import time
from dataclasses import asdict

from proxpipe.api import JSON, Command, Param, PipelineError, hookimpl
from proxpipe.domain.history import Journal

LOG = "runs"


@hookimpl
def run_finished(run, ok, outcomes):
    try:
        Journal(run.store, LOG).append({
            "run": run.id, "environment": run.environment, "command": run.command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run.started)),
            "duration": round((run.finished or time.time()) - run.started, 2), "ok": ok,
            **({"interrupted": run.interrupted} if run.interrupted else {}),
            "stages": [{k: v for k, v in asdict(o).items() if v not in (None, "", {})} for o in outcomes],
        })
    except PipelineError:
        if ok:
            raise
        # A failed run whose state store failed too (its database went away): the run's own error says so.


def recent(store, count: int = 10) -> list[dict]:
    """The last `count` runs, newest first."""
    return list(reversed(Journal(store, LOG).entries()))[:count]


@hookimpl
def register_commands(register):
    register(Command("report", "the recent runs with per-stage timings (from the run log)",
                     lambda pipeline, limit, json=False: show(pipeline, limit, json),
                     (Param("limit", "limit", int, 10, "how many runs", metavar="N"), JSON), group="look",
                     description="Lists the environment's recent runs from its run log: the command, when it started, "
                                 "how it ended, and what each stage did and how long it took.",
                     example="proxpipe report --limit 5 --json"))


def show(pipeline, count: int, json: bool = False) -> None:
    """`doit report`: the recent runs and their per-stage timings (--json: schemas/report.schema.json)."""
    from proxpipe.base.console import console, seconds, table

    store = pipeline.store
    runs = recent(store, count)
    if json:
        console.json({"format_version": 1, "environment": pipeline.env.name, "runs": runs})
        return
    if not runs:
        console.out(f"no runs recorded yet in {store.where}")
        return
    rows = []
    for run in runs:
        stages = "  ".join(f"{s['name']} {seconds(s.get('duration', 0))}" if s["status"] == "ran"
                           else f"{s['name']} {s['status']}" for s in run.get("stages", []))
        rows.append([run["run"], run.get("started", "")[:19].replace("T", " "), run.get("command", ""),
                     _result(run), seconds(run.get("duration", 0)), stages])
    console.out(table(rows, ["run", "started", "command", "result", "took", "stages"]))


def _result(run: dict) -> str:
    if run.get("interrupted"):
        return f"INTERRUPTED ({run['interrupted']})"
    return "ok" if run.get("ok") else "FAILED"
