"""`doit drift`: what changed outside the pipeline, for every stage, changing nothing: a summary line per stage,
then the detail (or --json), drift.json and drift.md with --output DIR, and an exit code a CI schedule acts on: 0 in
sync, 2 drifted, 1 when it could not tell (like `terraform plan -detailed-exitcode`). It takes no lock, so it runs
beside a deploy and where deploy needs an approved plan. --fix runs the drifted stages again (`deploy --force` of
them only), under the environment's approval rule. Each run and what it found is in the history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.api.command import JSON, Command, Param
from proxpipe.base.console import console
from proxpipe.base.events import StageOutcome

if TYPE_CHECKING:
    from proxpipe.domain.drift import DriftReport
    from proxpipe.engine.pipeline import Pipeline


def drift(pipeline: Pipeline, json: bool = False, output: str = "", fix: bool = False) -> None:
    from proxpipe.engine.drift import detect

    report = detect(pipeline)
    _record(pipeline, report)
    if json:
        console.json(report.to_json())
    else:
        console.out(report.text())
    if output:
        from proxpipe.base.fsutil import atomic_write

        atomic_write(Path(output) / "drift.json", report.to_json(), 0o600)
        atomic_write(Path(output) / "drift.md", report.to_markdown(), 0o600)
    if report.drifted():
        pipeline.plugins.drift_detected(pipeline.run, report)
        if fix:
            _fix(pipeline, report)
            return
    if report.exit_code:
        raise SystemExit(report.exit_code)  # 2 drifted, 1 could not tell: for a CI schedule to act on


def _record(pipeline: Pipeline, report: DriftReport) -> None:
    """A history line and a run-log outcome per stage: what the drift run found."""
    for found in report.stages:
        stage = pipeline.stage(found.name)
        pipeline.record(stage, "drift", outcome=found.status, message=found.summary())
        pipeline.outcomes.append(StageOutcome(found.name, found.kind, found.status, message=found.summary()))


def _fix(pipeline: Pipeline, report: DriftReport) -> None:
    """The drifted stages run again, forced (a build builds anew), and what depends on them; refused where the
    environment needs an approved plan."""
    from proxpipe.commands.plan import refuse_unreviewed
    from proxpipe.engine.run import run_stages

    refuse_unreviewed(pipeline)
    pipeline.lock("drift --fix")
    drifted = [pipeline.stage(found.name) for found in report.drifted()]
    stages = [s for s in pipeline.stages if s in drifted or any(s in pipeline.downstream(d) for d in drifted)]
    console.info(f"drift --fix: running {', '.join(s.name for s in drifted)} again (and what depends on them)")
    run_stages(pipeline, "drift --fix", stages, forced={s.name for s in drifted},
               options={s.name: {p["name"]: True for p in s.PARAMS if p.get("forces")} for s in drifted})


COMMANDS = (
    Command("drift", "what changed outside the pipeline, every stage, changing nothing; exit 0 in sync, 2 drifted, 1 "
                     "could not tell", drift,
            (JSON,
             Param("output", "output", str, "", "also write drift.json and drift.md into this directory",
                   metavar="DIR"),
             Param("fix", "fix", bool, False, "run the drifted stages again (deploy --force of them), where no "
                                              "approval is required")),
            group="look", description="Asks every stage, not only the stale ones: the template still there and as "
                                      "built, a refresh-only Terraform plan, Ansible's check mode with diff, and the "
                                      "handoffs against what made them. Takes no lock.",
            example="doit drift --output drift/"),
)
