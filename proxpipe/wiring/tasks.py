"""The doit task graph of the chosen environment.

One task per stage, named like the stage. Whether it runs is decided by its up-to-date checks alone (its record
in the state store, shared by every checkout, and its remote product): it declares no file_dep or target, which
also keeps `doit provision` a single stage (doit would otherwise run the upstream task first). Staleness still
flows down, through the upstream handoff's digest in the record.

doit does not run a task's task_dep in list order when they share a dependency, so the stages
asked for together (all of them for `deploy`) are chained: each depends on the one before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from proxpipe.engine import damage
from proxpipe.engine.pipeline import Pipeline
from proxpipe.engine.uptodate import RemoteState, StageState
from proxpipe.wiring import command_tasks as commands
from proxpipe.wiring.reporter import PipelineReporter


def doit_config(pipeline: Pipeline) -> dict:
    return {
        "default_tasks": ["deploy"],
        "backend": "pipeline-json",
        "dep_file": os.path.relpath(pipeline.state_dir / "doit.json"),  # a local cache only: see engine.uptodate
        "reporter": PipelineReporter.bound_to(pipeline),
        "verbosity": 2,
        "minversion": "0.36.0",
    }


def requested_stages(pipeline: Pipeline, argv: list[str]) -> list[str]:
    """The stages a doit command line asks for, in pipeline order: all of them for deploy (the default)."""
    names = [a for a in argv if not a.startswith("-") and "=" not in a]
    if names and names[0] == "run":
        names = names[1:]
    stages = [s.name for s in pipeline.stages]
    if not names or "deploy" in names:
        return stages
    return [name for name in stages if name in names]


def all_tasks(pipeline: Pipeline, argv: list[str]) -> Iterator[dict]:
    yield {"basename": "_lock", "doc": "take the environment's lock", "actions": [(commands.lock, [pipeline])],
           "verbosity": 2}
    chain = requested_stages(pipeline, argv)
    for name in chain:  # the stages asked for need their values now; other commands never do
        pipeline.stage(name).require_values()
    checks = [(commands.guarded(damage.refuse), [pipeline, chain])]
    if pipeline.env.approval != "none":
        checks.insert(0, (commands.guarded(commands.lazy("proxpipe.commands.plan", "refuse_unreviewed")), [pipeline]))
    yield {"basename": "_handoffs", "doc": "refuse to run unreviewed, or on a damaged handoff", "task_dep": ["_lock"],
           "actions": checks, "verbosity": 2}
    for stage in pipeline.stages:
        task = stage_task(pipeline, stage)
        if stage.name in chain[1:]:
            task["task_dep"] = [chain[chain.index(stage.name) - 1]]
        yield task
    yield {"basename": "deploy", "doc": "run every stale stage in order: "
                                        + " -> ".join(s.name for s in pipeline.stages),
           "actions": None, "task_dep": [pipeline.stages[-1].name]}
    yield from commands.command_tasks(pipeline)


def stage_task(pipeline: Pipeline, stage) -> dict:
    task = {
        "basename": stage.name,
        "doc": f"{stage.kind}: {stage.config.description or stage.description}".rstrip(": "),
        "actions": [(commands.lazy("proxpipe.engine.execute", "run_stage"), [pipeline, stage.name])],
        "uptodate": [StageState(pipeline, stage.name), RemoteState(pipeline, stage.name)],
        "task_dep": ["_handoffs"],
        "verbosity": 2,
    }
    params = [{k: v for k, v in p.items() if k != "forces"} for p in stage.PARAMS]
    if stage.UPSTREAM_PARAM:
        param = stage.UPSTREAM_PARAM
        option = {"name": param["name"], "long": param["long"], "type": str, "default": "", "help": param["help"]}
        if param.get("env_var"):
            option["env_var"] = param["env_var"]
        params.append(option)
    if params:
        task["params"] = params
    return task
