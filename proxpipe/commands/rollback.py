"""`doit rollback` and `doit destroy`: going back, per stage, with clear refusals that change nothing.

What "back" means is the stage kind's (its ROLLBACK_MODES and its destroy, rollback and restore verbs): for the
built-in kinds, build points template_id.txt at an earlier template (--to ID), provision tears down (--mode
destroy) or re-creates its resources (--mode replace), configure runs the playbook as it was at a git ref (--to
REF). Every kind can write a damaged handoff's last valid value back (--mode restore). The engine writes the
handoffs and runs or forgets what depends on them (proxpipe.engine.verbs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.api.command import Command, Param
from proxpipe.base.errors import PipelineError

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline

RESTORE, DESTROY = "restore", "destroy"


def modes(stage: Stage) -> list[str]:
    """The modes of `rollback --stage NAME`, the default first."""
    found = list(stage.ROLLBACK_MODES)
    if stage.supports("destroy") and DESTROY not in found:
        found.append(DESTROY)
    return [*found, RESTORE]


def rollback(pipeline: Pipeline, stage: str = "", to: str = "", mode: str = "") -> None:
    """The action of `doit rollback --stage NAME [--to X] [--mode MODE]`."""
    from proxpipe.engine import verbs

    if not stage:
        names = ", ".join(s.name for s in pipeline.stages)
        raise PipelineError(f"rollback needs --stage (one of {names}); see docs/deployment/pipeline-rollback.md")
    if stage not in [s.name for s in pipeline.stages]:
        raise PipelineError(f"--stage {stage}: no such stage (stages: {', '.join(s.name for s in pipeline.stages)})")
    target = pipeline.stage(stage)
    known = modes(target)
    chosen = mode or known[0]
    if chosen not in known:
        raise PipelineError(f"--mode {mode}: stage {stage} ({target.kind}) rolls back with --mode "
                            f"{' or '.join(known)}")
    pipeline.start_run(f"rollback --stage {stage}")
    if chosen == RESTORE:
        verbs.restore(pipeline, target)
    elif chosen == DESTROY and target.supports("destroy"):
        later = [stage for stage in reversed(pipeline.downstream(target)) if stage.supports("destroy")]
        tear_down(pipeline, [*later, target])
    else:
        verbs.rollback(pipeline, target, chosen, to)


def destroy(pipeline: Pipeline) -> None:
    """The action of `doit destroy`: every stage that tears down what it made, the last one first."""
    stages = [stage for stage in reversed(pipeline.stages) if stage.supports("destroy")]
    if not stages:
        raise PipelineError("no stage of this pipeline tears down what it made (e.g. a terraform stage)")
    pipeline.start_run("destroy")
    tear_down(pipeline, stages)


def tear_down(pipeline: Pipeline, stages: list[Stage]) -> None:
    """Destroy these stages in this order (what depends on a stage first), saying which before it starts."""
    from proxpipe.base.console import console
    from proxpipe.engine import verbs

    if len(stages) > 1:
        console.info(f"destroy: {', then '.join(stage.name for stage in stages)} (what needs a stage goes first)")
    for stage in stages:
        verbs.destroy(pipeline, stage)


COMMANDS = (
    Command("rollback", "go back one stage: an earlier template, VMs re-created or destroyed, a git ref",
            rollback,
            (Param("stage", "stage", str, "", "the stage to roll back", metavar="STAGE"),
             Param("to", "to", str, "", "build: template id; configure: git ref", metavar="ID|GIT_REF"),
             Param("mode", "mode", str, "", "what to do; the stage kind's first mode by default (provision: destroy "
                                            "or replace; every stage: restore)", metavar="MODE")),
            lock=True, group="recover",
            description="Goes back one stage and runs again what depends on it. Each stage kind says what back "
                        "means: build --to ID points at an earlier template, provision --mode destroy|replace, "
                        "configure --to GIT_REF runs the playbook as of that commit; --mode restore writes a damaged "
                        "handoff's last valid value back (see docs/deployment/pipeline-rollback.md).",
            example="doit rollback --stage build --to 9101"),
    Command("destroy", "tear down what provision made and remove the inventory handoff", destroy, lock=True,
            group="run", description="Tears down what the stages made, the last stage first, and removes their "
                                     "handoffs; they are stale until the next deploy.",
            example="doit destroy env=lab"),
)
