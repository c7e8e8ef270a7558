"""The doit tasks besides the stages: status, validate, rollback, destroy, history, report, docs,
state-push, state-pull, doctor and lab-stop. Each is a thin task dict around a function of its own module."""

from __future__ import annotations

import atexit
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from doit.exceptions import TaskFailed

from proxpipe.base.errors import PipelineError

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


class lazy:  # noqa: N801 - used like a function
    """A command's function, imported only when doit runs (or inspects) it: building the task graph, which every
    run does, no-op deploys included, never imports the commands."""

    def __init__(self, module: str, name: str):
        self.module, self.__name__, self.__doc__ = module, name, None

    @property
    def __wrapped__(self):
        return getattr(importlib.import_module(self.module), self.__name__)

    def __call__(self, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)


def guarded(fn):
    """Run fn; an expected failure becomes doit's TaskFailed (one line, exit 1), never a traceback."""
    def action(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
        except PipelineError as exc:
            return TaskFailed(str(exc))
        return result if result is None or isinstance(result, dict | TaskFailed) else None
    action.__name__ = fn.__name__
    action.__doc__ = fn.__doc__
    action.__wrapped__ = fn
    return action


@guarded
def lock(pipeline: Pipeline) -> None:
    """Take the environment's lock (waiting --wait-lock / PROXPIPE_WAIT_LOCK seconds) until the process ends."""
    pipeline.store.acquire(pipeline.command, wait=pipeline.wait_lock)
    atexit.register(pipeline.store.release)


def _param(name: str, long: str, kind, default, help_text: str) -> dict:
    return {"name": name, "long": long, "type": kind, "default": default, "help": help_text}


def command_tasks(pipeline: Pipeline) -> Iterator[dict]:
    status, validate, rollback, plan, docs, statecopy, doctor = (
        f"proxpipe.commands.{name}" for name in
        ("status", "validate", "rollback", "plan", "docs", "statecopy", "doctor"))
    always = {"uptodate": [False], "verbosity": 2}
    yield {"basename": "status", "doc": "each stage: up to date, or stale and why (runs no tool)",
           "actions": [(guarded(lazy(status, "show")), [pipeline])],
           "params": [_param("inputs", "inputs", str, "", "also list the input files of this stage ('all': of "
                                                          "every stage), and what was left out and why")], **always}
    yield {"basename": "validate", "doc": "run every check (template, lint, state, VMs, SSH, ping, drift); "
                                          "writes validate.json and validate.xml (JUnit)",
           "actions": [(guarded(lazy(validate, "validate")), [pipeline])],
           "params": [_param("check", "check", list, [], "run only this check (repeatable)"),
                      _param("list_checks", "list", bool, False, "list the checks and exit")], **always}
    yield {"basename": "rollback", "doc": "go back one stage: build (--to ID), provision (--mode destroy|replace), "
                                          "configure (--to GIT_REF); --mode restore: a damaged handoff's last "
                                          "valid value",
           "actions": [(guarded(lazy(rollback, "rollback")), [pipeline])], "task_dep": ["_lock"],
           "params": [_param("stage", "stage", str, "", "the stage to roll back"),
                      _param("to", "to", str, "", "build: template id; configure: git ref"),
                      _param("mode", "mode", str, "destroy", "provision: destroy or replace; "
                                                                   "provision, configure: restore")], **always}
    yield {"basename": "plan", "doc": "what a deploy would do, per stage, changing nothing: Packer (would it build), "
                                      "Terraform (a saved plan), Ansible (--check --diff); a record to approve",
           "actions": [(guarded(lazy(plan, "plan")), [pipeline])], "task_dep": ["_lock"],
           "params": [_param("refresh", "refresh", bool, False, "plan every stage, not only the stale ones "
                                                                 "(drift detection)"),
                      _param("output", "output", str, "", "also write plan.json and plan.md into this directory")],
           **always}
    yield {"basename": "approve", "doc": "record who approved a plan",
           "actions": [(guarded(lazy(plan, "approve")), [pipeline])],
           "params": [_param("plan_id", "plan", str, "", "the plan (default: the newest)"),
                      _param("by", "by", str, "", "who approves (default: the CI's user, else the local user)")],
           **always}
    yield {"basename": "apply", "doc": "run exactly the stages of a plan, if it still holds (and is approved where "
                                       "approval is required)",
           "actions": [(guarded(lazy(plan, "apply")), [pipeline])], "task_dep": ["_lock"],
           "params": [_param("plan_id", "plan", str, "", "the plan (default: the newest)")], **always}
    yield {"basename": "destroy", "doc": "tear down what provision made and remove the inventory handoff",
           "actions": [(guarded(_destroy), [pipeline])], "task_dep": ["_lock"], **always}
    yield {"basename": "history", "doc": "builds, deploys and rollbacks, newest first",
           "actions": [(guarded(_history), [pipeline])],
           "params": [_param("limit", "limit", int, 20, "how many entries")], **always}
    yield {"basename": "docs", "doc": "render templates/ into docs/deployment/ (handoffs, operation, rollback)",
           "actions": [(guarded(lazy(docs, "render")), [pipeline])], "uptodate": [DocsState(pipeline)],
           "params": [_param("no_history", "no-history", bool, False, "leave the history out (for committed docs)"),
                      _param("output", "output", str, "", "write into this directory instead")],
           "verbosity": 2}
    yield {"basename": "state-push", "doc": "copy the environment's local state into its database (state.url); "
                                            "refused when the database has state of it, unless --force",
           "actions": [(guarded(lazy(statecopy, "push")), [pipeline])], "task_dep": ["_lock"],
           "params": [_param("force", "force", bool, False, "replace the state the database holds"),
                      _param("source", "from", str, "", "copy this state directory [default: the environment's]")],
           **always}
    yield {"basename": "state-pull", "doc": "write the environment's state from its database out as local files "
                                            "(a backup, or the way back to local state)",
           "actions": [(guarded(lazy(statecopy, "pull")), [pipeline])], "task_dep": ["_lock"],
           "params": [_param("target", "to", str, "", "write into this directory [default: the environment's "
                                                        "state directory]")], **always}
    yield {"basename": "doctor", "doc": "the tools this environment needs: found, version, how to install",
           "actions": [(guarded(lazy(doctor, "check")), [pipeline])], **always}
    for command in pipeline.plugins.commands().values():
        yield {"basename": command.name, "doc": command.doc, "actions": [(guarded(_run_command), [pipeline, command])],
               "params": [param._asdict() for param in command.params], **always,
               **({"task_dep": ["_lock"]} if command.lock else {})}


def _run_command(pipeline: Pipeline, command, task) -> None:
    """A command a plugin contributed (register_commands), with its command-line options."""
    command.run(pipeline, **(task.options or {}))


def _destroy(pipeline: Pipeline):
    from proxpipe.commands import rollback

    stage = pipeline.last_producer("inventory")
    if stage is None:
        raise PipelineError("this pipeline has no provision stage to destroy")
    pipeline.start_run("destroy")
    return rollback.destroy(pipeline, stage)


def _history(pipeline: Pipeline, limit: int) -> None:
    from proxpipe.commands.history import show

    show(pipeline.history, limit)


class DocsState:
    """docs is up to date while its guides are there and what they were made from (templates, pipeline.yaml, the
    history unless left out, the environment) is unchanged. Worked out only when docs is asked for: a no-op deploy
    never reads the templates."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def __repr__(self) -> str:
        return "DocsState()"

    def __call__(self, task, values):
        from proxpipe.commands import docs

        options = task.options or {}
        made_from = docs.state(self.pipeline, options.get("no_history", False), options.get("output", ""))
        # saved after the render: what it was made of (worked out again only when a guide was missing)
        task.value_savers.append(lambda: {"docs": made_from or docs.state(
            self.pipeline, options.get("no_history", False), options.get("output", ""))})
        return made_from is not None and values.get("docs") == made_from
