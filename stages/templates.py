"""The build stage's template lifecycle: which templates it built, which to keep, which to delete, which one a
rollback goes back to.

Only templates the history says this pipeline built are ever deleted, and only when they are not
the current handoff, not among the newest `keep`, not the source of a VM in the inventory, and
still carry the name they had when they were built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxpipe.api import inventory
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError

if TYPE_CHECKING:
    from proxpipe.api.stage import PipelineView


def templates_in_use(inventory_value: Any) -> set[int]:
    """Template ids the hosts of an inventory were cloned from (host variable template_id)."""
    return set(inventory.by_template(inventory_value))


def apply_retention(pipeline: PipelineView, stage: str, keep: int, protected: set[int],
                    record: Callable[..., Any]) -> list[int]:
    """Delete the build stage's templates beyond its newest `keep`, with their copies on other nodes, except the
    protected ones (every build stage's current one, those the inventories' VMs were cloned from) and those a VM is
    a linked clone of; record(template_id=..., message=...) each deletion. Returns the ids deleted."""
    proxmox = pipeline.require_proxmox("delete templates past their retention")
    builds = pipeline.history.templates(stage)
    protected = protected | {int(e["template_id"]) for e in builds[:keep]}
    on_cluster = {int(vm["vmid"]): vm for vm in proxmox.vms()}
    old = [entry for entry in builds[keep:] if _deletable(entry, on_cluster, protected)]
    bases, unknown = _linked_bases(proxmox) if old else ({}, None)
    deleted = []
    for entry in old:
        made = [int(entry["template_id"]), *(int(v) for v in (entry.get("copies") or {}).values())]
        user = next((bases[vmid] for vmid in made if vmid in bases), None)
        if user is not None or unknown is not None:
            why = (f"VM {user} is a linked clone of it" if user is not None else
                   f"VM {unknown}'s node is offline: it may be a linked clone of it")
            console.step(f"keeps template {made[0]} past the {keep} kept: {why}")
            continue
        for vmid in made:
            if vmid in on_cluster:
                proxmox.delete_vm(vmid, on_cluster[vmid].get("node"))
        copies = f" and its copies {', '.join(map(str, made[1:]))}" if made[1:] else ""
        record(template_id=made[0], message=f"deleted template {made[0]}{copies}: older than the {keep} kept")
        console.step(f"deleted template {made[0]}{copies} (older than the {keep} templates kept)")
        deleted += made
    return deleted


def _deletable(entry: dict, on_cluster: dict[int, dict], protected: set[int]) -> bool:
    """A template the pipeline built, still a template under the name it was built with, protected by nothing."""
    made = {int(entry["template_id"]), *(int(v) for v in (entry.get("copies") or {}).values())}
    vm = on_cluster.get(int(entry["template_id"]))
    if made & protected or vm is None or not int(vm.get("template", 0)):
        return False
    return not entry.get("template_name") or vm.get("name") == entry["template_name"]  # else: the id was reused


def _linked_bases(proxmox) -> tuple[dict[int, int], int | None]:
    """(template -> a VM that is a linked clone of it, a VM whose node is offline: it may be a linked clone of any)."""
    found: dict[int, int] = {}
    for vmid, bases in proxmox.linked_clone_bases().items():
        if bases is None:
            return found, vmid
        found.update({base: vmid for base in bases})
    return found, None


def rollback_target(pipeline: PipelineView, stage: str, current: int | None, to: str) -> int:
    """The template `rollback --to` goes back to: the one named (a template this pipeline built, still on the
    cluster, not the current one), else the newest built before the current one that still exists."""
    proxmox = pipeline.require_proxmox("check which templates still exist")
    environment = pipeline.env.name
    builds = [int(e["template_id"]) for e in pipeline.history.templates(stage)]
    existing = {int(vm["vmid"]) for vm in proxmox.vms() if int(vm.get("template", 0))}
    if to:
        wanted = int(to) if to.strip().isdigit() else None
        if wanted is None or wanted not in builds:
            known = ", ".join(map(str, builds)) or "none yet"
            raise PipelineError(f"--to {to}: not a template this pipeline built in environment {environment} "
                                f"(built: {known}); see `doit history`")
        if wanted not in existing:
            raise PipelineError(f"--to {wanted}: template {wanted} no longer exists on {proxmox.node}")
        if wanted == current:
            raise PipelineError(f"--to {wanted}: template {wanted} is already the current one")
        return wanted
    older = builds[builds.index(current) + 1:] if current in builds else builds
    for candidate in older:
        if candidate in existing and candidate != current:
            return candidate
    raise PipelineError(f"no earlier template to roll back to: the history of environment {environment} has no "
                        f"template older than {current} that still exists on {proxmox.node}")


def copy_to_nodes(stage, proxmox, template_id: int, made: dict[str, int] | None = None,
                  needed: list[str] | None = None) -> dict:
    """The build stage's nodes: option and the nodes its VMs need (replicate: auto): the template copied to each
    other one that has no copy yet (made: node -> VMID, a kept template's copies); {"node": its node, "copies":
    {node: VMID}} for the history (empty when there is neither option nor copy)."""
    from proxpipe.api import placement

    home = str(proxmox.vm(template_id)["node"])
    copies = {node: vmid for node, vmid in (made or {}).items() if node != home}
    listed = list(stage.options["nodes"] or [])
    listed += [node for node in needed or [] if node not in listed]
    nodes = [node for node in listed if node != home and node not in copies]
    cluster = proxmox.cluster() if nodes else None
    name = proxmox.vm(template_id).get("name") or f"template-{template_id}"
    for node in nodes:
        storage = placement.copy_storage(cluster, node, stage.options["copy_storage"])
        if storage is None:
            raise PipelineError(f"{stage.config.where}.nodes: {node} has no storage for VM disks to copy template "
                                f"{template_id} to; set copy_storage")
        newid = stage._allocate(for_copy=True)
        if newid is None:
            raise PipelineError(f"{stage.config.where}.nodes: copies need template_id_range for their VMIDs")
        try:
            console.step(f"copying template {template_id} to {node} ({storage}) as {newid}")
            proxmox.copy_template(template_id, newid, node, storage, f"{name}-{node}")
        finally:
            stage._release(newid)
        copies[node] = newid
    if not (listed or stage.options["replicate"] or copies):
        return {}
    return {"node": home, **({"copies": copies} if copies else {})}


def copies(pipeline: PipelineView, template_id: int) -> dict[str, int]:
    """node -> VMID of the template and its copies on other nodes, as the build that made it recorded them ({} when
    it made none)."""
    build = next((e for e in pipeline.history.builds() if e["template_id"] == template_id), None)
    if not build or not build.get("copies"):
        return {}
    return {build["node"]: template_id, **{node: int(vmid) for node, vmid in build["copies"].items()}}
