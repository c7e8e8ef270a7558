"""The doit tasks besides the stages: status, validate, rollback, destroy, history, report, docs,
doctor and lab-stop. Each is a thin task dict around a function of its own module."""

from __future__ import annotations

import atexit
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from doit.exceptions import TaskFailed

from proxpipe.base.errors import PipelineError
from proxpipe.domain import lock as lock_mod

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


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
    lock_mod.acquire(pipeline.state_dir, pipeline.env.name, pipeline.command)
    atexit.register(lock_mod.release, pipeline.state_dir)


def _param(name: str, long: str, kind, default, help_text: str) -> dict:
    return {"name": name, "long": long, "type": kind, "default": default, "help": help_text}


def command_tasks(pipeline: Pipeline) -> Iterator[dict]:
    from proxpipe.api import checks
    from proxpipe.commands import docs, doctor, rollback, status

    always = {"uptodate": [False], "verbosity": 2}
    yield {"basename": "status", "doc": "each stage: up to date, or stale and why (runs no tool)",
           "actions": [(guarded(status.show), [pipeline])],
           "params": [_param("inputs", "inputs", str, "", "also list the input files of this stage ('all': of "
                                                          "every stage), and what was left out and why")], **always}
    yield {"basename": "validate", "doc": "run every check (template, lint, state, VMs, SSH, ping, drift); "
                                          "writes validate.json and validate.xml (JUnit)",
           "actions": [(guarded(checks.validate), [pipeline])],
           "params": [_param("check", "check", list, [], "run only this check (repeatable)"),
                      _param("list_checks", "list", bool, False, "list the checks and exit")], **always}
    yield {"basename": "rollback", "doc": "go back one stage: build (--to ID), provision (--mode destroy|replace), "
                                          "configure (--to GIT_REF)",
           "actions": [(guarded(rollback.rollback), [pipeline])], "task_dep": ["_lock"],
           "params": [_param("stage", "stage", str, "", "the stage to roll back"),
                      _param("to", "to", str, "", "build: template id; configure: git ref"),
                      _param("mode", "mode", str, "destroy", "provision: destroy or replace")], **always}
    yield {"basename": "destroy", "doc": "tear down what provision made and remove the inventory handoff",
           "actions": [(guarded(_destroy), [pipeline])], "task_dep": ["_lock"], **always}
    yield {"basename": "history", "doc": "builds, deploys and rollbacks, newest first",
           "actions": [(guarded(_history), [pipeline])],
           "params": [_param("limit", "limit", int, 20, "how many entries")], **always}
    yield {"basename": "report", "doc": "the recent runs with per-stage timings (from runs.jsonl)",
           "actions": [(guarded(_report), [pipeline])],
           "params": [_param("limit", "limit", int, 10, "how many runs")], **always}
    yield {"basename": "docs", "doc": "render templates/ into docs/deployment/ (handoffs, operation, rollback)",
           "actions": [(guarded(docs.render), [pipeline])],
           "file_dep": [str(p) for p in docs.inputs(pipeline)],
           "uptodate": [DocsState(pipeline)],
           "targets": [str(docs.output_dir(pipeline) / name) for name in docs.GUIDES],
           "params": [_param("no_history", "no-history", bool, False, "leave the history out (for committed docs)"),
                      _param("output", "output", str, "", "write into this directory instead")],
           "verbosity": 2}
    yield {"basename": "doctor", "doc": "the tools this environment needs: found, version, how to install",
           "actions": [(guarded(doctor.check), [pipeline])], **always}
    yield {"basename": "lab-stop", "doc": "stop the local lab's services (the Proxmox stand-in and the VMs' sshd)",
           "actions": [(guarded(_lab_stop), [pipeline])], **always}


def _lab_stop(pipeline: Pipeline) -> None:
    from proxpipe.lab import control

    control.stop(pipeline.env, verbose=True)


def _destroy(pipeline: Pipeline):
    from proxpipe.commands import rollback

    stage = pipeline.last_producer("inventory")
    if stage is None:
        raise PipelineError("this pipeline has no provision stage to destroy")
    pipeline.start_run("destroy")
    return rollback.destroy(pipeline, stage)


def _history(pipeline: Pipeline, limit: int) -> None:
    from proxpipe.domain.history import show

    show(pipeline.history, limit)


def _report(pipeline: Pipeline, limit: int) -> None:
    if "runlog" not in pipeline.plugins.names:
        raise PipelineError("the runlog plugin is disabled in pipeline.yaml; enable it to record runs")
    from proxpipe.plugins import runlog

    runlog.show(pipeline.state_dir, limit)


class DocsState:
    """docs is up to date while the history (unless left out) and the options are what they were."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def __repr__(self) -> str:
        return "DocsState()"

    def __call__(self, task, values):
        from proxpipe.commands import docs

        options = task.options or {}
        current = {"history": docs.history_digest(self.pipeline, not options.get("no_history")),
                   "env": self.pipeline.env.name, "options": json.dumps(options, sort_keys=True)}
        task.value_savers.append(lambda: {"docs": current})
        return values.get("docs") == current
