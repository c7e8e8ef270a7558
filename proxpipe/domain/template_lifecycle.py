"""The template lifecycle: which templates the pipeline built, which to keep, which to delete.

Only templates the history says this pipeline built are ever deleted, and only when they are not
the current handoff, not among the newest `keep`, not the source of a VM in the inventory, and
still carry the name they had when they were built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxpipe.base.console import console
from proxpipe.domain import inventory

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def built_templates(pipeline: Pipeline) -> list[dict]:
    """Successful builds, newest first, one entry per template id."""
    seen, out = set(), []
    for entry in pipeline.history.builds():
        template_id = int(entry["template_id"])
        if template_id not in seen:
            seen.add(template_id)
            out.append(entry)
    return out


def templates_in_use(pipeline: Pipeline) -> set[int]:
    """Template ids the hosts of the current inventory were cloned from (host variable template_id)."""
    stage = pipeline.last_producer("inventory")
    data = stage.handoff_value() if stage is not None else None
    if data is None:
        return set()
    return {host.template_id for host in inventory.parse(data).values() if host.template_id}


def apply_retention(pipeline: Pipeline, stage: Stage, keep: int) -> list[int]:
    """Delete the pipeline's templates beyond the newest `keep`; returns the ids deleted."""
    proxmox = pipeline.proxmox
    if proxmox is None:
        return []
    builds = built_templates(pipeline)
    protected = {int(e["template_id"]) for e in builds[:keep]} | templates_in_use(pipeline)
    current = stage.handoff_value()
    if current is not None:
        protected.add(current)
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
        pipeline.record(stage, "retention", outcome="ok", template_id=template_id,
                        message=f"deleted template {template_id}: older than the {keep} kept")
        console.step(f"deleted template {template_id} (older than the {keep} templates kept)")
        deleted.append(template_id)
    return deleted
