"""The doit tasks of the chosen environment: one per command (deploy, status, rollback, the plugins' ...) and one per
stage, each made from a Command declaration (proxpipe.api.command) the same way.

doit parses each task's options and hands them to its action, which runs the command with them: the command line
reaches the code that needs it as arguments. Whether a stage runs is decided by the engine (its record in the
state store and its remote product), not by doit's own up-to-date checks: every task runs when asked.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from doit.exceptions import TaskFailed

from proxpipe.api.command import Command
from proxpipe.base.console import console
from proxpipe.base.errors import ConfigError, PipelineError
from proxpipe.commands.deploy import stage_commands
from proxpipe.engine.doitdb import RAN_HERE
from proxpipe.engine.pipeline import Pipeline
from proxpipe.engine.run import StageFailed
from proxpipe.wiring.reporter import PipelineReporter


def doit_config(pipeline: Pipeline) -> dict:
    return {
        "default_tasks": ["default"],  # plain `doit`: deploys a lab environment only (proxpipe.commands.deploy)
        "backend": "pipeline-json",
        "dep_file": os.path.relpath(pipeline.state_dir / "doit.json"),  # a local cache only: see engine.uptodate
        "reporter": PipelineReporter.bound_to(pipeline),
        "verbosity": 2,
        "minversion": "0.36.0",
    }


def commands(pipeline: Pipeline) -> list[Command]:
    """Every doit task's command: the registered ones (built-in and plugins'), then the stages'. Standalone ones
    (`proxpipe init`) run outside doit."""
    return [*(c for c in pipeline.plugins.commands().values() if not c.standalone), *stage_commands(pipeline)]


def all_tasks(pipeline: Pipeline) -> Iterator[dict]:
    for command in commands(pipeline):
        yield task(pipeline, command)


def task(pipeline: Pipeline, command: Command) -> dict:
    params = [{"name": p.name, "long": p.long, "type": p.type, "default": p.default, "help": p.help,
               **({"env_var": p.env_var} if p.env_var else {}), **({"short": p.short} if p.short else {})}
              for p in command.params]
    return {"basename": command.name, "doc": command.doc, "actions": [(invoke, [pipeline, command])],
            "params": params, "uptodate": [False], "verbosity": 2}


def invoke(pipeline: Pipeline, command: Command, task) -> TaskFailed | None:
    """A command's action: its lock if it takes one, then run(pipeline, **options); an expected failure is one line
    (exit 1), a configuration error before anything changed ends like a bad pipeline.yaml (exit 3)."""
    RAN_HERE.add(command.name)
    options = task.options or {}
    if options.get("json"):  # plain `doit CMD --json`; the proxpipe command set it before doit started
        console.json_mode = True
    try:
        if command.lock:
            pipeline.take_lock(command.name)
        command.run(pipeline, **options)
    except ConfigError as exc:
        if pipeline.run is not None:
            return TaskFailed(str(exc))
        console.out(f"ERROR: {exc}", sys.stderr)
        raise SystemExit(3) from None
    except StageFailed:
        return TaskFailed("")  # the stage's own lines said why
    except PipelineError as exc:
        return TaskFailed(str(exc))
    return None
