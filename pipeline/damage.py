"""Damaged handoffs: a stage's own handoff that exists but fails its checks is damage, not "never made".

`deploy` and the stage commands refuse to start while a handoff they would run on is damaged (the `_handoffs`
task runs refuse() before any stage), in one line: the file, what is wrong, the last valid value from the
history, and the two ways on: restore it (`doit rollback --stage build --to ID`, `--mode restore` for the
others) or replace it with the stage's forced run. Never a silent rebuild, never a destroy or replace because
of a damaged file. A missing handoff is not damage: the stage makes it as it always did.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import handoff, interrupts
from .console import console
from .errors import DamagedHandoff, HandoffError, PipelineError
from .events import StageOutcome
from .fsutil import display, sha256_file
from .uptodate import upstream_override

if TYPE_CHECKING:
    from stages.base import Stage

    from .context import Pipeline


def damage(stage: Stage) -> DamagedHandoff | None:
    """What is wrong with the stage's handoff when it exists and is invalid; None when valid or missing."""
    try:
        handoff.read(stage.produces, stage.handoff_path)
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


def restore(pipeline: Pipeline, stage: Stage) -> None:
    """`doit rollback --stage NAME --mode restore`: write the stage's last valid handoff back (from the kept copy,
    or what the stage kind restores from, e.g. the Terraform state's output). Changes nothing else."""
    from stages.base import history_note

    from .execute import stage_job

    if not stage.handoff_path.exists():
        raise PipelineError(f"{display(stage.handoff_path)} is missing, not damaged: nothing to restore "
                            "(`doit deploy` makes it)")
    last = last_valid(pipeline, stage)
    started = time.monotonic()
    console.info(f"↶ {stage.name}: restoring {stage.handoff_path.name}")
    value = stage.restore_value(stage_job(pipeline, stage, f"{stage.name}-restore"))
    with interrupts.deferred():  # the handoff and its history line go together
        handoff.write(stage.produces, stage.handoff_path, value)
        digest, summary = sha256_file(stage.handoff_path), stage.produces.summary(value)
        duration = time.monotonic() - started
        pipeline.record(stage, "restore", outcome="ok", handoff=summary, handoff_sha256=digest,
                        duration=round(duration, 2))
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, summary, "restored"))
    if last is None or not last.get("handoff_sha256"):
        note = ""
    elif last["handoff_sha256"] == digest:
        note = f" (the one {history_note(last)} wrote)"
    else:
        note = (f" (not the one {history_note(last)} wrote: it changed since; the next `doit deploy` runs "
                "what depends on it)")
    console.info(f"  ✓ {pipeline.relative(stage.handoff_path)} restored: {summary}{note}")
