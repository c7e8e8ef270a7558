"""`doit plan`, `doit approve`, `doit apply`: what a deploy will do, shown before it does it, across the three tools.

plan decides per stage what a deploy would do and changes nothing: a stale stage previews its tool (Terraform's
saved `plan -out`, Ansible's `--check --diff`, whether Packer would build); a stage whose upstream would change
first is left for the next plan, never planned against a placeholder. The plan is a record in the state store
(domain/plan.py). approve records who approved it; apply refuses a plan that is stale or not approved where
approval is required, then runs exactly its stages, applying the saved Terraform plan itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.api.command import JSON, Command, Param
from proxpipe.base import interrupts, lazy
from proxpipe.base.console import console, table
from proxpipe.base.errors import PipelineError
from proxpipe.base.fsutil import atomic_write, display
from proxpipe.base.ids import new_id, who
from proxpipe.engine import uptodate

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.domain.plan import Plan, StagePlan
    from proxpipe.engine.pipeline import Pipeline

model = lazy.module("proxpipe.domain.plan")  # the plan records: plan, approve and apply's, not deploy's

# ----------------------------------------------------------------------------- plan


def plan(pipeline: Pipeline, refresh: bool = False, output: str = "", json: bool = False) -> None:
    """The doit action of `doit plan [--refresh] [--output DIR] [--json]`."""
    pipeline.start_run("plan")
    made = model.Plan(new_id(), pipeline.env.name, who(), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      pipeline.git_commit(), refresh, [])
    changing: list[str] = []  # stages whose handoff would change: what needs them is planned later
    for stage in pipeline.stages:
        state = uptodate.current_record(pipeline, stage)
        first = next((name for name in changing if name in pipeline.graph.ancestors(stage.name)), None)
        if first is not None:
            made.stages.append(model.StagePlan(stage.name, stage.kind, model.LATER,
                                               [f"{first} would change its handoff first"],
                                               f"planned after {first} is applied", state=state))
            continue
        entry, changes_handoff = _plan_stage(pipeline, stage, made.id, refresh, state)
        made.stages.append(entry)
        if entry.action == model.RUN and changes_handoff:
            changing.append(stage.name)
    _discard_older(pipeline, made.id)
    save(pipeline, made)
    show(pipeline, made, output)  # on stderr with --json
    if json:  # the record as plan.json holds it (schemas/plan.schema.json)
        import json as json_module

        console.json({"format_version": 1, **json_module.loads(made.dump())})


def _plan_stage(pipeline: Pipeline, stage: Stage, plan_id: str, refresh: bool, state: dict
                ) -> tuple[StagePlan, bool]:
    """The stage's entry in the plan, and whether its handoff may change when it runs."""
    from proxpipe.engine.execute import read_upstream, stage_job

    reasons = uptodate.stale_reasons(pipeline, stage)
    remote = {"remote": stage.remote_reason} if stage.remote_ok else {}
    if not reasons and not refresh:  # an up-to-date stage: no tool starts
        why = [stage.remote_reason or "nothing it depends on changed"]
        return model.StagePlan(stage.name, stage.kind, model.KEEP, why, _handoff_summary(stage), state=state,
                               facts=remote), False
    upstream, upstream_path = read_upstream(pipeline, stage, None)
    console.info(console.paint(f"▶ {stage.name}", "bold") + console.paint(f"  previewing ({stage.kind})", "dim"))
    job = stage_job(pipeline, stage, f"plan-{stage.name}", upstream_path)
    stage.preflight(upstream, job)
    preview = stage.preview(upstream, job, reasons)
    action = model.RUN if reasons or preview.would_run else model.KEEP
    why = reasons or ([f"drift: {preview.summary}"] if preview.would_run else ["no drift"])
    # What the plan depends on is taken after the preview: a tool may write an input of its own (terraform init,
    # the lock file), and that must not make the plan stale.
    state = uptodate.current_record(pipeline, stage)
    entry = model.StagePlan(stage.name, stage.kind, action, why, preview.summary, list(preview.changes),
                            state=state, facts={**remote, **preview.facts})
    if preview.plan_file is not None:
        if action == model.RUN:
            entry.plan_file = f"{plan_id}.{stage.name}"
            pipeline.store.put_document(model.PLAN_FILES, entry.plan_file, Path(preview.plan_file).read_bytes())
        Path(preview.plan_file).unlink(missing_ok=True)  # it holds variable values: never left lying around
    return entry, preview.changes_handoff


