"""Whether a stage is up to date, decided from the environment's state store, so every checkout that shares the
store agrees (doit's own database is only a local cache).

A stage's record, saved when it succeeds, holds the digests of what it was made from: each input file, its
settings, the upstream handoff it read, and the handoff it wrote. The stage is up to date while all of them are
what they are now, it was not forgotten on this machine (`doit forget`), no option forces it, and its remote
product still exists (RemoteState). Only digests are stored, so no secret lands in a record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxpipe.base.errors import PipelineError
from proxpipe.base.fsutil import sha256_file

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline

NEVER_RAN = "it has not run successfully yet"
FORGOTTEN = "forgotten.json"  # in the local cache: stages `doit forget` made stale on this machine
ALL = "*"  # `doit forget` of every task


def upstream_override(pipeline: Pipeline, stage: Stage, options: dict[str, Any] | None) -> str | None:
    """The upstream handoff given by hand (--template-id, --inventory, or their env vars), if any.

    `deploy` always chains the stages' own handoffs: a TEMPLATE_ID left in the environment must not
    silently replace what the build stage just made.
    """
    param = stage.UPSTREAM_PARAM
    if not param or not options or "deploy" in pipeline.command.split():
        return None
    value = options.get(param["name"])
    return None if value in (None, "") else str(value)


def upstream_digest(pipeline: Pipeline, stage: Stage, override: str | None) -> str:
    if override is not None:
        if stage.UPSTREAM_PARAM.get("is_path"):
            path = Path(override)
            return "given:" + (sha256_file(path) if path.is_file() else f"missing {override}")
        return "given:" + override.strip()
    upstream = pipeline.upstream(stage)
    return "" if upstream is None else (upstream.handoff_digest() or "missing")


def current_record(pipeline: Pipeline, stage: Stage, options: dict[str, Any] | None) -> dict[str, Any]:
    """What the stage's record would say if it succeeded now (its own handoff as it is on disk)."""
    return {"inputs": stage.input_digests(), "config": stage.config_digest(),
            "upstream": upstream_digest(pipeline, stage, upstream_override(pipeline, stage, options)),
            "handoff": stage.handoff_digest() or "missing"}


def save(pipeline: Pipeline, stage: Stage, record: dict[str, Any]) -> None:
    """Record a success: this record, with the handoff as the stage has just written it."""
    pipeline.store.save_stage_record(stage.name, {**record, "handoff": stage.handoff_digest() or "missing",
                                                  "time": time.time()})
    _unforget(pipeline, stage.name)


def mark_up_to_date(pipeline: Pipeline, stage: Stage) -> None:
    """Record that `stage` just succeeded outside its own task (a rollback ran it or wrote its handoff)."""
    save(pipeline, stage, current_record(pipeline, stage, {}))


def stale_reasons(pipeline: Pipeline, stage: Stage, options: dict[str, Any] | None) -> list[str]:
    """Why the stage must run; empty when its record says it is up to date."""
    saved = pipeline.store.stage_record(stage.name)
    if saved is None:
        return [NEVER_RAN]
    marks = _read_marks(pipeline.state_dir)
    if max(marks.get(stage.name, 0), marks.get(ALL, 0)) > saved.get("time", 0):
        return ["it was forgotten on this machine (doit forget)"]
    reasons = differences(pipeline, stage, saved, current_record(pipeline, stage, options), "the stage wrote it")
    forced = [f"--{p['long']} was given" for p in stage.PARAMS if p.get("forces") and (options or {}).get(p["name"])]
    return reasons + forced


def differences(pipeline: Pipeline, stage: Stage, then: dict[str, Any], now: dict[str, Any], since: str
                ) -> list[str]:
    """What differs between two records of a stage (what it was made from, what it would be made from now)."""
    reasons = _input_reasons(pipeline, stage, then.get("inputs") or {}, now["inputs"])
    if then.get("config") != now["config"]:
        reasons.append("its configuration in pipeline.yaml changed")
    if then.get("upstream") != now["upstream"]:
        upstream = pipeline.upstream(stage)
        reasons.append("its upstream handoff was given by hand" if now["upstream"].startswith("given:")
                       else f"the handoff of {upstream.name if upstream else 'the stage before'} changed")
    if then.get("handoff") != now["handoff"]:
        reasons.append(f"{pipeline.relative(stage.handoff_path)} is missing" if now["handoff"] == "missing"
                       else f"{pipeline.relative(stage.handoff_path)} was changed since {since}")
    return reasons


def _input_reasons(pipeline: Pipeline, stage: Stage, then: dict[str, str], now: dict[str, str]) -> list[str]:
    changed = sorted(name for name in set(then) & set(now) if then[name] != now[name])
    reasons = []
    if changed:
        shown = ", ".join(pipeline.relative(stage.dir / name) for name in changed[:3])
        reasons.append(f"{shown}{f' and {len(changed) - 3} more' if len(changed) > 3 else ''} changed")
    for files, verb in ((set(now) - set(then), "added"), (set(then) - set(now), "removed")):
        if files:
            reasons.append(f"{len(files)} input file{'s' if len(files) != 1 else ''} {verb}")
    return reasons


class StageState:
    """doit's uptodate callable of a stage task: its record in the state store; reasons kept on the stage."""

    def __init__(self, pipeline: Pipeline, stage_name: str):
        self.pipeline = pipeline
        self.stage_name = stage_name

    def __repr__(self) -> str:  # doit info prints it
        return f"StageState({self.stage_name})"

    def __call__(self, task, values):
        stage = self.pipeline.stage(self.stage_name)
        try:
            stage.stale_reasons = stale_reasons(self.pipeline, stage, getattr(task, "options", None))
        except PipelineError as exc:  # the state cannot be read: the stage's run says why, in one line
            stage.stale_reasons = [str(exc)]
        return not stage.stale_reasons


class RemoteState:
    """Asks the stage whether its remote product still exists; no opinion counts as up to date."""

    def __init__(self, pipeline: Pipeline, stage_name: str):
        self.pipeline = pipeline
        self.stage_name = stage_name

    def __repr__(self) -> str:
        return f"RemoteState({self.stage_name})"

    def __call__(self):
        stage = self.pipeline.stage(self.stage_name)
        try:
            ok, reason = stage.remote_check()
        except PipelineError as exc:
            ok, reason = False, f"cannot check: {exc}"
        stage.remote_ok, stage.remote_reason = ok, reason
        return ok


# ----------------------------------------------------------------------------- doit forget, on this machine


def forget_locally(cache_dir: Path, tasks: list[str]) -> None:
    """What `doit forget` means here: these stages run again on this machine, whatever the shared records say."""
    from proxpipe.base.fsutil import atomic_write

    marks = _read_marks(cache_dir)
    marks.update({task: time.time() for task in tasks})
    atomic_write(cache_dir / FORGOTTEN, json.dumps(marks), 0o600, durable=False)


def _unforget(pipeline: Pipeline, stage_name: str) -> None:
    marks = _read_marks(pipeline.state_dir)
    if marks.pop(stage_name, None) is not None:
        from proxpipe.base.fsutil import atomic_write

        atomic_write(pipeline.state_dir / FORGOTTEN, json.dumps(marks), 0o600, durable=False)


def _read_marks(cache_dir: Path) -> dict[str, float]:
    try:
        data = json.loads((Path(cache_dir) / FORGOTTEN).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
