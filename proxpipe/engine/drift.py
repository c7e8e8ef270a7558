"""Drift: what changed outside the pipeline since each stage ran, found without changing anything. Every stage is
asked (not only the stale ones), in order: its handoff against its record (the engine's part, for every kind) and
the kind's own drift verb (the template's config, a refresh-only Terraform plan, Ansible's check mode). A stage that
cannot tell is `unknown` with its reason; hosts an earlier stage found down are not waited for by a later one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from proxpipe.base.errors import PipelineError
from proxpipe.domain import drift

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def detect(pipeline: Pipeline) -> drift.DriftReport:
    """The drift of every stage of the environment; PipelineError in one line when the cluster does not answer."""
    run = pipeline.start_run("drift")
    if pipeline.env.proxmox is not None:
        try:
            pipeline.proxmox.version()
        except PipelineError as exc:
            raise PipelineError(f"drift: cannot tell, the Proxmox API does not answer: {exc}") from None
    down: list[str] = []
    stages = [_stage(pipeline, stage, down) for stage in pipeline.stages]
    return drift.DriftReport(pipeline.env.name, stages, time.strftime("%Y-%m-%dT%H:%M:%S%z"), run.id)


def _stage(pipeline: Pipeline, stage: Stage, down: list[str]) -> drift.StageDrift:
    from proxpipe.engine.execute import read_upstream, stage_job

    items = _handoff(pipeline, stage)
    if pipeline.store.stage_record(stage.name) is None and pipeline.handoffs.text(stage) is None:
        return drift.StageDrift(stage.name, stage.kind, (), f"it has not run yet (`doit {stage.name}`)")
    try:
        upstream, path = read_upstream(pipeline, stage, None) if stage.consumes else (None, None)
        job = stage_job(pipeline, stage, f"drift-{stage.name}", path, {"skip_hosts": list(down)})
        items += stage.drift(upstream, job)
    except PipelineError as exc:
        return drift.StageDrift(stage.name, stage.kind, tuple(items), str(exc))
    down += job.notes.get("down_hosts", [])
    return drift.StageDrift(stage.name, stage.kind, tuple(items))


def _handoff(pipeline: Pipeline, stage: Stage) -> list[drift.DriftItem]:
    """The stage's handoff as its last success wrote it: not damaged, not edited since."""
    name = pipeline.handoffs.path(stage).name
    damaged = pipeline.handoffs.damage(stage)
    if damaged is not None:
        return [drift.DriftItem(drift.FILE, name, f"damaged: {damaged.problem}")]
    record = pipeline.store.stage_record(stage.name) or {}
    digest = pipeline.handoffs.digest(stage)
    if record.get("handoff") and record["handoff"] != (digest or "missing"):
        return [drift.DriftItem(drift.FILE, name, "missing" if digest is None else "changed since the stage wrote it")]
    return []
