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


# Numbers are taken as text and converted here, so that a value that is not one is our one line, not doit's two.
_CONVERTED = (int, float)


def task(pipeline: Pipeline, command: Command) -> dict:
    params = [{"name": p.name, "long": p.long, "type": str if p.type in _CONVERTED else p.type,
               "default": str(p.default) if p.type in _CONVERTED and p.default is not None else p.default,
               "help": p.help,
               **({"env_var": p.env_var} if p.env_var else {}), **({"short": p.short} if p.short else {})}
              for p in command.params]
    return {"basename": command.name, "doc": command.doc, "actions": [(invoke, [pipeline, command])],
            "params": params, "uptodate": [False], "verbosity": 2}


def parsed(command: Command, given: dict) -> dict:
    """The command's options as run() takes them: every value from the command line checked where it is parsed,
    a problem one line naming the command, the option and the value (ConfigError: exit 3, nothing done)."""
    options = dict(given)
    for param in command.params:
        value = options.get(param.name)
        try:
            value = param.type(value) if param.type in _CONVERTED and value is not None else value
        except ValueError:
            wanted = "an integer" if param.type is int else "a number"
            raise ConfigError(f"{command.name} --{param.long} {value!r}: not {wanted}") from None
        problem = param.check(value) if param.check and value != param.default else None
        if problem:
            raise ConfigError(f"{command.name} --{param.long} {value!r}: {problem}")
        options[param.name] = value
    return options


def invoke(pipeline: Pipeline, command: Command, task) -> TaskFailed | None:
    """A command's action: its lock if it takes one, then run(pipeline, **options); an expected failure is one line
    (exit 1), a configuration error before anything changed ends like a bad pipeline.yaml (exit 3)."""
    RAN_HERE.add(command.name)
    if (task.options or {}).get("json"):  # plain `doit CMD --json`; the proxpipe command set it before doit started
        console.json_mode = True
    try:
        options = parsed(command, task.options or {})
        if command.lock:
            pipeline.lock(command.name)
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
