"""Running one stage as a doit action: upstream handoff in, tool run, handoff out, history, events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from doit.exceptions import TaskFailed

from proxpipe.api.stage import StageJob
from proxpipe.base import interrupts
from proxpipe.base.console import console, seconds
from proxpipe.base.errors import DamagedHandoff, HandoffError, PipelineError, ToolError
from proxpipe.base.events import StageOutcome
from proxpipe.base.fsutil import display
from proxpipe.base.secrets import reveal
from proxpipe.domain import handoff
from proxpipe.domain.tools import ToolRunner
from proxpipe.engine import damage, uptodate
from proxpipe.engine.uptodate import upstream_override

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def read_upstream(pipeline: Pipeline, stage: Stage, override: str | None) -> tuple[Any, Path | None]:
    """(value, file) this stage starts from: given by hand, or the previous stage's handoff."""
    kind = stage.consumes
    if kind is None:
        return None, None
    param = stage.UPSTREAM_PARAM or {}
    if override is not None:
        if param.get("is_path"):
            path = Path(override).absolute()
            return handoff.read(kind, path), path
        try:
            return kind.parse(override), None
        except ValueError as exc:
            raise HandoffError(f"--{param['long']} {override!r}: {exc}") from None
    upstream = pipeline.upstream(stage)
    how = f"pass it with --{param['long']}" if param else ""
    try:
        if upstream is None:
            path = pipeline.state_dir / kind.filename
            return handoff.read(kind, path), path
        return upstream.read_handoff(), upstream.handoff_path
    except DamagedHandoff as exc:
        if upstream is None:
            raise
        raise HandoffError(damage.describe(pipeline, upstream, exc, how)) from None
    except HandoffError as exc:
        hint = f"run `doit {upstream.name}` first" if upstream else "create it"
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
                        stage.config.retry, stage.config.where, stage.config.stop_grace)
    return StageJob(runner, pipeline.run, pipeline, upstream_path, options=dict(options or {}))


def run_stage(pipeline: Pipeline, stage_name: str, task) -> dict | TaskFailed:
    """The doit action of a stage task."""
    try:
        return execute(pipeline, pipeline.stage(stage_name), task.options or {})
    except PipelineError as exc:  # the state store failed after the stage's own steps (its database went away)
        console.error(str(exc))
        return TaskFailed(str(exc))


def execute(pipeline: Pipeline, stage: Stage, options: dict) -> dict | TaskFailed:
    """Run one stage: its upstream handoff in, its tool, its handoff out, the history and the hooks."""
    try:
        run = pipeline.start_run(pipeline.command)
    except PipelineError as exc:  # a plugin whose on_error is fail, at run_started
        console.error(str(exc))
        return TaskFailed(str(exc))
    info = pipeline.info(stage)
    started = time.monotonic()
    console.info(console.paint(f"▶ {stage.name}", "bold") + console.paint(
        f"  {stage.kind} · {pipeline.relative(stage.dir)}", "dim"))
    job = None
    entry: dict = {}
    try:
        upstream, upstream_path = read_upstream(pipeline, stage, upstream_override(pipeline, stage, options))
        job = stage_job(pipeline, stage, stage.name, upstream_path, options)
        pipeline.plugins.stage_started(run, info)
        # Until it succeeds, the stage counts as not run: if this process is killed half-way, the next
        # deploy runs it again rather than trusting what the tool may have half changed.
        pipeline.store.forget_stages([stage.name])
        pipeline.cluster_changed()  # what the stage's tool does is not in an earlier answer of the API
        record = uptodate.current_record(pipeline, stage, options)
        entry.update(inputs=stage.inputs_digest(record["inputs"]), config=record["config"],
                     **{key: options[key] for key in ("plan_id", "approved_by") if options.get(key)})
        value = stage.run(upstream, job)
    except interrupts.Interrupted as stop:
        _interrupted(pipeline, stage, info, entry, started, stop)
    except PipelineError as exc:
        stop = interrupts.received()
        if stop is not None:  # the tool failed because it was stopped
            _interrupted(pipeline, stage, info, entry, started, stop)
        return _failed(pipeline, stage, info, entry, started, exc, job.tool_versions if job else {})
    with interrupts.deferred():  # the handoff and its history line go together, whatever signal comes
        try:
            changed = stage.write_handoff(value)
        except PipelineError as exc:
            return _failed(pipeline, stage, info, entry, started, exc, job.tool_versions)
        summary = stage.produces.summary(value)
        duration = time.monotonic() - started
        pipeline.record(stage, stage.ACTION, **{**entry, **job.notes, "outcome": "ok", "handoff": summary,
                                                "handoff_sha256": stage.handoff_digest(),
                                                "duration": round(duration, 2)})
        stage.keep_copy()
        uptodate.save(pipeline, stage, record)
        if job.notes.get("changed_resources"):
            # New or replaced machines need configuring even when their inventory entry reads the same.
            pipeline.store.forget_stages([s.name for s in pipeline.downstream(stage)])
    return _succeeded(pipeline, stage, info, duration, job, value, summary, changed)


