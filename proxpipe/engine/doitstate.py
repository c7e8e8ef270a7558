"""Telling doit's database what happened outside a doit task: a stage run by a rollback, or made stale."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def _manager():
    from doit.globals import Globals

    return Globals.dep_manager


def mark_up_to_date(pipeline: Pipeline, stage: Stage) -> None:
    """Record that `stage` just succeeded, as if doit had run its task."""
    from proxpipe.wiring.tasks import doit_task

    manager = _manager()
    if manager is None:
        return
    task = doit_task(pipeline, stage)
    for check, _args, _kwargs in task.uptodate:
        if hasattr(check, "current"):  # StageState: saves the digests it compares next time
            check(task, {})
    task.save_extra_values()
    manager.save_success(task)
    manager.backend.save()


def forget(stages: list[Stage]) -> None:
    """Make doit see these stages as stale next time (they have not run successfully)."""
    manager = _manager()
    if manager is None:
        return
    for stage in stages:
        manager.remove(stage.name)
    manager.backend.save()
