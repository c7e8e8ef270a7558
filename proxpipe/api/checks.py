"""The check API: what a validation check is, what it yields, and what it can read.

A check (contributed through the register_checks hook) says which stages it looks at by what they produce (a
template id, an inventory, a play recap), optionally only of some kinds, and is run once per such stage: a
pipeline with two Terraform roots gets its Terraform checks run for each. It yields results per target (a template
id, a host, a file). A check that cannot apply (no Proxmox configured, no inventory yet) raises Skip and is
reported as skipped with the reason, never as passed. `doit validate` (proxpipe.commands.validate) runs them.
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
# The names checks used for what they look at before stages were found by what they produce.
ROLES = {"build": "template_id", "provision": "inventory", "configure": "configure"}


class Skip(Exception):
    """The check cannot apply here; the message says why."""


class Check(NamedTuple):
    id: str
    description: str
    stage: str  # what the stages it checks produce: template_id, inventory, configure (or build, provision, ...)
    run: Callable[[CheckContext], Iterable[Result]]
    kinds: tuple[str, ...] = ()  # only stages of these kinds (e.g. terraform, tofu); empty: any kind

    @property
    def produces(self) -> str:
        return ROLES.get(self.stage, self.stage)

    def applies_to(self, stage: Stage) -> bool:
        return stage.produces.name == self.produces and (not self.kinds or stage.kind in self.kinds)


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
    """What a check reads: the stage it checks (and the ones it reads from), their handoffs, the inventory's hosts,
    the Proxmox API, and a place for tool logs."""

    def __init__(self, pipeline: PipelineView, checked: Stage | None, log_dir: Path,
                 make_job: Callable[[str, Stage], StageJob]):
        self.pipeline = pipeline
        self.checked = checked
        self._make_job = make_job
        self.env = pipeline.env
        self.settings = pipeline.env.validate
        self.log_dir = log_dir
        self._inventory: Any = None

    @property
    def proxmox(self):
        return self.pipeline.proxmox

    def stage(self, produces: str | None = None) -> Stage:
        """The checked stage; with a handoff kind (template_id, inventory, ...), the nearest stage that produces it:
        the checked stage itself, or one it reads from. Skip when there is none."""
        if self.checked is None:
            raise Skip(f"the pipeline has no stage that hands off {handoff.KINDS[produces or 'file'].title}")
        kind = ROLES.get(produces, produces) if produces else self.checked.produces.name
        todo = [self.checked]
        while todo:  # the checked stage, then the stages it reads from, nearest first
            found = todo.pop(0)
            if found.produces.name == kind:
                return found
            todo += self.pipeline.sources(found)
        raise Skip(f"no stage that {self.checked.name} reads from hands off {handoff.KINDS[kind].title}")

    def handoff(self, produces: str | None = None) -> Any:
        """That stage's handoff; Skip when it has none yet."""
        stage = self.stage(produces)
        if self.pipeline.handoffs.text(stage) is None:
            raise Skip(f"no {stage.handoff_path.name} yet (run `doit {stage.name}`)")
        return self.pipeline.handoffs.read(stage)

    def inventory(self) -> tuple[Any, Path]:
        """The inventory the checked stage makes (its handoff) or reads (merged, when it reads several), and its
        file. Skip when there is none yet."""
        if self.checked is not None and self.checked.consumes is handoff.INVENTORY:
            from proxpipe.base.errors import HandoffError

            try:
                return self.pipeline.handoffs.upstream(self.checked, self.pipeline.sources(self.checked), None)
            except HandoffError as exc:
                raise Skip(f"no inventory to check yet ({exc})") from None
        stage = self.stage("inventory")
        return self.handoff("inventory"), stage.handoff_path

    def hosts(self) -> dict[str, inventory.Host]:
        """The hosts of the inventory the checked stage makes or reads."""
        if self._inventory is None:
            self._inventory = inventory.parse(self.inventory()[0])
        return self._inventory

    def need_proxmox(self):
        if self.proxmox is None:
            raise Skip(f"no Proxmox API configured for environment {self.env.name}")
        return self.proxmox

    def job(self, check_id: str, stage: Stage) -> StageJob:
        """A StageJob for running the stage's tool steps from a check, logged to <check id>.log."""
        return self._make_job(check_id, stage)


def planned(stages: list[Stage], checks: list[Check]) -> list[tuple[Check, Stage | None]]:
    """Each check with each stage it applies to: stage by stage in pipeline order, checks in registration order; a
    check that applies to no stage once, with none (it skips, saying so, unless it needs no stage)."""
    pairs = [(check, stage) for stage in stages for check in checks if check.applies_to(stage)]
    return pairs + [(check, None) for check in checks if not any(c is check for c, _ in pairs)]
