"""The check API: what a validation check is, what it yields, and what it can read.

A check (contributed through the register_checks hook) yields results per target (a template id, a host, a
file). A check that cannot apply (no Proxmox configured, no inventory yet) raises Skip and is reported as
skipped with the reason, never as passed. `doit validate` (proxpipe.commands.validate) runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from proxpipe.domain import handoff, inventory

if TYPE_CHECKING:
    from proxpipe.api.stage import PipelineView, Stage, StageJob

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
ROLES = {"build": "template_id", "provision": "inventory", "configure": "configure"}


class Skip(Exception):
    """The check cannot apply here; the message says why."""


class Check(NamedTuple):
    id: str
    description: str
    stage: str  # build, provision or configure: the stage whose product it checks
    run: Callable[[CheckContext], Iterable[Result]]


@dataclass
class Result:
    check: str
    target: str
    status: str
    message: str
    duration: float = 0.0
    stage: str = ""


def passed(target: str, message: str) -> Result:
    return Result("", target, PASSED, message)


def failed(target: str, message: str) -> Result:
    return Result("", target, FAILED, message)


class CheckContext:
    """What checks read: the pipeline, its stages by role, the inventory, a place for tool logs."""

    def __init__(self, pipeline: PipelineView, log_dir: Path, make_job: Callable[[str, Stage], StageJob]):
        self.pipeline = pipeline
        self._make_job = make_job
        self.env = pipeline.env
        self.settings = pipeline.env.validate
        self.log_dir = log_dir
        self._inventory: Any = None

    @property
    def proxmox(self):
        return self.pipeline.proxmox

    def stage(self, role: str) -> Stage:
        """The stage whose product a role's checks look at; Skip when the pipeline has none."""
        kind = ROLES[role]
        found = (self.pipeline.last_producer(kind) if role == "provision" else self.pipeline.producer(kind))
        if found is None:
            raise Skip(f"the pipeline has no stage that hands off {handoff.KINDS[kind].title}")
        return found

    def handoff(self, role: str) -> Any:
        stage = self.stage(role)
        if stage.handoff_text() is None:
            raise Skip(f"no {stage.handoff_path.name} yet (run `doit {stage.name}`)")
        return stage.read_handoff()

    def hosts(self) -> dict[str, inventory.Host]:
        if self._inventory is None:
            self._inventory = inventory.parse(self.handoff("provision"))
        return self._inventory

    def need_proxmox(self):
        if self.proxmox is None:
            raise Skip(f"no Proxmox API configured for environment {self.env.name}")
        return self.proxmox

    def job(self, check_id: str, stage: Stage) -> StageJob:
        """A StageJob for running the stage's tool steps from a check, logged to <check id>.log."""
        return self._make_job(check_id, stage)


def in_stage_order(checks: list[Check]) -> list[Check]:
    """Checks of the build first, then provision, then configure, then any other."""
    order = list(ROLES)
    return sorted(checks, key=lambda c: order.index(c.stage) if c.stage in order else len(order))


