"""Built-in checks through the Proxmox API: the template exists, every inventory host's VM runs, the VMs' templates
can be cloned where they land; and no VM is on a template the registry revoked."""

from __future__ import annotations

from proxpipe.api.checks import Check, Skip, failed, passed
from proxpipe.api.hookspecs import hookimpl
from proxpipe.base.errors import HandoffError


def template(ctx):
    """The id in template_id.txt exists on the node and is a template."""
    template_id = ctx.handoff()
    proxmox = ctx.need_proxmox()
    problem = proxmox.template_problem(template_id)
    target = f"template {template_id}"
    yield failed(target, problem) if problem else passed(target, f"exists on {proxmox.node} and is a template")


def vm(ctx):
    """Every inventory host's VM exists and runs; where the guest agent answers, it reports the host's address."""
    hosts = ctx.hosts()
    proxmox = ctx.need_proxmox()
    vms = proxmox.vms()
    by_id = {int(v["vmid"]): v for v in vms}
    by_name = {v.get("name"): v for v in vms if not int(v.get("template", 0))}
    for host in hosts.values():
        entry = by_id.get(host.vm_id) if host.vm_id else by_name.get(host.name)
        what = f"VM {host.vm_id}" if host.vm_id else f"VM named {host.name}"
        if entry is None:
            yield failed(host.name, f"{what} does not exist on the cluster")
            continue
        if entry.get("status") != "running":
            yield failed(host.name, f"{what} is {entry.get('status', 'in an unknown state')}, not running")
            continue
        addresses = proxmox.agent_addresses(int(entry["vmid"]), entry.get("node"))
        if addresses is None:
            yield passed(host.name, f"{what} runs on {entry.get('node')} (guest agent not answering)")
        elif host.address in addresses:
            yield passed(host.name, f"{what} runs; the guest agent reports {host.address}")
        else:
            yield failed(host.name, f"{what} runs, but the guest agent reports {', '.join(addresses) or 'no address'}"
                                    f", not the inventory's {host.address}")


def placement(ctx):
    """The template(s) a provision stage clones can be cloned on each node its VMs land on (shared storage, or a
    copy there), from the cluster's answers."""
    stage = ctx.stage()
    proxmox = ctx.need_proxmox()
    try:
        upstream, _path = ctx.pipeline.handoffs.upstream(stage, ctx.pipeline.sources(stage), None)
    except HandoffError as exc:
        raise Skip(f"no template to check yet ({exc})") from None
    missing = [str(t) for t in (upstream.values() if isinstance(upstream, dict) else [upstream])
               if proxmox.vm(int(t)) is None]
    if missing:  # one fault, one failure: the template check reports it
        raise Skip(f"template {', '.join(missing)} does not exist; see the template check")
    problems = stage.placement_problems(upstream)
    nodes = ", ".join(stage.target_nodes())
    for problem in problems:
        yield failed(stage.name, problem)
    if not problems:
        yield passed(stage.name, f"its templates can be cloned on {nodes}")


def revoked(ctx):
    """No inventory host runs on a template the registry has revoked."""
    from proxpipe.api import registry

    data = registry.load(ctx.pipeline.store)
    for host in ctx.hosts().values():
        why = registry.refusal(data, int(host.template_id)) if host.template_id else None
        what = f"VM {host.vm_id}" if host.vm_id else host.name
        if why:
            yield failed(host.name, f"{what} was cloned from {why}: re-create it from an active one (`doit deploy` "
                                    "after a new build, or `doit rollback`)")
        else:
            yield passed(host.name, f"{what} is on template {host.template_id or '(unknown)'}, not revoked")


@hookimpl
def register_checks(register):
    register(Check("template", "the template in template_id.txt exists on the node and is a template", "template_id",
                   template))
    register(Check("vm", "every inventory host's VM exists and runs, at the inventory's address", "inventory", vm))
    register(Check("placement", "the VMs' templates can be cloned on the nodes the VMs land on", "inventory",
                   placement, ("terraform", "tofu")))
    register(Check("revoked", "no inventory host runs on a template the registry revoked", "inventory", revoked))
