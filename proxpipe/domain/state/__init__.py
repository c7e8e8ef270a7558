"""Where an environment's state lives: its handoffs, history, run log, stage records, template registry, lock and
plans. One interface (StateStore), two implementations: local files under .pipeline/<env>/ (the default) and
PostgreSQL (shared by a team and its CI). Nothing outside this package knows which one is in use: open_store()
picks it from the environment's `state:` setting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxpipe.domain.state.local import LocalStore
from proxpipe.domain.state.settings import StateConfig
from proxpipe.domain.state.store import StateStore

__all__ = ["LocalStore", "StateConfig", "StateStore", "open_store"]


def open_store(state_dir: Path, environment: Any,
               endpoint: Callable[[StateConfig], StateConfig] | None = None) -> StateStore:
    """The environment's store: PostgreSQL when it has `state:` (connected on first use, after `endpoint` had its
    say on the settings), else local files in state_dir. psycopg is imported only for the former."""
    if environment.state is None:
        return LocalStore(state_dir, environment.name)
    from proxpipe.domain.state.postgres import PostgresStore

    return PostgresStore(state_dir, environment.name, environment.state, endpoint)
