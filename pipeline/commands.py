"""The doit tasks besides the stages: status, validate, rollback, destroy, history, report, docs,
doctor and lab-stop. Each is a thin task dict around a function of its own module."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from typing import TYPE_CHECKING

from doit.exceptions import TaskFailed

from . import lock as lock_mod
from .errors import PipelineError

if TYPE_CHECKING:
    from .context import Pipeline


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


def _param(name: str, long: str, kind, default, help_text: str, **extra) -> dict:
    return {"name": name, "long": long, "type": kind, "default": default, "help": help_text, **extra}


def command_tasks(pipeline: Pipeline) -> Iterator[dict]:
    from . import status

    always = {"uptodate": [False], "verbosity": 2}
    yield {"basename": "status", "doc": "each stage: up to date, or stale and why (runs no tool)",
           "actions": [(guarded(status.show), [pipeline])], **always}
    yield {"basename": "lab-stop", "doc": "stop the local lab's services (the Proxmox stand-in and the VMs' sshd)",
           "actions": [(guarded(_lab_stop), [pipeline])], **always}


def _lab_stop(pipeline: Pipeline) -> None:
    from lab import control

    control.stop(pipeline.env, verbose=True)
