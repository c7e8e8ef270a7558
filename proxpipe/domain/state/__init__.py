"""Where an environment's state lives: its handoffs, history, run log, stage records, template registry, lock and
plans. One interface (StateStore), two implementations: local files under .pipeline/<env>/ (the default) and
PostgreSQL (shared by a team and its CI). Nothing outside this package knows which one is in use."""

from proxpipe.domain.state.local import LocalStore
from proxpipe.domain.state.store import StateStore

__all__ = ["LocalStore", "StateStore"]
