"""Running stages for a command (deploy, one stage's own command, apply, a rollback's downstream): every handoff the
run will use is checked first, then each stage in order runs when it is stale (or forced) and is skipped, with
its reason, when it is up to date. What the command was asked (forced stages, handoffs given by hand, the plan
being applied) arrives here as arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError
from proxpipe.base.events import StageOutcome
from proxpipe.engine import damage, uptodate

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


class StageFailed(PipelineError):
    """A stage failed; its own lines said why. The command ends with exit 1 and no further line."""


def run_stages(pipeline: Pipeline, command: str, stages: list[Stage], forced: set[str] | None = None,
               given: dict[str, str] | None = None, options: dict[str, dict[str, Any]] | None = None) -> None:
    """Run the stale ones among `stages` (in pipeline order); StageFailed when one fails (nothing after it runs).

    forced: stages that run whatever their state; given: stage -> its upstream handoff given by hand;
    options: stage -> the options its verb sees (job.options)."""
    forced, given, options = forced or set(), given or {}, options or {}
    for stage in stages:
        stage.require_values()  # a secret the run needs that is not set: one line before anything runs
    damage.refuse(pipeline, stages, forced, given)
    pipeline.start_run(command)
    for stage in stages:
        reasons = [] if stage.name in forced else uptodate.stale_reasons(pipeline, stage, given.get(stage.name))
        if stage.name not in forced and not reasons:
            skipped(pipeline, stage)
            continue
        from proxpipe.engine.execute import execute  # tool runners and threads: only when a stage runs

        if not execute(pipeline, stage, options.get(stage.name, {}), given.get(stage.name)):
            raise StageFailed(f"{stage.name} failed")


def skipped(pipeline: Pipeline, stage: Stage) -> None:
    reason = stage.remote_reason or "nothing it depends on changed"
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "skipped", message=reason))
    pipeline.plugins.stage_skipped(pipeline.run, pipeline.info(stage), reason)
    console.info(console.paint(f"· {stage.name}", "dim") + console.paint(f"  up to date ({reason})", "dim"))
