"""The doit up-to-date checks of a stage, besides its file_dep and target.

StageState: the stage's configuration and the upstream handoff it reads are what they were at its
last success (digests only are stored, so no secret lands in doit's database).
RemoteState: the stage's remote product still exists, e.g. the template on the Proxmox node.
Both keep their reasons on the stage, for the console and `doit status`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxpipe.base.errors import PipelineError
from proxpipe.base.fsutil import sha256_file

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


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
    if upstream is None:
        return ""
    path = upstream.handoff_path
    return sha256_file(path) if path.is_file() else "missing"


class StageState:
    """Up to date when configuration and upstream handoff digests equal those of the last success."""

    def __init__(self, pipeline: Pipeline, stage_name: str):
        self.pipeline = pipeline
        self.stage_name = stage_name

    def __repr__(self) -> str:  # doit info prints it
        return f"StageState({self.stage_name})"

    def current(self, options: dict[str, Any] | None) -> dict[str, str]:
        stage = self.pipeline.stage(self.stage_name)
        override = upstream_override(self.pipeline, stage, options)
        return {"config": stage.config_digest(),
                "upstream": upstream_digest(self.pipeline, stage, override)}

    def __call__(self, task, values):
        stage = self.pipeline.stage(self.stage_name)
        current = self.current(getattr(task, "options", None))
        task.value_savers.append(lambda: {"state": current})
        saved = values.get("state") or {}
        stage.stale_reasons = explain(saved, current, self.pipeline, stage)
        options = getattr(task, "options", None) or {}
        stage.stale_reasons += [f"--{p['long']} was given" for p in stage.PARAMS
                                if p.get("forces") and options.get(p["name"])]
        return not stage.stale_reasons


def explain(saved: dict, current: dict, pipeline: Pipeline, stage: Stage) -> list[str]:
    if not saved:
        return ["it has not run successfully yet"]
    reasons = []
    if saved.get("config") != current["config"]:
        reasons.append("its configuration in pipeline.yaml changed")
    if saved.get("upstream") != current["upstream"]:
        if current["upstream"].startswith("given:"):
            reasons.append("its upstream handoff was given by hand")
        else:
            upstream = pipeline.upstream(stage)
            reasons.append(f"the handoff of {upstream.name if upstream else 'the stage before'} changed")
    return reasons


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
