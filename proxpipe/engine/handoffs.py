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
from proxpipe.base.fsutil import atomic_write
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

    def upstream(self, stage: Stage, sources: list[Stage], given: str | None) -> tuple[Any, Path | None]:
        """(value, file) the stage starts from: given by hand (--template-id, --inventory), else its sources'
        handoffs: one's value, or several merged (template ids by build stage, inventories into one file).
        HandoffError in one line when one cannot be read."""
        kind = stage.consumes
        if kind is None:
            return None, None
        if len(sources) > 1:
            return self._merged(stage, sources, given)
        param = stage.UPSTREAM_PARAM or {}
        if given is not None:
            if param.get("is_path"):
                path = Path(given).absolute()
                return handoff.read(kind, path), path
            return _parse_given(kind, param, given), None
        if not sources:
            path = self.store.handoff_file(kind.filename)
            return handoff.read(kind, path), path
        return self.read(sources[0]), self.path(sources[0])

    def _merged(self, stage: Stage, sources: list[Stage], given: str | None) -> tuple[Any, Path | None]:
        if stage.consumes is handoff.TEMPLATE_ID:  # {build stage: its template id}; --template-id NAME=ID,...
            ids = _given_ids(stage, [source.name for source in sources], given)
            return {source.name: ids[source.name] if source.name in ids else self.read(source)
                    for source in sources}, None
        if given is not None:  # an inventory given by hand stands for all of them
            path = Path(given).absolute()
            return handoff.read(stage.consumes, path), path
        from proxpipe.domain import inventory

        try:
            value = inventory.merge({source.name: self.read(source) for source in sources})
        except inventory.InventoryError as exc:
            raise HandoffError(f"stage {stage.name}: {exc}") from None
        path = self.store.cache_dir / stage.name / f"merged-{stage.consumes.filename}"
        atomic_write(path, stage.consumes.dump(value), 0o600)
        return value, path

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


def _parse_given(kind, param: dict, text: str) -> Any:
    try:
        return kind.parse(text)
    except ValueError as exc:
        raise HandoffError(f"--{param['long']} {text!r}: {exc}") from None


def _given_ids(stage: Stage, builds: list[str], given: str | None) -> dict[str, int]:
    """--template-id NAME=ID[,NAME=ID]: the builds named take these ids instead of their handoffs."""
    param = stage.UPSTREAM_PARAM or {"long": "template-id"}
    found: dict[str, int] = {}
    for part in filter(None, (given or "").split(",")):
        name, sep, text = part.partition("=")
        if not sep or name.strip() not in builds:
            raise HandoffError(f"--{param['long']} {given!r}: stage {stage.name} takes one per build, as NAME=ID "
                               f"(builds: {', '.join(builds)})")
        found[name.strip()] = _parse_given(stage.consumes, param, text)
    return found
