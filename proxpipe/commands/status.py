"""`doit status`: per stage, up to date or stale and why, from the records in the state store. Runs no tool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.base.console import console, table
from proxpipe.base.errors import HandoffError
from proxpipe.engine.uptodate import RemoteState, stale_reasons

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


def stage_states(pipeline: Pipeline) -> list[dict]:
    """[{stage, kind, state, why, handoff}] in stage order."""
    rows, upstream_stale = [], None
    for stage in pipeline.stages:
        why = stale_reasons(pipeline, stage, {})
        if not why and RemoteState(pipeline, stage.name)() is False:  # None: the stage has no remote opinion
            why = [stage.remote_reason]
        if why:
            state = "stale"
            upstream_stale = upstream_stale or stage.name
        elif upstream_stale:
            state, why = "up to date", [f"reruns if {upstream_stale} changes its handoff"]
        else:
            state, why = "up to date", [stage.remote_reason or "nothing it depends on changed"]
        rows.append({"stage": stage.name, "kind": stage.kind, "state": state, "why": "; ".join(why),
                     "handoff": _handoff(stage)})
    return rows


def _handoff(stage) -> str:
    name = stage.handoff_path.name
    if stage.handoff_text() is None:
        return f"{name}: none"
    try:
        return f"{name}: {stage.produces.summary(stage.read_handoff())}"
    except HandoffError as exc:
        return f"{name}: INVALID ({str(exc).split(': ', 1)[-1]})"


def show(pipeline: Pipeline) -> None:
    env = pipeline.env
    console.out(f"environment {env.name}" + (f" ({env.description})" if env.description else "")
                + f" · state in {pipeline.store.where}")
    rows = stage_states(pipeline)
    console.out(table([[r["stage"], r["kind"], r["state"], r["handoff"], r["why"]] for r in rows],
                      ["stage", "kind", "state", "handoff", "why"]))
