"""Running one stage: its upstream handoff in, its kind's verb, its handoff out, the history, the record, the hooks.

Until a stage's tool starts nothing is changed: a stage whose inputs cannot succeed (an upstream handoff that cannot
be read, an unset secret, a template id the cluster lacks: the kind's preflight) fails with its record as it was.
Once its first tool process starts, the record says so (an attempt), so a run killed or failed half-way makes the
stage stale with that reason, and the next deploy runs it again rather than trusting what the tool half changed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from proxpipe.api.stage import StageJob
from proxpipe.base import interrupts
from proxpipe.base.console import console, seconds
from proxpipe.base.errors import PipelineError, ToolError
from proxpipe.base.events import StageOutcome
from proxpipe.base.fsutil import display
from proxpipe.base.secrets import reveal
from proxpipe.domain.toolrunner import ToolRunner
from proxpipe.engine import uptodate

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def read_upstream(pipeline: Pipeline, stage: Stage, given: str | None) -> tuple[Any, Path | None]:
    """(value, file) the stage starts from; one line naming the way on when it cannot be read."""
    from proxpipe.base.errors import DamagedHandoff, HandoffError
    from proxpipe.engine import damage

    sources = pipeline.sources(stage)
    param = stage.UPSTREAM_PARAM or {}
    how = f"pass it with --{param['long']}" if param else ""
    try:
        return pipeline.handoffs.upstream(stage, sources, given)
    except DamagedHandoff as exc:
        source = next((s for s in sources if pipeline.handoffs.path(s) == exc.path), None)
        if source is None or given is not None:
            raise
        raise HandoffError(damage.describe(pipeline, source, exc, how)) from None
    except HandoffError as exc:
        missing = [s.name for s in sources if pipeline.handoffs.text(s) is None]
        if given is not None or (sources and not missing):
            raise
        hint = f"run `doit {missing[0]}` first" if missing else "create it"
        raise HandoffError(f"{exc}; {hint}" + (f", or {how}" if how else "")) from None


def stage_job(pipeline: Pipeline, stage: Stage, log_name: str, upstream_path: Path | None = None,
              options: dict | None = None, log_dir: Path | None = None) -> StageJob:
    """What a stage's tool steps run with: the stage's environment (and the Proxmox credentials when it wants
    them), one log file in log_dir (default: the run's), the stage's timeout and retries. An env entry whose
    ${VAR} is not set fails here."""
    env = {**(pipeline.proxmox_tool_env() if stage.WANTS_PROXMOX else {}),
           **stage.expand({name: reveal(value) for name, value in stage.config.env.items()})}
    stage.register_secrets()  # before any of its output is logged
    runner = ToolRunner((log_dir or pipeline.run.log_dir) / f"{log_name}.log", stage.dir, env, stage.config.timeout,
                        stage.config.retry, stage.config.where, stage.config.stop_grace,
                        stage.INTERRUPT_AGAIN)
    return StageJob(runner, pipeline.run, pipeline, upstream_path, options=dict(options or {}))


def banner(pipeline: Pipeline, stage: Stage, what: str = "") -> None:
    console.info(console.paint(f"▶ {stage.name}", "bold") + console.paint(
        f"  {what or stage.kind} · {pipeline.relative(stage.dir)}", "dim"))


def execute(pipeline: Pipeline, stage: Stage, options: dict[str, Any], given: str | None = None,
            quiet_interrupt: bool = False) -> bool:
    """Run one stage; True when it succeeded. given: its upstream handoff by hand; quiet_interrupt: an interrupt is
    recorded but said by the caller (stages running at once get one line together)."""
    run = pipeline.start_run(stage.name)  # the command's run, when it started one
    info = pipeline.info(stage)
    started = time.monotonic()
    banner(pipeline, stage)
    job, entry = None, {}
    try:
        upstream, upstream_path = read_upstream(pipeline, stage, given)
        job = stage_job(pipeline, stage, stage.name, upstream_path, options)
        stage.preflight(upstream, job)
        pipeline.plugins.stage_started(run, info)
        record = uptodate.current_record(pipeline, stage, given)
        entry.update(inputs=stage.inputs_digest(record["inputs"]), config=record["config"],
                     **{key: options[key] for key in ("plan_id", "approved_by") if options.get(key)})
        job.runner.on_start = lambda: uptodate.attempt(pipeline, stage, run.id)  # the tool may change things
        pipeline.cluster_changed()  # what the stage's tool does is not in an earlier answer of the API
        value = stage.run(upstream, job)
    except interrupts.Interrupted as stop:
        _interrupted(pipeline, stage, info, entry, started, stop, quiet_interrupt)
    except PipelineError as exc:
        stop = interrupts.received()
        if stop is not None:  # the tool failed because it was stopped
            _interrupted(pipeline, stage, info, entry, started, stop, quiet_interrupt)
        return _failed(pipeline, stage, info, entry, started, exc, job.tool_versions if job else {})
    finally:
        pipeline.cluster_changed()  # an answer the stage itself asked for is from before its tool's changes
    with interrupts.deferred():  # the handoff and its history line go together, whatever signal comes
        try:
            changed, summary, duration = _hand_off(pipeline, stage, value, job, record, entry, started)
        except PipelineError as exc:  # the state store failed (a full disk): the record says the stage must run
            return _failed(pipeline, stage, info, entry, started, exc, job.tool_versions)
    return _succeeded(pipeline, stage, info, duration, job, value, summary, changed)


def _hand_off(pipeline, stage, value, job, record, entry, started) -> tuple[bool, str, float]:
    """Write the handoff, its history line and the stage's record; (changed, summary, duration)."""
    changed = pipeline.handoffs.write(stage, value)
    summary = stage.produces.summary(value)
    duration = time.monotonic() - started
    if job.runner.retries:
        job.notes["retries"] = job.runner.retries  # e.g. Proxmox's config lock, taken by another clone
    pipeline.record(stage, stage.ACTION, **{**entry, **job.notes, "outcome": "ok", "handoff": summary,
                                                      "handoff_sha256": pipeline.handoffs.digest(stage),
                                                      "duration": round(duration, 2)})
    uptodate.save(pipeline, stage, record)
    if job.notes.get("changed_resources"):
        # New or replaced machines need configuring even when their inventory entry reads the same.
        pipeline.store.forget_stages([s.name for s in pipeline.downstream(stage)])
    return changed, summary, duration


def _succeeded(pipeline, stage, info, duration, job, value, summary: str, changed: bool) -> bool:
    _after_handoff(stage, value, job)  # after the history: retention counts this build
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, summary,
                                          tool_versions=dict(job.tool_versions)))
    unchanged = "" if changed else " (unchanged)"
    console.info(console.paint(f"  ✓ {stage.name}", "green") + f" {seconds(duration)}  {summary}{unchanged}")
    try:
        if changed:
            pipeline.plugins.handoff_written(job.run, info, info.handoff, summary)
        pipeline.plugins.stage_finished(job.run, info, duration, summary, dict(job.tool_versions))
    except PipelineError as exc:  # a plugin whose on_error is fail
        console.error(str(exc))
        return False
    return True


