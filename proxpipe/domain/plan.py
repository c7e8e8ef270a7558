"""Plans: what a deploy would do, stage by stage, as a record that `apply` can trust and people can review.

A plan holds, per stage, what would happen (run, keep, or be planned later) and why, the changes the tool
reported (Terraform's resources, Ansible's tasks per host), and the digests of everything it was made from: the
stage's inputs, settings, upstream and own handoff, the Terraform state's serial and lineage, and what the
remote check saw. Its digest covers all of them, so any change since planning makes it stale, with a named
cause. It is stored in the state store as JSON; `table()` and `markdown()` show it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

RUN, KEEP, LATER = "run", "keep", "later"  # what apply does with a stage
PLANNED, APPLIED, DISCARDED = "planned", "applied", "discarded"
PLANS, PLAN_FILES = "plans", "plan-files"  # the store's document kinds
_MARK = {RUN: "~", KEEP: "=", LATER: "…"}


@dataclass
class StagePlan:
    name: str
    kind: str
    action: str  # RUN, KEEP or LATER
    why: list[str]  # the stale reasons, or why it is kept or left for later
    summary: str  # one line: "1 to add, 0 to change, 0 to replace, 0 to destroy", "1 task would change on 1 host"
    changes: list[str] = field(default_factory=list)  # "+ null_resource.vm[\"jump-01\"]", "jump-01: Write the config"
    plan_file: str | None = None  # the saved Terraform plan, a document of kind PLAN_FILES
    state: dict[str, Any] = field(default_factory=dict)  # the stage's record as it would be now (digests only)
    facts: dict[str, Any] = field(default_factory=dict)  # tool state it depends on: Terraform serial and lineage


@dataclass
class Plan:
    id: str
    environment: str
    author: str
    created: str
    git: str | None
    refresh: bool
    stages: list[StagePlan]
    approvals: list[dict[str, str]] = field(default_factory=list)
    status: str = PLANNED
    applied: dict[str, Any] | None = None

    @property
    def digest(self) -> str:
        """sha256 over what the plan depends on: stage by stage, its action, its digests and facts."""
        parts = [[s.name, s.action, s.state, s.facts] for s in self.stages]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def planned(self) -> list[StagePlan]:
        return [s for s in self.stages if s.action == RUN]

    def later(self) -> list[StagePlan]:
        return [s for s in self.stages if s.action == LATER]

    # ------------------------------------------------------------------ stored form

    def dump(self) -> bytes:
        return (json.dumps({**asdict(self), "digest": self.digest}, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def load(cls, data: bytes) -> Plan:
        raw = json.loads(data)
        raw.pop("digest", None)
        raw["stages"] = [StagePlan(**s) for s in raw["stages"]]
        return cls(**raw)

    # ------------------------------------------------------------------ shown forms

    def headline(self) -> str:
        planned, later = self.planned(), self.later()
        if not planned:
            return f"plan {self.id}: nothing to do, every stage is up to date"
        text = f"plan {self.id}: {', '.join(s.name for s in planned)} would run"
        if later:
            text += f"; {', '.join(s.name for s in later)} will be planned after {planned[-1].name} is applied"
        return text

    def rows(self) -> list[list[str]]:
        return [[f"{_MARK[s.action]} {s.name}", s.kind, s.action, s.summary, "; ".join(s.why)] for s in self.stages]

    def markdown(self, limit: int = 20) -> str:
        """Short enough for a pull-request comment: the stages, and at most `limit` changes per stage."""
        lines = [f"### proxpipe plan `{self.id}` for environment `{self.environment}`", "",
                 f"{self.headline()}.", "", f"By {self.author}, {self.created}"
                 + (f", commit `{self.git}`" if self.git else "") + f". Digest `{self.digest[:12]}`.", "",
                 "| Stage | Action | Summary | Why |", "| --- | --- | --- | --- |"]
        lines += [f"| `{s.name}` | {s.action} | {_cell(s.summary)} | {_cell('; '.join(s.why))} |" for s in self.stages]
        for stage in self.planned():
            if stage.changes:
                shown = stage.changes[:limit]
                more = len(stage.changes) - len(shown)
                lines += ["", f"<details><summary>{stage.name}: {len(stage.changes)} change"
                              f"{'s' if len(stage.changes) != 1 else ''}</summary>", "", "```text", *shown,
                          *([f"... and {more} more"] if more else []), "```", "", "</details>"]
        approved = ", ".join(a["by"] for a in self.approvals)
        lines += ["", f"Approved by {approved}." if approved else "Not approved yet: `doit approve --plan "
                                                                    f"{self.id}`, then `doit apply --plan {self.id}`."]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ") or "-"
