"""The engine's side of destroy, rollback and restore: a stage kind's verb runs its tool and returns a value; here
its handoff is written (or removed), the history and the stage records are kept right, and the stages that depend
on it are run again (rollback) or made stale (destroy)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from proxpipe.api.stage import history_note
from proxpipe.base import interrupts
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError
from proxpipe.base.events import StageOutcome
from proxpipe.base.fsutil import display
from proxpipe.engine import uptodate
from proxpipe.engine.damage import last_valid
from proxpipe.engine.execute import execute, read_upstream, stage_job

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def destroy(pipeline: Pipeline, stage: Stage) -> None:
    """Tear down what the stage made and remove its handoff; it and every stage after it are stale afterwards."""
    started = time.monotonic()
    job = stage_job(pipeline, stage, f"{stage.name}-destroy")
    upstream = _upstream_if_any(pipeline, stage)
    console.info(f"↻ {stage.name}: destroying what it made ({stage.kind} · {pipeline.relative(stage.dir)})")
    # Once its tool starts nothing here counts as up to date any more; if it fails half-way, deploy repairs it.
    job.runner.on_start = lambda: pipeline.store.forget_stages([s.name for s in pipeline.downstream(stage, True)])
    if not stage.destroy(upstream, job):
        return
    pipeline.handoffs.delete(stage)
    duration = time.monotonic() - started
    pipeline.record(stage, "destroy", outcome="ok", duration=round(duration, 2))
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, None, "destroyed"))
    later = ", ".join(s.name for s in pipeline.downstream(stage, inclusive=True))
    console.info(f"  ✓ destroyed in {duration:.1f}s; {pipeline.handoffs.path(stage).name} removed ({later} "
                 f"{'are' if ',' in later else 'is'} stale until the next deploy)")


def rollback(pipeline: Pipeline, stage: Stage, mode: str, to: str) -> None:
    """A kind's rollback(mode, to): its new handoff written and recorded, then every stage after it run again."""
    job = stage_job(pipeline, stage, f"{stage.name}-{mode}")
    upstream, job.upstream_path = _upstream(pipeline, stage)
    stage.preflight(upstream, job)
    job.runner.on_start = lambda: uptodate.attempt(pipeline, stage, pipeline.run.id)  # e.g. a replace's apply
    try:
        made = stage.rollback(mode, to, upstream, job)
    except PipelineError as exc:
        uptodate.attempt_ended(pipeline, stage, "failed", str(exc))
        raise
    with interrupts.deferred():  # the handoff and its history line go together
        pipeline.handoffs.write(stage, made.value)
        pipeline.record(stage, made.action, outcome="ok",
                        handoff=stage.produces.summary(made.value), handoff_sha256=pipeline.handoffs.digest(stage),
                        **{**job.notes, **made.notes})
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", 0.0, stage.produces.summary(made.value),
                                          made.summary))
    console.info(f"↶ {stage.name}: {made.summary}")
    if not made.current:  # e.g. an old playbook: the next deploy runs today's
        pipeline.store.forget_stages([stage.name])
        return
    uptodate.mark_up_to_date(pipeline, stage)
    run_downstream(pipeline, stage)


def run_downstream(pipeline: Pipeline, stage: Stage) -> None:
    """Run every stage after `stage`, whatever its state (what it hands them changed)."""
    for later in pipeline.downstream(stage):
        if not execute(pipeline, later, {}):
            from proxpipe.engine.run import StageFailed

            raise StageFailed(f"{later.name} failed")


def restore(pipeline: Pipeline, stage: Stage) -> None:
    """Write the stage's last valid handoff back over a damaged one (from the kept copy, or what the kind restores
    from, e.g. the Terraform state's output). Changes nothing else."""
    if pipeline.handoffs.text(stage) is None:
        raise PipelineError(f"{display(pipeline.handoffs.path(stage))} is missing, not damaged: nothing to restore "
                            "(`doit deploy` makes it)")
    last = last_valid(pipeline, stage)
    started = time.monotonic()
    console.info(f"↶ {stage.name}: restoring {pipeline.handoffs.path(stage).name}")
    value = stage.restore(pipeline.handoffs.kept(stage), stage_job(pipeline, stage, f"{stage.name}-restore"))
    with interrupts.deferred():  # the handoff and its history line go together
        pipeline.handoffs.write(stage, value)
        digest, summary = pipeline.handoffs.digest(stage), stage.produces.summary(value)
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
    console.info(f"  ✓ {pipeline.relative(pipeline.handoffs.path(stage))} restored: {summary}{note}")


def _upstream(pipeline: Pipeline, stage: Stage):
    """The upstream value a verb starts from, or (None, None) for a stage that consumes nothing."""
    return read_upstream(pipeline, stage, None) if stage.consumes is not None else (None, None)


def _upstream_if_any(pipeline: Pipeline, stage: Stage):
    """For a teardown: the upstream value when it can be read (the kind decides whether it needs it)."""
    try:
        return _upstream(pipeline, stage)[0]
    except PipelineError:
        return None
