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
    if inventory_value is None:
        return set()
    return {host.template_id for host in inventory.parse(inventory_value).values() if host.template_id}


def apply_retention(pipeline: PipelineView, stage: str, keep: int, protected: set[int],
                    record: Callable[..., Any]) -> list[int]:
    """Delete the build stage's templates beyond its newest `keep`, except the protected ones (every build stage's
    current one, those the inventories' VMs were cloned from); record(template_id=..., message=...) each deletion.
    Returns the ids."""
    proxmox = pipeline.require_proxmox("delete templates past their retention")
    builds = pipeline.history.templates(stage)
    protected = protected | {int(e["template_id"]) for e in builds[:keep]}
    on_cluster = {int(vm["vmid"]): vm for vm in proxmox.vms()}
    deleted = []
    for entry in builds[keep:]:
        template_id = int(entry["template_id"])
        vm = on_cluster.get(template_id)
        if template_id in protected or vm is None or not int(vm.get("template", 0)):
            continue
        if entry.get("template_name") and vm.get("name") != entry["template_name"]:
            continue  # the id was reused by something the pipeline did not build
        proxmox.delete_vm(template_id, vm.get("node"))
        record(template_id=template_id, message=f"deleted template {template_id}: older than the {keep} kept")
        console.step(f"deleted template {template_id} (older than the {keep} templates kept)")
        deleted.append(template_id)
    return deleted


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
