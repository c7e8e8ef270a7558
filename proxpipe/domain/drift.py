"""Drift reports: per stage, whether what is deployed still matches what the pipeline made, and what differs.

A stage is `in sync`, `drifted` (its items say what differs) or `unknown` (it could not tell, and its reason says
why in one line). An item is one thing that drifted: a Terraform resource and its attributes, a host and a task
that would change it, a template field, or a handoff file. The report shows a compact summary first (one line
per stage), then the detail; `to_json()` is the stable document of schemas/drift.schema.json, `to_markdown()`
is short enough for an issue or a chat message. Every rendering masks the registered secrets. The exit code is
terraform plan -detailed-exitcode's: 0 in sync, 2 drifted, 1 when any stage could not tell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from proxpipe.base.secrets import mask, mask_tree

FORMAT_VERSION = 1
IN_SYNC, DRIFTED, UNKNOWN = "in sync", "drifted", "unknown"
STATUSES = (IN_SYNC, DRIFTED, UNKNOWN)
EXIT_CODES = {IN_SYNC: 0, DRIFTED: 2, UNKNOWN: 1}
# The kinds of item, and how a summary counts them ("2 resources, 1 host").
RESOURCE, HOST, FIELD, FILE = "resource", "host", "field", "file"
KINDS = (RESOURCE, HOST, FIELD, FILE)
_LINE = 200  # longest line of a rendering; a longer value is cut


@dataclass(frozen=True)
class Change:
    """One value that differs: an attribute path ("disk[0].size"), a template field, a handoff key."""

    path: str
    then: Any = None  # before: what Terraform's state, the build's record or the handoff says
    now: Any = None  # after: what is there now

    def line(self) -> str:
        return f"{self.path}: {shown(self.then)} -> {shown(self.now)}"


@dataclass(frozen=True)
class DriftItem:
    """One thing that drifted. kind: RESOURCE (subject: the resource address), HOST (subject: the host, summary:
    the task that would change it, lines: its diff), FIELD (subject: the template field) or FILE (subject: the
    handoff file)."""

    kind: str
    subject: str
    summary: str = ""
    changes: tuple[Change, ...] = ()
    lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"drift item kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def headline(self) -> str:
        return f"{self.subject}: {self.summary}" if self.summary else self.subject

    def detail(self) -> list[str]:
        """The item's own lines under its headline: its changes, then its diff."""
        return [change.line() for change in self.changes] + list(self.lines)


@dataclass(frozen=True)
class StageDrift:
    """One stage's answer. reason: why it could not tell (then its status is unknown, whatever items it found)."""

    name: str
    kind: str
    items: tuple[DriftItem, ...] = ()
    reason: str | None = None

    @property
    def status(self) -> str:
        if self.reason is not None:
            return UNKNOWN
        return DRIFTED if self.items else IN_SYNC

    def counts(self) -> dict[str, int]:
        """How many different subjects drifted, per kind, in KINDS order: {"resource": 2, "host": 1}."""
        subjects: dict[str, set[str]] = {}
        for item in self.items:
            subjects.setdefault(item.kind, set()).add(item.subject)
        return {kind: len(subjects[kind]) for kind in KINDS if kind in subjects}

    def summary(self) -> str:
        """`in sync`, `drifted: 2 resources, 1 host`, or `unknown: <reason>`."""
        counted = ", ".join(_count(n, kind) for kind, n in self.counts().items())
        if self.status == UNKNOWN:
            return f"unknown: {self.reason}" + (f" (drifted so far: {counted})" if counted else "")
        return f"drifted: {counted}" if counted else IN_SYNC