def _succeeded(pipeline, stage, info, duration, job, value, summary: str, changed: bool) -> dict | TaskFailed:
    _after_handoff(stage, value, job)  # after the history: retention counts this build
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, summary,
                                          tool_versions=dict(job.tool_versions)))
    unchanged = "" if changed else " (unchanged)"
    console.info(console.paint(f"  ✓ {stage.name}", "green") + f" {seconds(duration)}  {summary}{unchanged}")
    try:
        if changed:
            pipeline.plugins.handoff_written(job.run, info, stage.handoff_path, summary)
        pipeline.plugins.stage_finished(job.run, info, duration, summary, dict(job.tool_versions))
    except PipelineError as exc:  # a plugin whose on_error is fail
        console.error(str(exc))
        return TaskFailed(str(exc))
    return {"handoff": summary, "duration": round(duration, 3)}


def _after_handoff(stage: Stage, value: Any, job) -> None:
    # The handoff is written and valid: a problem here (say, deleting an old template) only warns.
    try:
        stage.after_handoff(value, job)
    except PipelineError as exc:
        console.warn(f"{stage.name}: {exc}")


def _failed(pipeline, stage, info, entry, started, exc: PipelineError, tool_versions) -> TaskFailed:
    duration = time.monotonic() - started
    message = str(exc)
    try:
        pipeline.record(stage, stage.ACTION, **entry, outcome="failed", message=message, duration=round(duration, 2))
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
        kept = "kept" if stage.handoff_text() is not None else "not written"
    except PipelineError:  # the state store went away (the failure says so): nothing was written to it
        kept = "left as it was"
    console.out(f"    {pipeline.relative(stage.handoff_path)} {kept}; fix the cause and run "
                f"`doit deploy` again to resume at {stage.name}")
    return TaskFailed(message)


def _interrupted(pipeline, stage, info, entry, started, stop: interrupts.Interrupted) -> NoReturn:
    """Ctrl-C or SIGTERM while the stage ran: its tools are stopped (see pipeline.tools) and its handoff is the
    previous one. Recorded, told to the plugins, said in one line; then the process ends with 130 or 143."""
    with interrupts.deferred():  # a further Ctrl-C must not cut the record short
        duration = time.monotonic() - started
        message = f"interrupted by {stop.name}"
        pipeline.record(stage, stage.ACTION, **entry, outcome="interrupted", signal=stop.name, message=message,
                        duration=round(duration, 2))
        pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "interrupted", duration, None, message))
        pipeline.run.interrupted = stop.name
        try:
            pipeline.plugins.stage_failed(pipeline.run, info, duration, message)
        except PipelineError as hook:  # a plugin whose on_error is fail: the stage ended anyway
            console.error(str(hook))
        kept = (f"{pipeline.relative(stage.handoff_path)} is the previous one" if stage.handoff_text() is not None
                else f"there is no {stage.handoff_path.name} yet")
        console.out(console.paint(f"  ✗ {stage.name} {message} after {seconds(duration)}: ", "red")
                    + f"nothing handed off ({kept}); `doit deploy` resumes at {stage.name}")
        interrupts.mark_reported()
    raise stop
