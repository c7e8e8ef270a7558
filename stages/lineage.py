"""The packer kind and the template registry (proxpipe.api.registry): a build's entry and its channel (publish:),
a stage that takes its template from a channel (from_channel:), and what a revoked or moved template means for
the stage's state."""

from __future__ import annotations

from typing import Any

from proxpipe.api import StageJob, inventory, registry
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError
from proxpipe.base.ids import who

# Packer variables that name the template or image a build clones (proxmox-clone's clone_vm_id; the lab's
# base_template_id): the entry's base, and its parent when that is a template of the registry.
BASE_VARS = ("base_template_id", "clone_vm_id", "base_vmid", "source_template_id")


def register(stage, value: int, job: StageJob, proxmox) -> None:
    """The template's lineage in the registry, and on the stage's publish: channel; a kept template already there
    is left as it is."""
    store, publish = stage.pipeline.store, stage.options["publish"]
    if job.notes.get("reused") and registry.entry(registry.load(store), value) is not None:
        return
    plain = stage.tool_vars()[0]
    base = next((int(plain[k]) for k in BASE_VARS if str(plain.get(k, "")).strip().isdigit()), None)
    disks = ((job.notes.get("template_config") or {}).get("disks") or {}).values()
    by, when = who(), registry.now()
    built = {"vmid": value, "stage": stage.name, "environment": stage.pipeline.env.name,
             "node": job.notes.get("node") or ((proxmox.vm(value, max_age=5) or {}).get("node") if proxmox else None),
             "copies": job.notes.get("copies") or {}, "commit": stage.pipeline.git_commit(),
             "storages": sorted({str(d["volume"]).split(":")[0] for d in disks if d.get("volume")}),
             "inputs": stage.inputs_digest(), "base": base, "packer": job.tool_versions.get("packer"),
             "built_by": by, "built_at": when}

    def change(data: dict) -> None:
        registry.record_build(data, built)
        if publish and registry.entry(data, value)["status"] == registry.ACTIVE:
            registry.move_channel(data, publish, value, by, when, f"built by {stage.pipeline.env.name}/{stage.name}")

    registry.update(store, change)
    if publish:
        console.step(f"template {value} is on channel {publish} now")


def mark_deleted(stage, deleted: list[int]) -> None:
    when = registry.now()
    registry.update(stage.pipeline.store, lambda data: [registry.mark_deleted(data, vmid, when) for vmid in deleted])


def pointed(stage) -> set[int]:
    """The templates a channel points at: retention keeps them."""
    return registry.pointed(registry.load(stage.pipeline.store))


def take_from_channel(stage, job: StageJob) -> int:
    """from_channel: the channel's template, checked on the cluster; no Packer."""
    name = stage.options["from_channel"]
    vmid = registry.channel(registry.load(stage.pipeline.store), name)
    if vmid is None:
        raise PipelineError(f"{stage.name}: channel {name} points at no template yet; put one on it with `doit "
                            f"promote --template ID --channel {name}` (`doit templates` lists them)")
    proxmox = stage.pipeline.proxmox
    problem = proxmox.template_problem(vmid) if proxmox is not None else None
    if problem:
        raise PipelineError(f"{stage.name}: channel {name} points at template {vmid}, but {problem}")
    console.step(f"template {vmid} from channel {name}: no build")
    job.notes.update(template_id=vmid, channel=name)  # history.builds() leaves it out: it built nothing
    return vmid


def revoked(stage, template_id: int) -> str | None:
    """The stage's template was revoked: the next deploy builds a new one."""
    why = registry.refusal(registry.load(stage.pipeline.store), template_id)
    return f"{why.split(';')[0]}: a new one is built" if why else None


def channel_moved(stage, template_id: int | None) -> str | None:
    """from_channel: why the handoff is not the channel's template any more (None when it is)."""
    name = stage.options["from_channel"]
    current = registry.channel(registry.load(stage.pipeline.store), name)
    if template_id is None:
        return "no template taken from it yet"
    if current == template_id:
        return None
    if current is None:
        return f"channel {name} points at no template"
    return f"channel {name} moved from {template_id} to {current}"


def recreates(stage, current: Any) -> str:
    """What a new template will do: the VMs of the inventories now on `current`, which provision re-creates."""
    hosts = sorted(name for other in stage.pipeline.downstream(stage) if other.produces.name == "inventory"
                   for name in inventory.by_template(other.handoff_value()).get(current, []))
    return f"; then the VMs on template {current} are re-created from it: {', '.join(hosts)}" if hosts else ""


def channel_name(name: str) -> str | None:
    """A Field check of publish: and from_channel:."""
    import re

    return None if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name) else \
        f"{name!r} is not a channel name (letters, digits, '.', '_' and '-')"
