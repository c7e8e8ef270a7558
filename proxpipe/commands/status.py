"""`doit status`: per stage, up to date or stale and why, from the records in the state store. Runs no tool.
`--inputs STAGE` (or all) lists the stage's input files, and what under its directory was left out and why."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from proxpipe.api.command import JSON, Command, Param
from proxpipe.base.console import console, table
from proxpipe.base.errors import HandoffError
from proxpipe.domain import inputs as inputs_mod
from proxpipe.engine.uptodate import stale_reasons

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


def stage_states(pipeline: Pipeline) -> list[dict]:
    """[{stage, kind, needs, state, why, handoff}] in the order the stages run."""
    rows, stale = [], []
    for stage in pipeline.stages:
        why = stale_reasons(pipeline, stage)
        waiting = [name for name in stale if name in pipeline.graph.ancestors(stage.name)]
        if why:
            state = "stale"
            stale.append(stage.name)
        elif waiting:
            state, why = "up to date", [f"reruns if {' or '.join(waiting)} changes its handoff"]
        else:
            state, why = "up to date", [stage.remote_reason or "nothing it depends on changed"]
        rows.append({"stage": stage.name, "kind": stage.kind, "needs": list(pipeline.graph.needs[stage.name]),
                     "state": state, "why": "; ".join(why), "handoff": _handoff(pipeline, stage)})
    return rows


def _is_chain(pipeline: Pipeline) -> bool:
    """Each stage needs the one before it (today's three stages): no tree to draw."""
    names = [stage.name for stage in pipeline.stages]
    return all(list(pipeline.graph.needs[name]) == names[index - 1:index] for index, name in enumerate(names))


def _tree(pipeline: Pipeline, name: str) -> str:
    """The stage's name, indented by how deep in the graph it is: a tree in the terminal."""
    depth, todo = 0, [(name, 0)]
    while todo:
        current, level = todo.pop()
        depth = max(depth, level)
        todo += [(need, level + 1) for need in pipeline.graph.needs[current]]
    return ("  " * (depth - 1) + "└─ " if depth else "") + name


def _handoff(pipeline: Pipeline, stage) -> str:
    name = pipeline.handoffs.path(stage).name
    if pipeline.handoffs.text(stage) is None:
        return f"{name}: none"
    try:
        return f"{name}: {stage.produces.summary(pipeline.handoffs.read(stage))}"
    except HandoffError as exc:
        return f"{name}: INVALID ({str(exc).split(': ', 1)[-1]})"


def show(pipeline: Pipeline, inputs: str = "", json: bool = False) -> None:
    listed = pipeline.stages if inputs == "all" else [pipeline.stage(inputs)] if inputs else []
    env = pipeline.env
    if json:
        console.json({"format_version": 1, "environment": env.name, "state": pipeline.store.where,
                      "stages": [{**row, "inputs": [os.path.relpath(path, stage.dir) for path in stage.inputs()]}
                                 if stage in listed else row for row, stage in zip(stage_states(pipeline),
                                                                                  pipeline.stages, strict=True)]})
        return
    console.out(f"environment {env.name}" + (f" ({env.description})" if env.description else "")
                + f" · state in {pipeline.store.where}")
    rows = stage_states(pipeline)
    if _is_chain(pipeline):
        console.out(table([[r["stage"], r["kind"], r["state"], r["handoff"], r["why"]] for r in rows],
                          ["stage", "kind", "state", "handoff", "why"]))
    else:
        console.out(table([[_tree(pipeline, r["stage"]), r["kind"], ", ".join(r["needs"]) or "-", r["state"],
                            r["handoff"], r["why"]] for r in rows],
                          ["stage", "kind", "needs", "state", "handoff", "why"]))
    for line in _template_places(pipeline) + _on_revoked(pipeline):
        console.out(line)
    for stage in listed:
        console.out("\n" + "\n".join(input_report(pipeline, stage)))


def _on_revoked(pipeline: Pipeline) -> list[str]:
    """A line for each VM of the inventories that was cloned from a template the registry revoked."""
    from proxpipe.commands.templates import vms_by_template
    from proxpipe.domain import registry

    data = registry.load(pipeline.store)
    return [f"WARNING: {', '.join(hosts)} {'runs' if len(hosts) == 1 else 'run'} on {why}"
            for vmid, hosts in sorted(vms_by_template(pipeline).items()) if (why := registry.refusal(data, vmid))]


def _template_places(pipeline: Pipeline) -> list[str]:
    """Where each build stage's template is (its node and disks' storage) and its copies on other nodes, when the
    up-to-date checks asked the cluster anyway."""
    proxmox = pipeline.connected_proxmox
    lines = []
    for stage in pipeline.producers("template_id") if proxmox is not None else []:
        vmid = stage.handoff_value()
        place = proxmox.template_location(vmid) if vmid is not None else None
        if place is None:
            continue
        build = next((e for e in pipeline.history.builds(stage.name) if e["template_id"] == vmid), {})
        copies = "".join(f"; copy {copy} on {node}" for node, copy in (build.get("copies") or {}).items())
        lines.append(f"template of {stage.name}: {vmid} on {place.node} ({', '.join(place.storages) or 'no disks'})"
                     f"{copies}")
    return lines


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


COMMANDS = (
    Command("status", "each stage: up to date, or stale and why (runs no tool)", show,
            (Param("inputs", "inputs", str, "", "also list the input files of this stage ('all': of every stage), "
                                               "and what was left out and why"),
             JSON),
            group="look", description="Shows, per stage, whether a deploy would run it and why, and its handoff; a "
                                      "graph as a tree. Runs no tool and takes no lock.",
            example="doit status --inputs configure"),
)