def _after_handoff(stage: Stage, value: Any, job) -> None:
    # The handoff is written and valid: a problem here (say, deleting an old template) only warns.
    try:
        stage.after_handoff(value, job)
    except PipelineError as exc:
        console.warn(f"{stage.name}: {exc}")


def _failed(pipeline, stage, info, entry, started, exc: PipelineError, tool_versions) -> bool:
    duration = time.monotonic() - started
    message = str(exc)
    try:
        pipeline.record(stage, stage.ACTION, **entry, outcome="failed", message=message, duration=round(duration, 2))
        uptodate.attempt_ended(pipeline, stage, "failed", message)
    except PipelineError:
        pass  # the history is in a state store that failed too, which is what `message` says
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "failed", duration, None, message,
                                          dict(tool_versions)))
    try:
        pipeline.plugins.stage_failed(pipeline.run, info, duration, message)
    except PipelineError as hook:  # a plugin whose on_error is fail: the stage failed anyway
        console.error(str(hook))
    console.out(console.paint(f"  ✗ {stage.name} failed after {seconds(duration)}: ", "red") + message)
    if isinstance(exc, ToolError):
        for line in exc.tail[-12:]:
            console.out(console.paint(f"    │ {line}", "dim"))
        if exc.log:
            console.out(f"    full log: {display(Path(exc.log))}")
    try:
        kept = "kept" if pipeline.handoffs.text(stage) is not None else "not written"
    except PipelineError:  # the state store went away (the failure says so): nothing was written to it
        kept = "left as it was"
    console.out(f"    {pipeline.relative(info.handoff)} {kept}; fix the cause and run "
                f"`doit deploy` again to resume at {stage.name}")
    return False


def _interrupted(pipeline, stage, info, entry, started, stop: interrupts.Interrupted, quiet: bool) -> NoReturn:
    """Ctrl-C or SIGTERM while the stage ran: its tools are stopped (see proxpipe.base.interrupts) and its handoff
    is the previous one. Recorded, told to the plugins, said in one line; then the process ends with 130 or 143."""
    with interrupts.deferred():  # a further Ctrl-C must not cut the record short
        duration = time.monotonic() - started
        message = f"interrupted by {stop.name}"
        pipeline.record(stage, stage.ACTION, **entry, outcome="interrupted", signal=stop.name, message=message,
                        duration=round(duration, 2))
        uptodate.attempt_ended(pipeline, stage, "interrupted", message)
        pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "interrupted", duration, None, message))
        pipeline.run.interrupted = stop.name
        try:
            pipeline.plugins.stage_failed(pipeline.run, info, duration, message)
        except PipelineError as hook:  # a plugin whose on_error is fail: the stage ended anyway
            console.error(str(hook))
        if not quiet:
            kept = (f"{pipeline.relative(info.handoff)} is the previous one"
                    if pipeline.handoffs.text(stage) is not None else f"there is no {info.handoff.name} yet")
            console.out(console.paint(f"  ✗ {stage.name} {message} after {seconds(duration)}: ", "red")
                        + f"nothing handed off ({kept}); `doit deploy` resumes at {stage.name}")
            interrupts.mark_reported()
    raise stop
