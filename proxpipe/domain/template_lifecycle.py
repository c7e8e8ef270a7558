"""The template lifecycle: which templates the pipeline built, which to keep, which to delete.

Only templates the history says this pipeline built are ever deleted, and only when they are not
the current handoff, not among the newest `keep`, not the source of a VM in the inventory, and
still carry the name they had when they were built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from proxpipe.base.console import console
from proxpipe.domain import inventory
from proxpipe.domain.history import History
from proxpipe.domain.proxmox import Proxmox


def built_templates(history: History) -> list[dict]:
    """Successful builds, newest first, one entry per template id."""
    seen, out = set(), []
    for entry in history.builds():
        template_id = int(entry["template_id"])
        if template_id not in seen:
            seen.add(template_id)
            out.append(entry)
    return out


def templates_in_use(inventory_value: Any) -> set[int]:
    """Template ids the hosts of an inventory were cloned from (host variable template_id)."""
    if inventory_value is None:
        return set()
    return {host.template_id for host in inventory.parse(inventory_value).values() if host.template_id}


def apply_retention(history: History, proxmox: Proxmox, keep: int, protected: set[int],
                    record: Callable[..., Any]) -> list[int]:
    """Delete the pipeline's templates beyond the newest `keep`, except the protected ones (the current one, those
    the inventory's VMs were cloned from); record(template_id=..., message=...) each deletion. Returns the ids."""
    builds = built_templates(history)
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
