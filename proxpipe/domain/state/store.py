"""The StateStore interface: every read and write of an environment's state goes through it."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

HISTORY, RUNS = "history", "runs"  # the append-only logs
LOGS = (HISTORY, RUNS)
REGISTRY = ("registry", "registry.json")  # the template registry's document (kind, name) on local state


class Snapshot(NamedTuple):
    """An environment's whole state, as state-push and state-pull copy it between stores."""

    handoffs: dict[str, str]  # name -> text
    logs: dict[str, list[str]]  # log -> lines, oldest first
    stages: dict[str, dict[str, Any]]  # stage -> record
    documents: dict[tuple[str, str], bytes]  # (kind, name) -> data

    def is_empty(self) -> bool:
        return not (self.handoffs or any(self.logs.values()) or self.stages or self.documents)


class ToolDatabase(NamedTuple):
    """How a tool that keeps its own state reaches the store's database (Terraform's pg backend)."""

    environ: dict[str, str]  # libpq's variables: PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE, ...
    schema: str  # a schema of the tool's own, beside the environment's
    where: str  # host:port/dbname, for messages


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
    def allocate_template_id(self, scope: str, low: int, high: int, used: Callable[[], set[int]]) -> int | None:
        """The lowest id in [low, high] that is neither in `used()` (the cluster's VMIDs, asked inside the
        allocation, so a template another build just finished is seen) nor allocated in this scope (the cluster) by
        another build that has not finished; it is reserved until released. None when there is none free."""

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

    @abstractmethod
    def document_kinds(self) -> list[str]:
        """The kinds that have documents."""

    # ------------------------------------------------------------------ the template registry

    def read_registry(self) -> str | None:
        """The template registry's JSON (proxpipe.domain.registry): the environment's own here; a shared store
        keeps one for the project, which all its environments read."""
        data = self.get_document(*REGISTRY)
        return None if data is None else data.decode()

    def update_registry(self, change: Callable[[str | None], str]) -> None:
        """Replace the registry's JSON by change(its JSON), with no other write in between (here: the commands that
        change it hold the environment's lock)."""
        self.put_document(*REGISTRY, change(self.read_registry()).encode())

    # ------------------------------------------------------------------ copying (state-push, state-pull)

    def export_state(self, handoffs: list[str], stages: list[str]) -> Snapshot:
        """Everything the environment has: these handoffs and stage records (the pipeline's), every log and
        document."""
        texts = {name: text for name in handoffs if (text := self.read_handoff(name)) is not None}
        records = {stage: record for stage in stages if (record := self.stage_record(stage)) is not None}
        documents = {(kind, name): data for kind in self.document_kinds() for name in self.document_names(kind)
                     if (data := self.get_document(kind, name)) is not None}
        return Snapshot(texts, {log: self.lines(log) for log in LOGS}, records, documents)

    @abstractmethod
    def import_state(self, snapshot: Snapshot, handoffs: list[str]) -> None:
        """Make the environment's state the snapshot's: its logs, stage records and documents replace these, and of
        the handoffs named, those it lacks are removed."""

    # ------------------------------------------------------------------ tools that share the store

    def tool_database(self, tool: str) -> ToolDatabase | None:
        """The database connection for a tool that keeps its own state beside the environment's (`tool` names it,
        e.g. a Terraform stage); None when the state is not in a database."""
        return None

    def close(self) -> None:  # noqa: B027 - the local store holds nothing to give back
        """Give back what the store holds (connections); the lock is released with it."""
