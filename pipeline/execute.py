"""Running one stage as a doit action: upstream handoff in, tool run, handoff out, history, events."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doit.exceptions import TaskFailed

from stages.base import StageJob

from . import handoff
from .console import console, seconds
from .doitstate import forget
from .errors import HandoffError, PipelineError, ToolError
from .events import StageOutcome
from .tools import ToolRunner
from .uptodate import upstream_override

if TYPE_CHECKING:
    from stages.base import Stage

    from .context import Pipeline


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
    path = upstream.handoff_path if upstream else pipeline.state_dir / kind.filename
    try:
        return handoff.read(kind, path), path
    except HandoffError as exc:
        hint = f"run `doit {upstream.name}` first" if upstream else "create it"
        how = f", or pass it with --{param['long']}" if param else ""
        raise HandoffError(f"{exc}; {hint}{how}") from None


def run_stage(pipeline: Pipeline, stage_name: str, task) -> dict | TaskFailed:
    """The doit action of a stage task."""
    stage = pipeline.stage(stage_name)
    try:
        run = pipeline.start_run(pipeline.command)
    except PipelineError as exc:  # a plugin whose on_error is fail, at run_started
        console.error(str(exc))
        return TaskFailed(str(exc))
    info = pipeline.info(stage)
    started = time.monotonic()
    console.info(console.paint(f"▶ {stage.name}", "bold") + console.paint(
        f"  {stage.kind} · {_rel(stage.dir, pipeline.root)}", "dim"))
    job = None
    entry = {"run": run.id, "stage": stage.name, "kind": stage.kind, "action": stage.ACTION,
             "git": pipeline.git_commit()}
    try:
        upstream, upstream_path = read_upstream(pipeline, stage, upstream_override(pipeline, stage, task.options))
        tool_env = {**(pipeline.proxmox_tool_env() if stage.WANTS_PROXMOX else {}), **stage.config.env}
        runner = ToolRunner(run.log_dir / f"{stage.name}.log", stage.dir, tool_env, stage.config.timeout,
                            stage.config.retry, f"{stage.config.where}")
        job = StageJob(runner, run, pipeline, upstream_path, options=dict(task.options or {}))
        pipeline.plugins.stage_started(run, info)
        # Until it succeeds, the stage counts as not run: if this process is killed half-way, the next
        # deploy runs it again rather than trusting what the tool may have half changed.
        forget([stage])
        entry.update(inputs=stage.inputs_digest(), config=stage.config_digest())
        value = stage.run(upstream, job)
        changed = handoff.write(stage.produces, stage.handoff_path, value)
        summary = stage.produces.summary(value)
        if changed:
            pipeline.plugins.handoff_written(run, info, stage.handoff_path, summary)
    except PipelineError as exc:
        return _failed(pipeline, stage, info, entry, started, exc, job.tool_versions if job else {})
    return _succeeded(pipeline, stage, info, entry, started, job, value, summary, changed)


def _succeeded(pipeline, stage, info, entry, started, job, value, summary: str, changed: bool) -> dict | TaskFailed:
    duration = time.monotonic() - started
    pipeline.history.append({**entry, **job.notes, "outcome": "ok", "handoff": summary,
                             "duration": round(duration, 2)})
    _after_handoff(stage, value, job)  # after the history: retention counts this build
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "ran", duration, summary,
                                          tool_versions=dict(job.tool_versions)))
    if job.notes.get("changed_resources"):
        # New or replaced machines need configuring even when their inventory entry reads the same.
        forget(pipeline.stages[pipeline.stages.index(stage) + 1:])
    unchanged = "" if changed else " (unchanged)"
    console.info(console.paint(f"  ✓ {stage.name}", "green") + f" {seconds(duration)}  {summary}{unchanged}")
    try:
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
    pipeline.history.append({**entry, "outcome": "failed", "message": message, "duration": round(duration, 2)})
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
            console.out(f"    full log: {_rel(Path(exc.log), Path.cwd())}")
    kept = "kept" if stage.handoff_path.exists() else "not written"
    console.out(f"    {_rel(stage.handoff_path, pipeline.root)} {kept}; fix the cause and run "
                f"`doit deploy` again to resume at {stage.name}")
    return TaskFailed(message)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