@dataclass
class DriftReport:
    """What `proxpipe drift` found in one environment, stage by stage, in pipeline order."""

    environment: str
    stages: list[StageDrift]
    created: str  # ISO 8601, e.g. 2026-01-01T12:00:00+0000
    run: str | None = None  # the run's id, as in the history

    @property
    def status(self) -> str:
        statuses = {stage.status for stage in self.stages}
        return UNKNOWN if UNKNOWN in statuses else DRIFTED if DRIFTED in statuses else IN_SYNC

    @property
    def exit_code(self) -> int:
        """0 in sync, 2 drifted, 1 when any stage could not tell (like terraform plan -detailed-exitcode)."""
        return EXIT_CODES[self.status]

    def drifted(self) -> list[StageDrift]:
        return [stage for stage in self.stages if stage.status == DRIFTED]

    def headline(self) -> str:
        counts = {status: sum(s.status == status for s in self.stages) for status in STATUSES}
        parts = [f"{counts[s]} {s}" for s in (DRIFTED, UNKNOWN) if counts[s]]
        return mask(f"drift on {self.environment}: " + (", ".join(parts) + f" of {len(self.stages)} stages"
                                                        if parts else f"all {len(self.stages)} stages in sync"))

    def summary_lines(self) -> list[str]:
        """One line per stage: `provision: drifted: 2 resources`."""
        return [mask(f"{stage.name}: {stage.summary()}") for stage in self.stages]

    # ------------------------------------------------------------------ shown forms

    def text(self, limit: int | None = None) -> str:
        """For the console: the summary, then per stage that is not in sync its items and their changes."""
        lines = [self.headline(), *(f"  {line}" for line in self.summary_lines())]
        for stage in self.stages:
            if stage.items:
                lines += ["", f"{stage.name} ({stage.kind}):", *(f"  {line}" for line in _detail(stage, limit))]
        return mask("\n".join(_cut(line) for line in lines)) + "\n"

    def to_markdown(self, limit: int = 10) -> str:
        """Short enough for an issue or a chat message: a table of the stages, then at most `limit` items per
        stage and `limit` lines per item, each cut with a count of what was left out."""
        lines = [f"### proxpipe drift on `{self.environment}`: {self.status}", "",
                 f"{self.headline()}. Checked {self.created}" + (f", run `{self.run}`" if self.run else "") + ".",
                 "", "| Stage | Status |", "| --- | --- |"]
        lines += [f"| `{s.name}` | {_cell(s.summary())} |" for s in self.stages]
        for stage in self.stages:
            if stage.items:  # a line holding ``` would end the code block early
                detail = [_cut(line).replace("```", "'''") for line in _detail(stage, limit)]
                lines += ["", f"<details><summary>{stage.name}: {_cell(stage.summary())}</summary>", "", "```text",
                          *detail, "```", "", "</details>"]
        lines += ["", _ADVICE[self.status]]
        return mask("\n".join(lines)) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The stable document (schemas/drift.schema.json), secrets masked."""
        stages = [{"name": s.name, "kind": s.kind, "status": s.status, "summary": s.summary(), "reason": s.reason,
                   "counts": s.counts(),
                   "items": [{"kind": i.kind, "subject": i.subject, "summary": i.summary,
                              "changes": [{"path": c.path, "then": c.then, "now": c.now} for c in i.changes],
                              "lines": list(i.lines)} for i in s.items]} for s in self.stages]
        return mask_tree({"format_version": FORMAT_VERSION, "environment": self.environment, "created": self.created,
                          "run": self.run, "status": self.status, "exit_code": self.exit_code,
                          "summary": self.summary_lines(), "stages": stages})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        """A report back from its document (the history keeps them); ValueError when it is not one."""
        try:
            stages = [StageDrift(s["name"], s["kind"], tuple(
                DriftItem(i["kind"], i["subject"], i.get("summary", ""),
                          tuple(Change(c["path"], c.get("then"), c.get("now")) for c in i.get("changes", [])),
                          tuple(i.get("lines", []))) for i in s.get("items", [])), s.get("reason"))
                for s in data["stages"]]
            return cls(data["environment"], stages, data["created"], data.get("run"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a drift report: {type(exc).__name__}: {exc}") from None


_ADVICE = {IN_SYNC: "Everything matches what the pipeline made.",
           DRIFTED: "`proxpipe drift --fix` puts the drifted stages back (`deploy --force` of those stages).",
           UNKNOWN: "Drift could not be determined for every stage: see the reasons above."}


def shown(value: Any) -> str:
    """A value as it reads in a change line: JSON (strings quoted, like Terraform's plans), cut when long."""
    if value is None:
        return "null"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _count(n: int, kind: str) -> str:
    return f"{n} {kind}{'s' if n != 1 else ''}"


def _detail(stage: StageDrift, limit: int | None) -> list[str]:
    """The items of a stage and, indented, their lines; at most `limit` of each, with a count of the rest."""
    lines: list[str] = []
    for item in _head(stage.items, limit):
        detail = item.detail()
        lines += [item.headline(), *(f"    {line}" for line in _head(detail, limit)), *_more(detail, limit, "    ")]
    return lines + _more(stage.items, limit, "")


def _head(values: Sequence[Any], limit: int | None) -> list[Any]:
    return list(values if limit is None else values[:limit])


def _more(values: Sequence[Any], limit: int | None, indent: str) -> list[str]:
    left = len(values) - limit if limit is not None else 0
    return [f"{indent}... and {left} more"] if left > 0 else []


def _cut(line: str) -> str:
    return line if len(line) <= _LINE else line[:_LINE - 3] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ") or "-"


# ----------------------------------------------------------------------------- comparing values

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def differences(then: Any, now: Any, path: str = "") -> list[Change]:
    """The leaves that differ between two JSON-like values, as flattened paths: objects by key (`memory[0]` of a
    list of blocks, `.dedicated` of an object, `["a.b"]` of a key that is no identifier), lists of objects by index;
    a list of plain values (tags) is one value, compared whole."""
    if isinstance(then, dict) and isinstance(now, dict):
        return [change for key in _keys(then, now)
                for change in differences(then.get(key), now.get(key), _join(path, key))]
    if _blocks(then) and _blocks(now):
        return [change for index in range(max(len(then), len(now)))
                for change in differences(_at(then, index), _at(now, index), f"{path}[{index}]")]
    return [] if then == now else [Change(path or "(value)", then, now)]


def _keys(then: dict, now: dict) -> list[str]:
    return list(then) + [key for key in now if key not in then]


def _join(path: str, key: Any) -> str:
    key = str(key)
    if _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _blocks(value: Any) -> bool:
    """A list whose entries are objects (Terraform's nested blocks), compared entry by entry."""
    return isinstance(value, list) and bool(value) and all(isinstance(entry, dict) for entry in value)


def _at(values: list, index: int) -> Any:
    return values[index] if index < len(values) else None


def handoff_item(file: str, then: Any, now: Any, summary: str = "differs from what its stage would produce"
                 ) -> DriftItem | None:
    """A FILE item when a handoff's value (then: what the file holds) differs from what its stage would write now;
    None when they match. A template id, an inventory and a play recap all compare as JSON-like values."""
    changes = differences(then, now)
    return DriftItem(FILE, file, summary, tuple(changes)) if changes else None
