"""Damaged handoffs: a stage's own handoff that exists but fails its checks is damage, not "never made".

`deploy` and the stage commands refuse to start while a handoff they would run on is damaged (refuse() runs
before any stage), in one line: the file, what is wrong, the last valid value from the history, and the two ways
on: restore it (`doit rollback --stage build --to ID`, `--mode restore` for the
others) or replace it with the stage's forced run. Never a silent rebuild, never a destroy or replace because
of a damaged file. A missing handoff is not damage: the stage makes it as it always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.base.errors import DamagedHandoff, HandoffError
from proxpipe.base.fsutil import display

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def last_valid(pipeline: Pipeline, stage: Stage) -> dict | None:
    """The newest history entry that handed off a valid value for this stage (None after a destroy)."""
    for entry in reversed(pipeline.history.entries()):
        if entry.get("stage") != stage.name or entry.get("outcome") != "ok":
            continue
        if entry.get("action") == "destroy":
            return None
        if entry.get("handoff"):
            return entry
    return None


def describe(pipeline: Pipeline, stage: Stage, found: DamagedHandoff, also: str = "") -> str:
    """The one line about a damaged handoff: what is wrong, what it was, and the ways on."""
    last = last_valid(pipeline, stage)
    shown, restore = stage.restore_advice(last, pipeline.handoffs.kept(stage) is not None)
    name = pipeline.handoffs.path(stage).name
    was = (f"the last valid one was {shown}" if last
           else f"the history of environment {pipeline.env.name} has no valid {name}")
    ways = ([f"restore it with `{restore}`"] if restore else []) + [f"replace it with `{stage.force_command()}`"]
    return f"{display(found.path)} is damaged: {found.problem}; {was}; {', or '.join(ways + ([also] if also else []))}"


def refuse(pipeline: Pipeline, stages: list[Stage], forced: set[str], given: dict[str, str]) -> None:
    """HandoffError when a stage about to run has a damaged handoff (unless it is forced, which replaces it), or
    reads an upstream handoff that is damaged and not one of these stages' own (unless given by hand)."""
    names = {stage.name for stage in stages}
    for stage in stages:
        found = None if stage.name in forced else pipeline.handoffs.damage(stage)
        if found is not None:
            raise HandoffError(f"{describe(pipeline, stage, found)}; nothing was run")
        if stage.name in given:
            continue
        for upstream in pipeline.sources(stage):
            found = None if upstream.name in names else pipeline.handoffs.damage(upstream)
            if found is not None:
                param = stage.UPSTREAM_PARAM
                also = f"pass {stage.consumes.title} with --{param['long']}" if param else ""
                raise HandoffError(f"{describe(pipeline, upstream, found, also)}; nothing was run")
