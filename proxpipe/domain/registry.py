"""The template registry: every template a build stage made (its lineage and status) and the channels, named
pointers to one template each. It is one JSON document of the state store: the environment's own on local state,
the project's (every environment's) on shared state, changed only through StateStore.update_registry, which reads,
changes and writes it in one step.

    {"format_version": 1,
     "templates": {"9105": {"vmid", "stage", "environment", "node", "copies", "storages", "commit", "inputs",
                            "base", "parent", "packer", "built_by", "built_at", "status", "revoked"?, "deleted_at"?}},
     "channels": {"staging": {"vmid", "by", "at", "why", "history": [{"vmid", "by", "at", "why"}, ...]}},
     "requests": {"staging": {"vmid", "by", "at", "why"}}}   # promotions waiting for an approval

A template's status is active, revoked or deleted; a revoked template's children (templates built from it) are
revoked with it. Nothing is ever removed: a deleted template stays, marked deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from proxpipe.base.errors import PipelineError

ACTIVE, REVOKED, DELETED = "active", "revoked", "deleted"


def now() -> str:
    """When, for the registry's entries and channels (ISO 8601, as the history writes it)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def empty() -> dict[str, Any]:
    return {"format_version": 1, "templates": {}, "channels": {}, "requests": {}}


def entry(data: dict, vmid: int) -> dict | None:
    return data["templates"].get(str(vmid))


def newest_first(data: dict) -> list[dict]:
    return sorted(data["templates"].values(), key=lambda e: (e.get("built_at") or "", e["vmid"]), reverse=True)


def channels_of(data: dict, vmid: int) -> list[str]:
    return sorted(name for name, channel in data["channels"].items() if channel["vmid"] == vmid)


def channel(data: dict, name: str) -> int | None:
    found = data["channels"].get(name)
    return None if found is None else int(found["vmid"])


# ----------------------------------------------------------------------------- changes


def record_build(data: dict, built: dict) -> None:
    """A new template: its entry, a child of its base when the base is one of ours. A deleted template whose VMID
    the cluster gave again stays in the registry under another key ("9102 deleted 2026-...")."""
    vmid = int(built["vmid"])
    old = entry(data, vmid)
    if old is not None and old["status"] == DELETED:
        data["templates"][f"{vmid} deleted {old.get('deleted_at', '')}"] = old
    new = {**built, "status": ACTIVE}
    parent = entry(data, int(built["base"])) if built.get("base") is not None else None
    if parent is not None:
        new["parent"] = parent["vmid"]
        if parent["status"] == REVOKED:
            new["status"], new["revoked"] = REVOKED, {**parent["revoked"], "via": parent["vmid"]}
    data["templates"][str(vmid)] = new


def check_target(data: dict, name: str, vmid: int) -> None:
    """PipelineError unless channel `name` may point at vmid: an active template of the registry."""
    found = entry(data, vmid)
    if found is None:
        raise PipelineError(f"template {vmid} is not in the template registry (`doit templates` lists it); only a "
                            "template a build stage made can be on a channel")
    if found["status"] != ACTIVE:
        raise PipelineError(f"channel {name} may not point at template {vmid}: it is {describe(found)}")


def move_channel(data: dict, name: str, vmid: int, by: str, at: str, why: str = "") -> int | None:
    """Point channel `name` at vmid (check_target); returns where it pointed before."""
    check_target(data, name, vmid)
    before = channel(data, name)
    old = data["channels"].get(name)
    history = ([{k: old[k] for k in ("vmid", "by", "at", "why")}] + old.get("history", []) if old else [])
    data["channels"][name] = {"vmid": vmid, "by": by, "at": at, "why": why, "history": history[:50]}
    data["requests"].pop(name, None)
    return before


def request(data: dict, name: str, vmid: int, by: str, at: str, why: str = "") -> None:
    """A promotion waiting for an approval (the environment requires one): the channel moves on approve."""
    check_target(data, name, vmid)
    data["requests"][name] = {"vmid": vmid, "by": by, "at": at, "why": why}


