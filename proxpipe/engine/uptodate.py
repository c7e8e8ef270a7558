"""Whether a stage is up to date, decided from the environment's state store, so every checkout that shares the
store agrees (doit's own database is only a local cache).

A stage's record, saved when it succeeds, holds the digests of what it was made from: each input file, its
settings, the upstream handoff it read, and the handoff it wrote. The stage is up to date while all of them are
what they are now, it was not forgotten on this machine (`doit forget`), and its remote product still exists.
Only digests are stored, so no secret lands in a record.
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


def upstream_digest(pipeline: Pipeline, stage: Stage, given: str | None) -> str:
    """What the record keeps of the upstream handoff: its digest, or the value given by hand."""
    if given is not None:
        if stage.UPSTREAM_PARAM.get("is_path"):
            path = Path(given)
            return "given:" + (sha256_file(path) if path.is_file() else f"missing {given}")
        return "given:" + given.strip()
    sources = pipeline.sources(stage)
    if len(sources) == 1:
        return pipeline.handoffs.digest(sources[0]) or "missing"
    return ";".join(f"{source.name}={pipeline.handoffs.digest(source) or 'missing'}" for source in sources)


def current_record(pipeline: Pipeline, stage: Stage, given: str | None = None) -> dict[str, Any]:
    """What the stage's record would say if it succeeded now (its own handoff as it is in the store)."""
    return {"inputs": stage.input_digests(), "config": stage.config_digest(),
            "upstream": upstream_digest(pipeline, stage, given),
            "handoff": pipeline.handoffs.digest(stage) or "missing"}


def save(pipeline: Pipeline, stage: Stage, record: dict[str, Any]) -> None:
    """Record a success: this record, with the handoff as the stage has just written it."""
    pipeline.store.save_stage_record(stage.name, {**record, "handoff": pipeline.handoffs.digest(stage) or "missing",
                                                  "time": time.time()})
    _unforget(pipeline, stage.name)


def mark_up_to_date(pipeline: Pipeline, stage: Stage) -> None:
    """Record that `stage` just succeeded outside its own run (a rollback ran it or wrote its handoff)."""
    save(pipeline, stage, current_record(pipeline, stage))


def attempt(pipeline: Pipeline, stage: Stage, run_id: str) -> None:
    """The stage's tool is about to start: until it succeeds the stage is stale (a run killed or failed half-way
    may have changed what the tool manages). Its record otherwise stays: a run that fails earlier changes nothing."""
    record = pipeline.store.stage_record(stage.name) or {}
    pipeline.store.save_stage_record(stage.name, {**record, "attempt": {"run": run_id, "started": time.time()}})


def attempt_ended(pipeline: Pipeline, stage: Stage, outcome: str, message: str) -> None:
    """The attempt of this run failed or was interrupted: the record says so, for `doit status`."""
    record = pipeline.store.stage_record(stage.name)
    if record and record.get("attempt") and "outcome" not in record["attempt"]:
        record["attempt"].update(outcome=outcome, ended=time.time(), message=message[:300])
        pipeline.store.save_stage_record(stage.name, record)


def _attempt_reason(attempt: dict[str, Any]) -> str:
    when = time.strftime("%H:%M", time.localtime(attempt.get("ended") or attempt.get("started") or 0))
    if attempt.get("outcome") == "failed":
        return f"the last run failed at {when}: {attempt.get('message', '')}"
    if attempt.get("outcome") == "interrupted":
        return f"the last run was {attempt.get('message', 'interrupted')} at {when}"
    return f"the last run (started at {when}) did not finish"


def stale_reasons(pipeline: Pipeline, stage: Stage, given: str | None = None) -> list[str]:
    """Why the stage must run, from its record and its remote product; empty when it is up to date. given: its
    upstream handoff given by hand."""
    saved = pipeline.store.stage_record(stage.name)
    if saved is None:
        return [NEVER_RAN]
    marks = _read_marks(pipeline.state_dir)
    if max(marks.get(stage.name, 0), marks.get(ALL, 0)) > saved.get("time", 0):
        return ["it was forgotten on this machine (doit forget)"]
    attempt = saved.get("attempt")
    if attempt:
        return [_attempt_reason(attempt)]
    reasons = differences(pipeline, stage, saved, current_record(pipeline, stage, given), "the stage wrote it")
    if not reasons and remote_check(stage) is False:
        reasons = [stage.remote_reason]
    return reasons


def differences(pipeline: Pipeline, stage: Stage, then: dict[str, Any], now: dict[str, Any], since: str
                ) -> list[str]:
    """What differs between two records of a stage (what it was made from, what it would be made from now)."""
    reasons = _input_reasons(pipeline, stage, then.get("inputs") or {}, now["inputs"])
    if then.get("config") != now["config"]:
        reasons.append("its configuration in pipeline.yaml changed")
    if then.get("upstream") != now["upstream"]:
        reasons.append("its upstream handoff was given by hand" if now["upstream"].startswith("given:")
                       else f"the handoff of {_changed_sources(pipeline, stage, then.get('upstream') or '', now)} "
                            "changed")
    if then.get("handoff") != now["handoff"]:
        shown = pipeline.relative(pipeline.handoffs.path(stage))
        reasons.append(f"{shown} is missing" if now["handoff"] == "missing" else f"{shown} was changed since {since}")
    return reasons


def _changed_sources(pipeline: Pipeline, stage: Stage, then: str, now: dict[str, Any]) -> str:
    """Which of the stage's sources handed off something else (the upstream digests name them when there are
    several)."""
    before = dict(part.partition("=")[::2] for part in then.split(";")) if "=" in then else {}
    after = dict(part.partition("=")[::2] for part in now["upstream"].split(";")) if "=" in now["upstream"] else {}
    changed = [name for name in after if before.get(name) != after[name]]
    names = changed or [source.name for source in pipeline.sources(stage)] or ["the stage before"]
    return " and ".join(names)


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


def remote_check(stage: Stage) -> bool | None:
    """Whether the stage's remote product still exists (None: the kind has no opinion); the reason is kept on the
    stage for the console and `doit status`."""
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