def _handoff_summary(stage: Stage) -> str:
    value = stage.handoff_value()
    return f"keeps {stage.produces.summary(value)}" if value is not None else "nothing to do"


def _discard_older(pipeline: Pipeline, keep: str) -> None:
    """A new plan replaces the ones not applied yet: they are discarded, with their saved Terraform plans."""
    for old in plans(pipeline):
        if old.status == model.PLANNED and old.id != keep:
            old.status = model.DISCARDED
            _drop_plan_files(pipeline, old)
            save(pipeline, old)


def _drop_plan_files(pipeline: Pipeline, record: Plan) -> None:
    for entry in record.stages:
        if entry.plan_file:
            pipeline.store.delete_document(model.PLAN_FILES, entry.plan_file)


def save(pipeline: Pipeline, record: Plan) -> None:
    pipeline.store.put_document(model.PLANS, f"{record.id}.json", record.dump())
    pipeline.store.put_document(model.PLANS, f"{record.id}.md", record.markdown().encode())


def plans(pipeline: Pipeline) -> list[Plan]:
    """Every plan of the environment, oldest first."""
    found = []
    for name in pipeline.store.document_names(model.PLANS):
        if name.endswith(".json"):
            data = pipeline.store.get_document(model.PLANS, name)
            if data is not None:
                found.append(model.Plan.load(data))
    return sorted(found, key=lambda p: p.id)


def find(pipeline: Pipeline, plan_id: str) -> Plan:
    """The plan named, or the newest one."""
    found = plans(pipeline)
    if not found:
        raise PipelineError(f"environment {pipeline.env.name} has no plan yet; make one with `doit plan`")
    if not plan_id:
        return found[-1]
    chosen = next((p for p in found if p.id == plan_id), None)
    if chosen is None:
        raise PipelineError(f"--plan {plan_id}: no such plan in environment {pipeline.env.name} (newest: "
                            f"{found[-1].id})")
    return chosen


def show(pipeline: Pipeline, record: Plan, output: str = "") -> None:
    console.out(table(record.rows(), ["stage", "kind", "action", "summary", "why"]))
    for entry in record.planned():
        for change in entry.changes[:20]:
            console.out(f"    {entry.name}: {change}")
    if output:
        folder = Path(output)
        atomic_write(folder / "plan.json", record.dump(), 0o600)
        atomic_write(folder / "plan.md", record.markdown(), 0o600)
    where = display(Path(output)) if output else pipeline.store.where
    console.out(f"{record.headline()}; digest {record.digest[:12]}; JSON and Markdown in {where}")
    if record.planned():
        console.out(f"next: doit approve --plan {record.id}, then doit apply --plan {record.id}")


# ----------------------------------------------------------------------------- approve


