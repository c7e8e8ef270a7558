"""`doit status`: per stage, up to date or stale and why, from doit's own up-to-date logic. Runs no tool.
`--inputs STAGE` (or all) lists the stage's input files, and what under its directory was left out and why."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from doit.dependency import Dependency

from proxpipe.base.console import console, table
from proxpipe.base.errors import HandoffError
from proxpipe.domain import handoff
from proxpipe.domain import inputs as inputs_mod
from proxpipe.engine.doitdb import AtomicJsonDB

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


def stage_states(pipeline: Pipeline) -> list[dict]:
    """[{stage, kind, state, why, handoff}] in stage order."""
    from proxpipe.wiring.tasks import doit_config, doit_task

    deps = Dependency(AtomicJsonDB, doit_config(pipeline)["dep_file"])
    tasks = {stage.name: doit_task(pipeline, stage) for stage in pipeline.stages}
    rows, upstream_stale = [], None
    for stage in pipeline.stages:
        result = deps.get_status(tasks[stage.name], tasks, get_log=True)
        why = _reasons(result, stage, pipeline)
        if result.status == "up-to-date" and upstream_stale:
            state, why = "up to date", [f"reruns if {upstream_stale} changes its handoff"]
        elif result.status == "up-to-date":
            state, why = "up to date", [stage.remote_reason or "nothing it depends on changed"]
        else:
            state = "stale"
            upstream_stale = upstream_stale or stage.name
        rows.append({"stage": stage.name, "kind": stage.kind, "state": state, "why": "; ".join(why),
                     "handoff": _handoff(stage)})
    return rows


def _reasons(result, stage, pipeline) -> list[str]:
    reasons = result.reasons
    why: list[str] = []
    if reasons.get("uptodate_false"):
        why += list(stage.stale_reasons)
        if stage.remote_ok is False:
            why.append(stage.remote_reason)
    for target in reasons.get("missing_target", []):
        why.append(f"{pipeline.relative(target)} is missing")
    changed = reasons.get("changed_file_dep", [])
    if changed:
        shown = ", ".join(pipeline.relative(p) for p in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        why.append(f"{shown}{more} changed")
    for key, verb in (("added_file_dep", "added"), ("removed_file_dep", "removed"), ("missing_file_dep", "missing")):
        files = reasons.get(key) or []
        if files:
            why.append(f"{len(files)} input file{'s' if len(files) != 1 else ''} {verb}")
    why = list(dict.fromkeys(why)) or ["it has not run successfully yet"]
    if "it has not run successfully yet" in why:
        return ["it has not run successfully yet"]  # every input counts as changed then; say it once
    return why


def _handoff(stage) -> str:
    path = stage.handoff_path
    if not path.exists():
        return f"{path.name}: none"
    try:
        return f"{path.name}: {stage.produces.summary(handoff.read(stage.produces, path))}"
    except HandoffError as exc:
        return f"{path.name}: INVALID ({str(exc).split(': ', 1)[-1]})"


def show(pipeline: Pipeline, inputs: str = "") -> None:
    listed = pipeline.stages if inputs == "all" else [pipeline.stage(inputs)] if inputs else []
    env = pipeline.env
    console.out(f"environment {env.name}" + (f" ({env.description})" if env.description else "")
                + f" · state in {pipeline.relative(pipeline.state_dir)}")
    rows = stage_states(pipeline)
    console.out(table([[r["stage"], r["kind"], r["state"], r["handoff"], r["why"]] for r in rows],
                      ["stage", "kind", "state", "handoff", "why"]))
    for stage in listed:
        console.out("\n" + "\n".join(input_report(pipeline, stage)))


def input_report(pipeline: Pipeline, stage) -> list[str]:
    """The inputs of a stage, one a line, then what was left out under its directory and why."""
    scan = stage.input_scan()
    lines = [f"inputs of {stage.name} ({len(scan.files)} under {pipeline.relative(stage.dir)}):"]
    lines += [f"  {os.path.relpath(path, stage.dir)}" for path in scan.files]
    ignored = [path for path, why in scan.excluded if why == inputs_mod.GIT_IGNORES]
    rules = inputs_mod.explain_ignored(stage.dir, ignored)
    rows = [[path, f"{why} ({rules[path]})" if path in rules else why] for path, why in scan.excluded]
    if rows:
        lines += ["", *table(rows, ["left out", "why"]).splitlines()]
    problem = inputs_mod.git_problem(stage.dir)
    if problem:
        lines.append(f"(what git ignores is not known: {problem})")
    return lines
