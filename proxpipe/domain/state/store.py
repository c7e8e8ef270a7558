"""The StateStore interface: every read and write of an environment's state goes through it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

HISTORY, RUNS = "history", "runs"  # the append-only logs


class StateStore(ABC):
    """One environment's state. Writes are atomic: a reader sees the old value or the new one, never half of one.

    `cache_dir` is the local folder for what only this machine needs (logs, tool caches, copies of the handoffs
    for the tools to read); with the local store it also holds the state itself.
    """

    cache_dir: Path
    where: str  # for messages: "the state directory .pipeline/lab" or "database proxpipe@db:5432"

    # ------------------------------------------------------------------ handoffs: the files between stages

    @abstractmethod
    def read_handoff(self, name: str) -> str | None:
        """The handoff's text as written, or None when there is none."""

    @abstractmethod
    def write_handoff(self, name: str, text: str) -> bool:
        """Replace the handoff (checked by the caller); False when it already held exactly this text."""

    @abstractmethod
    def delete_handoff(self, name: str) -> None:
        """Remove the handoff (destroy)."""

    def handoff_file(self, name: str) -> Path:
        """A local file with the handoff's current text, for tools to read (ansible-playbook -i ...)."""
        return self.cache_dir / name

    # ------------------------------------------------------------------ append-only logs (history, runs)

    @abstractmethod
    def append(self, log: str, line: str) -> None:
        """Add one line (a JSON object, secrets already masked) to the end of a log."""

    @abstractmethod
    def lines(self, log: str) -> list[str]:
        """Every line of a log, oldest first."""

    def log_label(self, log: str) -> str:
        """The log as messages name it."""
        return f"the {log} log in {self.where}"

    # ------------------------------------------------------------------ what decides whether a stage is up to date

    @abstractmethod
    def stage_record(self, stage: str) -> dict[str, Any] | None:
        """The digests a stage's last success was made from, or None when it has not succeeded since it was
        last forgotten."""

    @abstractmethod
    def save_stage_record(self, stage: str, record: dict[str, Any]) -> None: ...

    @abstractmethod
    def forget_stages(self, stages: list[str]) -> None:
        """Make these stages count as not run (a stage that starts, or whose product was changed by another)."""

    # ------------------------------------------------------------------ template ids

    @abstractmethod
    def allocate_template_id(self, scope: str, low: int, high: int, used: set[int]) -> int | None:
        """The lowest id in [low, high] that is neither in `used` (the cluster's VMIDs) nor allocated in this scope
        (the cluster) by another build that has not finished; it is reserved until released. None when there is
        none free."""

    @abstractmethod
    def release_template_id(self, scope: str, vmid: int) -> None:
        """The build that reserved vmid is over (the template now exists on the cluster, or was never made)."""

    # ------------------------------------------------------------------ the environment's lock

    @abstractmethod
    def acquire(self, command: str, wait: float = 0.0) -> None:
        """Take the environment's lock for the rest of this process; LockedError naming the holder when another
        process has it (after waiting up to `wait` seconds)."""

    @abstractmethod
    def release(self) -> None: ...

    # ------------------------------------------------------------------ documents: plans and their files

    @abstractmethod
    def put_document(self, kind: str, name: str, data: bytes) -> None:
        """Store a named document (a plan record, a saved Terraform plan)."""

    @abstractmethod
    def get_document(self, kind: str, name: str) -> bytes | None: ...

    @abstractmethod
    def delete_document(self, kind: str, name: str) -> None: ...

    @abstractmethod
    def document_names(self, kind: str) -> list[str]:
        """The names of a kind's documents, oldest first."""

    def close(self) -> None:  # noqa: B027 - the local store holds nothing to give back
        """Give back what the store holds (connections); the lock is released with it."""
