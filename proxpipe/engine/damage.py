"""Damaged handoffs: a stage's own handoff that exists but fails its checks is damage, not "never made".

`deploy` and the stage commands refuse to start while a handoff they would run on is damaged (the `_handoffs`
task runs refuse() before any stage), in one line: the file, what is wrong, the last valid value from the
history, and the two ways on: restore it (`doit rollback --stage build --to ID`, `--mode restore` for the
others) or replace it with the stage's forced run. Never a silent rebuild, never a destroy or replace because
of a damaged file. A missing handoff is not damage: the stage makes it as it always did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.base.errors import DamagedHandoff, HandoffError
from proxpipe.base.fsutil import display
from proxpipe.engine.uptodate import upstream_override

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def damage(stage: Stage) -> DamagedHandoff | None:
    """What is wrong with the stage's handoff when it exists and is invalid; None when valid or missing."""
    try:
        stage.read_handoff()
    except DamagedHandoff as exc:
        return exc
    except HandoffError:
        return None
    return None


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
    shown, restore = stage.restore_advice(last)
    was = (f"the last valid one was {shown}" if last else
           f"the history of environment {pipeline.env.name} has no valid {stage.handoff_path.name}")
    ways = ([f"restore it with `{restore}`"] if restore else []) + [f"replace it with `{stage.force_command()}`"]
    return f"{display(found.path)} is damaged: {found.problem}; {was}; {', or '.join(ways + ([also] if also else []))}"


def refuse(pipeline: Pipeline, names: list[str]) -> None:
    """The `_handoffs` task: HandoffError when a stage about to run has a damaged handoff, or the first one's
    upstream handoff (read from its file) is damaged. A stage forced on the command line may replace its own."""
    options = pipeline.task_options
    for name in names:
        stage = pipeline.stage(name)
        given = options.get(name) or {}
        if any(given.get(p["name"]) for p in stage.PARAMS if p.get("forces")):
            continue
        found = damage(stage)
        if found is not None:
            raise HandoffError(f"{describe(pipeline, stage, found)}; nothing was run")
    first = pipeline.stage(names[0]) if names else None
    upstream = pipeline.upstream(first) if first else None
    if upstream is None or upstream_override(pipeline, first, options.get(first.name)) is not None:
        return
    found = damage(upstream)
    if found is not None:
        param = first.UPSTREAM_PARAM
        also = f"pass {first.consumes.title} with --{param['long']}" if param else ""
        raise HandoffError(f"{describe(pipeline, upstream, found, also)}; nothing was run")
