"""What lifecycle hooks receive: the run, the stage, and each stage's outcome."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol


class LogStore(Protocol):
    """Where a run's logs go (the environment's state store, proxpipe.domain.state): append-only lines per log."""

    where: str

    def append(self, log: str, line: str) -> None: ...

    def lines(self, log: str) -> list[str]: ...

    def log_label(self, log: str) -> str: ...


@dataclass
class RunInfo:
    """One run of the pipeline (deploy, a single stage, rollback or destroy)."""

    id: str
    environment: str
    command: str
    started: float
    state_dir: Path
    log_dir: Path
    finished: float | None = None
    interrupted: str | None = None  # SIGINT or SIGTERM when the run was interrupted
    _options: Callable[[str], dict] = field(default=lambda name: {}, repr=False)
    store: LogStore | None = field(default=None, repr=False)  # the environment's state store

    def plugin_options(self, name: str) -> dict:
        """The validated options of plugin `name` from pipeline.yaml (secrets as Secret objects)."""
        return self._options(name)


class StageInfo(NamedTuple):
    name: str
    kind: str
    dir: Path
    handoff: Path


@dataclass
class StageOutcome:
    name: str
    kind: str
    status: str  # ran, skipped, failed or interrupted
    duration: float = 0.0
    handoff: str | None = None
    message: str = ""
    tool_versions: dict[str, str] = field(default_factory=dict)