def revoke(data: dict, vmid: int, reason: str, by: str, at: str) -> list[int]:
    """Mark vmid and every template built from it (children, theirs, ...) revoked; the ids revoked, vmid first."""
    _known(data, vmid)
    done: list[int] = []
    todo = [vmid]
    while todo:
        current = todo.pop(0)
        found = entry(data, current)
        if found["status"] == ACTIVE:
            found["status"] = REVOKED
            found["revoked"] = {"reason": reason, "by": by, "at": at, **({"via": vmid} if current != vmid else {})}
            done.append(current)
        todo += [e["vmid"] for e in data["templates"].values() if e.get("parent") == current]
    return done


def restore(data: dict, vmid: int) -> list[int]:
    """Lift the revocation of vmid and of the children revoked with it; the ids restored."""
    found = _known(data, vmid)
    if found["status"] != REVOKED:
        raise PipelineError(f"template {vmid} is {describe(found)}, not revoked: nothing to restore")
    done = []
    for each in data["templates"].values():
        if each["status"] == REVOKED and (each["vmid"] == vmid or each.get("revoked", {}).get("via") == vmid):
            each["status"] = ACTIVE
            each.pop("revoked", None)
            done.append(each["vmid"])
    return done


def mark_deleted(data: dict, vmid: int, at: str) -> None:
    found = entry(data, vmid)
    if found is not None:
        found["status"], found["deleted_at"] = DELETED, at


def _known(data: dict, vmid: int) -> dict:
    found = entry(data, vmid)
    if found is None:
        known = ", ".join(str(e["vmid"]) for e in newest_first(data)[:8]) or "none yet"
        raise PipelineError(f"template {vmid} is not in the template registry (newest: {known}); `doit templates` "
                            "lists them")
    return found


# ----------------------------------------------------------------------------- reading


def describe(found: dict) -> str:
    if found["status"] == REVOKED:
        why = found.get("revoked", {})
        via = f" with its base {why['via']}" if why.get("via") else ""
        return f"revoked{via} by {why.get('by', '?')} ({why.get('reason', 'no reason given')})"
    if found["status"] == DELETED:
        return f"deleted ({found.get('deleted_at', '?')})"
    return "active"


def refusal(data: dict, vmid: int) -> str | None:
    """Why a provision may not clone vmid (it is revoked), naming the newest active template of its channels; None
    when it may (active, or not a template of the registry)."""
    found = entry(data, vmid)
    if found is None or found["status"] != REVOKED:
        return None
    return f"template {vmid} is {describe(found)}; {_instead(data, found)}"


def _instead(data: dict, found: dict) -> str:
    names = sorted(name for name, ch in data["channels"].items()
                   if any(h["vmid"] == found["vmid"] for h in [ch, *ch.get("history", [])]))
    for name in names:
        current = entry(data, channel(data, name))
        if current is not None and current["status"] == ACTIVE:
            return f"the newest active template on channel {name} is {current['vmid']}"
    newer = next((e for e in newest_first(data) if e["status"] == ACTIVE and e.get("stage") == found.get("stage")),
                 None)
    if newer is not None:
        return f"the newest active template of stage {found.get('stage')} is {newer['vmid']}"
    return "no active template is left: build one, or `doit restore-template` this one"


# ----------------------------------------------------------------------------- through the state store


def load(store) -> dict[str, Any]:
    """The registry as the store has it (empty before the first build)."""
    text = store.read_registry()
    return json.loads(text) if text else empty()


def update(store, change: Callable[[dict], Any]) -> Any:
    """change(registry) applied and written in one step of the store; what change returned."""
    result: list[Any] = []

    def apply(text: str | None) -> str:
        data = json.loads(text) if text else empty()
        result.append(change(data))
        return json.dumps(data, indent=1, sort_keys=True)

    store.update_registry(apply)
    return result[0]


def pointed(data: dict) -> set[int]:
    """The templates a channel points at: retention keeps them."""
    return {int(channel["vmid"]) for channel in data["channels"].values()}
