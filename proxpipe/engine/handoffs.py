"""The handoff service: the one place that reads, checks, writes, keeps and restores the files between stages.

A handoff is written only after its value passes the checks its reader applies (proxpipe.domain.handoff), in one
atomic replace in the environment's state store (local files or the shared database), so it is never half-written
or invalid. After a successful write the last valid copy is kept as a store document, for `rollback --mode
restore`; never a copy that holds a secret. Stage kinds see this service read-only (proxpipe.api.stage.HandoffView).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxpipe.base import secrets
from proxpipe.base.errors import DamagedHandoff, HandoffError
from proxpipe.domain import handoff

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.domain.state import StateStore

LAST_VALID = "last-valid"  # the store's documents: a copy of each stage's last valid handoff


class Handoffs:
    def __init__(self, store: StateStore):
        self.store = store

    # ------------------------------------------------------------------ reading

    def path(self, stage: Stage) -> Path:
        return self.store.handoff_file(stage.config.handoff)

    def text(self, stage: Stage) -> str | None:
        return self.store.read_handoff(stage.config.handoff)

    def read(self, stage: Stage) -> Any:
        return handoff.parse_text(stage.produces, self.text(stage), self.path(stage))

    def value(self, stage: Stage) -> Any:
        try:
            return self.read(stage)
        except HandoffError:
            return None

    def digest(self, stage: Stage) -> str | None:
        """sha256 of the handoff's text (what records and the history keep of it); None when there is none."""
        text = self.text(stage)
        return None if text is None else hashlib.sha256(text.encode()).hexdigest()

    def damage(self, stage: Stage) -> DamagedHandoff | None:
        """What is wrong with the handoff when it exists and is invalid; None when it is valid or missing."""
        try:
            self.read(stage)
        except DamagedHandoff as exc:
            return exc
        except HandoffError:
            return None
        return None

    def upstream(self, stage: Stage, upstream: Stage | None, given: str | None) -> tuple[Any, Path | None]:
        """(value, file) the stage starts from: given by hand (--template-id, --inventory), else its upstream's
        handoff. HandoffError in one line when it cannot be read."""
        kind = stage.consumes
        if kind is None:
            return None, None
        param = stage.UPSTREAM_PARAM or {}
        if given is not None:
            if param.get("is_path"):
                path = Path(given).absolute()
                return handoff.read(kind, path), path
            try:
                return kind.parse(given), None
            except ValueError as exc:
                raise HandoffError(f"--{param['long']} {given!r}: {exc}") from None
        if upstream is None:
            path = self.store.handoff_file(kind.filename)
            return handoff.read(kind, path), path
        return self.read(upstream), self.path(upstream)

    # ------------------------------------------------------------------ writing

    def write(self, stage: Stage, value: Any) -> bool:
        """Check value and store it as the handoff, atomically; False when it already held exactly this. The last
        valid copy is kept alongside."""
        changed = self.store.write_handoff(stage.config.handoff,
                                           handoff.checked_text(stage.produces, value, self.path(stage)))
        self._keep(stage)
        return changed

    def delete(self, stage: Stage) -> None:
        self.store.delete_handoff(stage.config.handoff)

    def _keep(self, stage: Stage) -> None:
        if not stage.keeps_copy:
            return
        text = self.text(stage) or ""
        if secrets.mask(text) != text:
            self.store.delete_document(LAST_VALID, stage.config.handoff)
            return
        self.store.put_document(LAST_VALID, stage.config.handoff, text.encode())

    def kept(self, stage: Stage) -> Any:
        """The kept copy of the last valid handoff, checked; None when there is none."""
        data = self.store.get_document(LAST_VALID, stage.config.handoff) if stage.keeps_copy else None
        try:
            return handoff.parse_text(stage.produces, data.decode() if data is not None else None, self.path(stage))
        except HandoffError:
            return None
