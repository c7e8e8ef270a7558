"""What every bad input of issue 27 must leave behind, and a lab project to try them on.

The tests of its rules (tests/unit/test_bad_input_*.py) run the real command line in a copy of the project whose state
directory holds handoffs and stage records from an earlier run; a bad input must end in one line on stderr naming
the key, file, value or path, start no tool, and leave every one of those files as it was, byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.labproject import LabProject

# What a deploy of the lab left (one VM), as the files hold it.
EARLIER_RUN = {
    "template_id.txt": "9100\n",
    "ansible_inventory.json": json.dumps({"jump_hosts": {"hosts": {"jump-01": {
        "ansible_host": "127.0.10.11", "ansible_user": "lab", "vm_id": 201}}}}, indent=2) + "\n",
    "configure.json": json.dumps({"playbook": "site.yml", "duration": 1.1, "finished": "2026-12-02T10:24:22+0000",
                                  "recap": {"jump-01": {"ok": 2, "changed": 1, "failed": 0, "unreachable": 0}}},
                                 indent=2) + "\n",
    "stages.json": json.dumps({name: {"config": "c" * 64, "handoff": "h" * 64, "inputs": {"main": "i" * 64},
                                      "time": 1796207057.5, "upstream": ""}
                               for name in ("build", "provision", "configure")}, indent=1) + "\n",
    "history.jsonl": "".join(json.dumps({"action": name, "outcome": "ok", "stage": name, "run": "20261202-102416-3238",
                                         "time": "2026-12-02T10:24:17+0000"}) + "\n"
                             for name in ("build", "provision", "configure")),
}


# A run's own bookkeeping (the environment's lock, doit's cache), made by any command that took the lock: not the
# state the rules protect.
BOOKKEEPING = {"lock", ".doit-db.lock", "doit.json"}


def seed(state: Path) -> dict[str, bytes]:
    """The state directory of an earlier run; returns what it holds."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)  # as the pipeline makes it: for its owner only
    for name, text in EARLIER_RUN.items():
        (state / name).write_text(text)
        (state / name).chmod(0o600)
    return files(state)


def files(state: Path) -> dict[str, bytes]:
    """Every file under state (the handoffs, the stage records, the history, anything else), by relative path."""
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*")) if p.is_file()}


def one_line(result: subprocess.CompletedProcess) -> str:
    """The one line a bad input ends in, on stderr; no traceback anywhere."""
    output = (result.stdout or "") + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}\n(stdout:\n{result.stdout})"
    return lines[0]


class SeededProject(LabProject):
    """A lab project (never started: a bad input must fail before the lab is needed) with an earlier run's state."""

    def __init__(self, root: Path, **kwargs):
        super().__init__(root, **kwargs)
        self.before = seed(self.state)

    def write_text(self, text: str) -> None:
        """pipeline.yaml as written by hand (yaml.safe_dump cannot write a duplicate key)."""
        (self.root / "pipeline.yaml").write_text(text)

    def unchanged(self) -> None:
        """No tool was started, and the state directory is as the earlier run left it."""
        assert self.tool_calls() == [], self.tool_calls()
        now = {name: data for name, data in files(self.state).items() if name not in BOOKKEEPING}
        assert now == self.before
        assert not (self.state / "fake-pve").exists(), "the lab was started"