def approve(pipeline: Pipeline, plan_id: str = "", by: str = "") -> None:
    """The doit action of `doit approve --plan ID [--by NAME]`."""
    if not plan_id:  # never the newest one unasked: it may be stale, or another one than the reviewed
        raise PipelineError(f"approve needs --plan ID: the newest plan is {_newest(pipeline)}; "
                            "`doit approve --plan ID` once you reviewed it (`doit plan` makes a new one)")
    record = find(pipeline, plan_id)
    approver = who(by)
    if record.status != model.PLANNED:
        raise PipelineError(f"plan {record.id} is {record.status}; make a new one with `doit plan`")
    if pipeline.env.approval == "second-person" and approver == record.author:
        raise PipelineError(f"plan {record.id} was made by {record.author}; environment {pipeline.env.name} "
                            "needs another person's approval (approval: second-person)")
    record.approvals.append({"by": approver, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    save(pipeline, record)
    console.out(f"plan {record.id} approved by {approver}; apply it with `doit apply --plan {record.id}`")


def _newest(pipeline: Pipeline) -> str:
    """The newest plan's id and whether it still holds, judged from the files and settings (no tool, no API)."""
    record = find(pipeline, "")
    if record.status != model.PLANNED:
        return f"{record.id} ({record.status})"
    cause = stale_cause(pipeline, record, offline=True)
    return f"{record.id} ({f'stale: {cause}' if cause else 'not stale: its files and settings are as they were'})"


# ----------------------------------------------------------------------------- apply


def refuse_unreviewed(pipeline: Pipeline) -> None:
    """deploy and the stage commands in an environment that requires approval: refused before anything runs."""
    if pipeline.env.approval != "none":
        raise PipelineError(f"environment {pipeline.env.name} requires an approved plan (approval: "
                            f"{pipeline.env.approval} in {pipeline.env.file}): run `doit plan`, then `doit approve "
                            "--plan ID` and `doit apply --plan ID`")


def apply(pipeline: Pipeline, plan_id: str = "") -> None:
    """The doit action of `doit apply [--plan ID]`: exactly the planned stages, if the plan still holds."""
    record = find(pipeline, plan_id)
    if record.status != model.PLANNED:
        raise PipelineError(f"plan {record.id} is {record.status}; make a new one with `doit plan`")
    if pipeline.env.approval != "none" and not record.approvals:
        raise PipelineError(f"plan {record.id} is not approved, and environment {pipeline.env.name} requires "
                            f"approval; `doit approve --plan {record.id}` first")
    pipeline.start_run(f"apply --plan {record.id}")
    cause = stale_cause(pipeline, record)
    if cause:
        raise PipelineError(f"plan {record.id} is stale: {cause}; make a new one with `doit plan`")
    for entry in record.planned():
        if not _apply_stage(pipeline, record, entry):
            raise PipelineError(f"plan {record.id}: {entry.name} failed; nothing after it was applied")
    record.status, record.applied = model.APPLIED, {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                   "run": pipeline.run.id}
    save(pipeline, record)
    later = record.later()
    console.out(f"plan {record.id} applied" + (f"; {', '.join(s.name for s in later)} will be planned by the next "
                                                "`doit plan`" if later else ""))


def _apply_stage(pipeline: Pipeline, record: Plan, entry: StagePlan) -> bool:
    from proxpipe.engine.execute import execute

    stage = pipeline.stage(entry.name)
    options = {"plan_id": record.id, "approved_by": ", ".join(a["by"] for a in record.approvals)}
    saved = None
    if entry.plan_file:
        data = pipeline.store.get_document(model.PLAN_FILES, entry.plan_file)
        saved = pipeline.state_dir / stage.name / f"{entry.plan_file}.tfplan"
        atomic_write(saved, data or b"", 0o600)
        options["plan_file"] = str(saved)
    try:
        return execute(pipeline, stage, options)
    finally:
        with interrupts.deferred():
            if saved is not None:
                saved.unlink(missing_ok=True)
                pipeline.store.delete_document(model.PLAN_FILES, entry.plan_file)


def stale_cause(pipeline: Pipeline, record: Plan, offline: bool = False) -> str | None:
    """What changed since the plan was made, in a few words; None when nothing did. offline: only what the files
    and settings say, without the tools' own state or the cluster."""
    from proxpipe.engine.execute import stage_job

    for entry in record.stages:
        stage = pipeline.stage(entry.name)
        facts = {k: v for k, v in entry.facts.items() if k != "remote" and not offline}
        if facts:
            now = stage.plan_facts(stage_job(pipeline, stage, f"apply-check-{stage.name}"))
            if now != facts:
                return stage.describe_facts(facts, now)
        if "remote" in entry.facts and not offline and uptodate.remote_check(stage) is False:
            return stage.remote_reason
        changed = uptodate.differences(pipeline, stage, entry.state, uptodate.current_record(pipeline, stage),
                                       "the plan")
        if changed:
            return changed[0]
    return None


COMMANDS = (
    Command("plan", "what a deploy would do, per stage, changing nothing: a record to approve and apply", plan,
            (Param("refresh", "refresh", bool, False, "plan every stage, not only the stale ones (drift detection)"),
             Param("output", "output", str, "", "also write plan.json and plan.md into this directory",
                   metavar="DIR"), JSON),
            lock=True, group="run",
            description="Previews every stale stage with its tool's own dry run (Packer: would it build; Terraform: "
                        "a saved plan; Ansible: --check --diff) and saves the result as a plan record, with a digest "
                        "of everything it depends on, to approve and apply.",
            example="doit plan --output plan/"),
    Command("approve", "record who approved a plan", approve,
            (Param("plan_id", "plan", str, "", "the plan to approve", metavar="ID"),
             Param("by", "by", str, "", "who approves (default: the CI's user, else the local user)", metavar="NAME")),
            group="run", description="Records an approval of a plan; `approval: second-person` refuses its author's.",
            example="doit approve --plan 20260101-120000-abcd"),
    Command("apply", "run exactly the stages of a plan, if it still holds and is approved", apply,
            (Param("plan_id", "plan", str, "", "the plan to apply", metavar="ID"),), lock=True,
            group="run", description="Runs the stages a plan would run, Terraform applying its saved plan, or "
                                     "refuses in one line when the plan is stale or not approved.",
            example="doit apply --plan 20260101-120000-abcd"),
)
