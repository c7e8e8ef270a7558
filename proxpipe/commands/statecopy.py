"""`doit state-push` and `doit state-pull`: an environment's state between its local files and its database.

state-push copies the local files (.pipeline/<env>/, or --from DIR) into the database named by the environment's
`state.url`, refusing when the database already holds state of the environment unless --force. state-pull writes
what the database holds out as local files (the environment's state directory, or --to DIR): a backup, and the way
back to local state. Both copy the handoffs, the history, the run log, the stages' up-to-date records and the
documents (plans), byte for byte, and take the environment's lock, so the copy is of one moment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.api.command import Command, Param
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError
from proxpipe.domain.state import LocalStore
from proxpipe.domain.state.store import HISTORY, RUNS, Snapshot

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline


def push(pipeline: Pipeline, force: bool = False, source: str = "") -> None:
    """The doit action of `doit state-push [--force] [--from DIR]`."""
    _require_database(pipeline, "state-push copies the local state into it")
    local = LocalStore(Path(source) if source else pipeline.state_dir, pipeline.env.name)
    handoffs, stages = _names(pipeline)
    snapshot = local.export_state(handoffs, stages)
    if snapshot.is_empty():
        raise PipelineError(f"nothing to push: {local.where} holds no state of environment {pipeline.env.name}")
    there = pipeline.store.export_state(handoffs, stages)
    if not there.is_empty() and not force:
        raise PipelineError(f"{pipeline.store.where} already holds state of environment {pipeline.env.name} "
                            f"({summary(there)}); keep a copy with `doit state-pull --to DIR`, then pass --force "
                            "to replace it")
    pipeline.store.import_state(snapshot, handoffs)
    console.out(f"pushed {summary(snapshot)} from {local.where} to {pipeline.store.where}")


def pull(pipeline: Pipeline, target: str = "") -> None:
    """The doit action of `doit state-pull [--to DIR]`."""
    _require_database(pipeline, "state-pull writes what it holds out as local files")
    local = LocalStore(Path(target) if target else pipeline.state_dir, pipeline.env.name)
    handoffs, stages = _names(pipeline)
    snapshot = pipeline.store.export_state(handoffs, stages)
    local.import_state(snapshot, handoffs)
    console.out(f"pulled {summary(snapshot)} from {pipeline.store.where} into {local.where}")


def summary(snapshot: Snapshot) -> str:
    counts = [(len(snapshot.handoffs), "handoff"), (len(snapshot.logs.get(HISTORY, [])), "history entry"),
              (len(snapshot.logs.get(RUNS, [])), "run"), (len(snapshot.stages), "stage record"),
              (len(snapshot.documents), "document")]
    return ", ".join(f"{n} {what if n == 1 else what.replace('entry', 'entrie') + 's'}" for n, what in counts)


def _names(pipeline: Pipeline) -> tuple[list[str], list[str]]:
    return [stage.config.handoff for stage in pipeline.stages], [stage.name for stage in pipeline.stages]


def _require_database(pipeline: Pipeline, what: str) -> None:
    if pipeline.env.state is None:
        raise PipelineError(f"environment {pipeline.env.name} keeps its state in local files ({pipeline.store.where}); "
                            f"give it a database with `state: {{url: ...}}` in {pipeline.env.file} first ({what}; "
                            "see docs/shared-state.md)")


COMMANDS = (
    Command("state-push", "copy the environment's local state into its database (state.url)", push,
            (Param("force", "force", bool, False, "replace the state the database holds"),
             Param("source", "from", str, "", "copy this state directory (none: the environment's)",
                   metavar="DIR")),
            lock=True, group="recover",
            description="Copies the handoffs, history, run log, plans and stage records of the local state directory "
                        "into the environment's PostgreSQL database; refused when the database has state of the "
                        "environment already, unless --force (see docs/shared-state.md).",
            example="doit state-push env=production"),
    Command("state-pull", "write the environment's state from its database out as local files", pull,
            (Param("target", "to", str, "", "write into this directory (none: the environment's state "
                                           "directory)", metavar="DIR"),), lock=True, group="recover",
            description="Writes the state the database holds for the environment as local files: a backup, or the "
                        "way back to local state.",
            example="doit state-pull --to backup/"),
)
