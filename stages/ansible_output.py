"""What ansible-playbook printed, read: the play recap, the tasks check mode would change (for a plan), and check
mode read for drift: which tasks would change which hosts, with their diffs.

`ansible-playbook --check --diff` prints, under each task's header, a host's diff just before its `changed:
[host]` line (a loop's per item, before `changed: [host] => (item=...)`); warnings and errors come after the diff.
A host that was unreachable or failed in check mode could not be checked: the stage cannot tell then.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxpipe.api import drift

_RECAP_LINE = r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$"


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """host -> {ok, changed, unreachable, failed, ...} from the PLAY RECAP of ansible-playbook's output."""
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap:
            found = re.match(_RECAP_LINE, line.strip())
            if found:
                recap[found.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(2))}
    return recap


DIFF_LINES = 40  # per task and host; a long diff (a whole new file) is cut with a count
_HEADER = re.compile(r"^(TASK|RUNNING HANDLER) \[(.+)\] \**$")
_CHANGED = re.compile(r"^changed: \[([^\]]+)\](?: => \(item=(.*)\))?")
_RESULT = re.compile(r"^(ok|changed|skipping|fatal|failed|included|\.\.\.ignoring|\.\.\.skipping)\b")
_NOTICE = re.compile(r"^\[(WARNING|DEPRECATION WARNING|ERROR)\]")


def check_drift(output: str, diff_lines: int = DIFF_LINES) -> list[drift.DriftItem]:
    """One host item per task that would change a host (subject: the host, summary: the task, "handler: NAME" for
    a handler, " (item=x)" for a loop's item), with the diff Ansible printed for it, at most diff_lines lines."""
    from proxpipe.api import drift  # only when drift runs

    items, task, pending = [], "", []
    for raw in output.splitlines():
        line = raw.rstrip()
        header = _HEADER.match(line)
        if header:
            task = header.group(2) if header.group(1) == "TASK" else f"handler: {header.group(2)}"
            pending = []
        elif changed := _CHANGED.match(line):
            host, item = changed.group(1).split(" -> ")[0], changed.group(2)
            if task:
                summary = f"{task} (item={item})" if item is not None else task
                items.append(drift.DriftItem(drift.HOST, host, summary, (), _cut(_diff(pending), diff_lines)))
            pending = []
        elif _RESULT.match(line) or line.startswith("PLAY"):
            pending = []
        else:
            pending.append(line)
    return items


def check_changes(output: str) -> list[tuple[str, str]]:
    """(host, task) of every task that reported "changed" in ansible-playbook's output (--check: would change)."""
    return [(item.subject, item.summary) for item in check_drift(output)]


def check_problem(output: str, returncode: int) -> str | None:
    """Why check mode could not tell for every host (one line), or None: hosts unreachable or failed in it, or
    no play recap at all (the playbook did not run)."""
    recap = parse_recap(output)
    if not recap:
        return f"ansible-playbook --check printed no PLAY RECAP (exit {returncode})"
    unreachable = sorted(host for host, counts in recap.items() if counts.get("unreachable"))
    failed = sorted(host for host, counts in recap.items() if counts.get("failed"))
    parts = ([f"{', '.join(unreachable)} unreachable"] if unreachable else []) + (
        [f"{', '.join(failed)} failed in check mode"] if failed else [])
    return f"could not check every host: {'; '.join(parts)}" if parts else None


def stage_drift(name: str, kind: str, output: str, returncode: int) -> drift.StageDrift:
    """The configure stage's answer from one `ansible-playbook --check --diff` run."""
    from proxpipe.api import drift  # only when drift runs

    return drift.StageDrift(name, kind, tuple(check_drift(output)), check_problem(output, returncode))


def _diff(lines: list[str]) -> list[str]:
    """The diff of the pending lines: up to the first warning or error Ansible printed after it, blank lines at
    either end dropped."""
    kept = []
    for line in lines:
        if _NOTICE.match(line):
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    while kept and not kept[0].strip():
        kept.pop(0)
    return kept


def _cut(lines: list[str], limit: int) -> tuple[str, ...]:
    if len(lines) <= limit:
        return tuple(lines)
    return (*lines[:limit], f"... and {len(lines) - limit} more lines")
