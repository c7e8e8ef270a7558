"""`pipeline-lab`: what the lab's Packer template and Terraform module run to act on its Proxmox API.

It reads the API address and credentials from the variables the pipeline gives its tools
(PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PIPELINE_PROXMOX_*), and uses the pipeline's own
Proxmox client, so its calls are retried the same way.

  pipeline-lab template-create --from 9000 --vmid 9100 --name lab-golden-9100 [--node pve1] [--storage S]
  pipeline-lab vm-create --template 9100 --vmid 201 --name jump-01 --address 127.0.10.11
  pipeline-lab vm-create --template 9100 --vmid 202 --name web-01 --address dhcp --node pve2 --linked
  pipeline-lab vm-destroy --vmid 201
  BUILD_SALT=... pipeline-lab received --dir .pipeline/lab packer.build_salt=BUILD_SALT

Clones follow Proxmox's own rules: the request goes to the node the source lives on, with `target` when the
clone is to live on another node (--node), which Proxmox allows only when every disk of the source is on
shared storage ("can't clone VM to node 'pve2' (VM uses local storage)"); --storage puts a full clone's disks
there; --linked makes a linked clone of a template (its disks stay on the template's storage).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.base.errors import PipelineError

if TYPE_CHECKING:
    from proxpipe.domain.proxmox import Proxmox


def _client(retry_locks: bool = True) -> Proxmox:
    # The light client: Terraform starts this once per VM, and proxmoxer alone would take 0.1 s to import. Imported
    # here: `received` needs no client.
    from proxpipe.domain.proxmox import Proxmox, config_from_tool_env

    return Proxmox(config_from_tool_env(dict(os.environ)), notify=lambda text: print(text, flush=True),
                   prefer_light=True, retry_locks=retry_locks)


def _clone(pve: Proxmox, source: int, newid: int, name: str, node: str, storage: str | None = None,
           linked: bool = False) -> None:
    """POST /nodes/{source's node}/qemu/{source}/clone, with target when the clone is to live on another node."""
    entry = pve.vm(source)
    if entry is None:
        raise PipelineError(f"VM {source} does not exist on the cluster; nothing to clone")
    home = str(entry["node"])
    params: dict = {"newid": newid, "name": name, "full": 0 if linked else 1}
    if node != home:
        params["target"] = node
    if storage:
        params["storage"] = storage
    pve.task(f"POST /nodes/{home}/qemu/{source}/clone", lambda: pve.api.nodes(home).qemu(source).clone.post(**params))


def template_create(args) -> None:
    """What the proxmox-clone builder does: clone the base, provision, turn the clone into a template."""
    pve = _client()
    node = args.node or pve.node
    if pve.vm(args.vmid) is not None:
        raise PipelineError(f"VMID {args.vmid} is already in use; Proxmox cannot build a template over it")
    _clone(pve, args.source, args.vmid, args.name, node, args.storage)
    pve.call(f"PUT /nodes/{node}/qemu/{args.vmid}/config", lambda: pve.api.nodes(node).qemu(args.vmid).config.put(
        description=f"built by packer at {time.strftime('%Y-%m-%d %H:%M:%S')} from {args.source}"))
    pve.task(f"POST /nodes/{node}/qemu/{args.vmid}/template",
             lambda: pve.api.nodes(node).qemu(args.vmid).template.post())
    print(f"template {args.vmid} ({args.name}) registered on {node}", flush=True)


def vm_create(args) -> None:
    """Clone a VM from the template, give it its address (as cloud-init would: static, or dhcp) and start it.
    Idempotent."""
    if args.delay > 0:
        print(f"waiting {args.delay:g}s first (apply_delay)", flush=True)
        time.sleep(args.delay)
    pve = _client(retry_locks=not args.no_lock_retry)
    node = args.node or pve.node
    ipconfig = "ip=dhcp" if args.address == "dhcp" else f"ip={args.address}/8"
    existing = pve.vm(args.vmid)
    if existing is not None and existing.get("name") == args.name and not int(existing.get("template", 0)) \
            and existing.get("node") == node and existing.get("status") == "running":
        config = pve.call("GET config", lambda: pve.api.nodes(node).qemu(args.vmid).config.get())
        if str(config.get("ipconfig0", "")).startswith(ipconfig):
            print(f"VM {args.vmid} ({args.name}) already exists and runs", flush=True)
            return
    if existing is not None:
        _destroy(pve, args.vmid, existing)
    _clone(pve, args.template, args.vmid, args.name, node, args.storage, args.linked)
    description = f"lab VM cloned from {args.template}; sshd_delay={args.sshd_delay}"
    if args.agent_delay:
        description += f"; agent_delay={args.agent_delay}"
    pve.call(f"PUT /nodes/{node}/qemu/{args.vmid}/config", lambda: pve.api.nodes(node).qemu(args.vmid).config.put(
        ipconfig0=ipconfig, description=description, agent="1"))
    pve.task(f"POST /nodes/{node}/qemu/{args.vmid}/status/start",
             lambda: pve.api.nodes(node).qemu(args.vmid).status.start.post())
    how = "linked clone of" if args.linked else "cloned from"
    print(f"VM {args.vmid} ({args.name}) {how} {args.template} and started on {node} at {args.address}", flush=True)


def vm_destroy(args) -> None:
    pve = _client()
    existing = pve.vm(args.vmid)
    if existing is None:
        print(f"VM {args.vmid} does not exist; nothing to do", flush=True)
        return
    _destroy(pve, args.vmid, existing)
    print(f"VM {args.vmid} stopped and destroyed", flush=True)


def received(args) -> None:
    """Record the sha256 of secrets a tool was given (in its environment, never on this command line) as
    <dir>/received/<name>.sha256, so a test can check that the right values arrived without keeping them."""
    import hashlib

    from proxpipe.base.fsutil import atomic_write

    for pair in args.pairs:
        name, _, variable = pair.partition("=")
        if not name or not variable:
            raise PipelineError(f"{pair!r}: expected NAME=ENV_VAR")
        digest = hashlib.sha256(os.environ.get(variable, "").encode()).hexdigest()
        atomic_write(Path(args.dir) / "received" / f"{name}.sha256", digest + "\n", durable=False)


def _destroy(pve: Proxmox, vmid: int, entry: dict) -> None:
    node = entry.get("node", pve.node)
    if entry.get("status") == "running":
        pve.task(f"POST /nodes/{node}/qemu/{vmid}/status/stop",
                 lambda: pve.api.nodes(node).qemu(vmid).status.stop.post())
    pve.delete_vm(vmid, node)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline-lab", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("template-create", help="clone the base VM into a new template")
    make.add_argument("--from", dest="source", type=int, required=True, help="the base template's VMID")
    make.add_argument("--vmid", type=int, required=True)
    make.add_argument("--name", required=True)
    make.add_argument("--node", help="the node the template is to live on (default: the pipeline's node)")
    make.add_argument("--storage", help="the storage of its disks (default: the source's)")
    make.set_defaults(func=template_create)
    create = commands.add_parser("vm-create", help="clone and start a lab VM")
    create.add_argument("--template", type=int, required=True)
    create.add_argument("--vmid", type=int, required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--address", required=True,
                        help="its loopback address, 127.x.y.z, or dhcp: one from the lab's pool, which only the "
                             "guest agent reports")
    create.add_argument("--node", help="the node it is to live on (default: the pipeline's node)")
    create.add_argument("--storage", help="the storage of a full clone's disks (default: the template's)")
    create.add_argument("--linked", action="store_true", help="a linked clone of the template, not a full one")
    create.add_argument("--sshd-delay", type=float, default=0, help="seconds until its sshd starts; -1 never")
    create.add_argument("--agent-delay", type=float, default=0,
                        help="seconds until its guest agent answers; -1 never")
    create.add_argument("--no-lock-retry", action="store_true",
                        help="fail on a config-lock timeout, as the Terraform providers do, instead of retrying")
    create.add_argument("--delay", type=float, default=0, help="seconds to wait first (a slow apply, for tests)")
    create.set_defaults(func=vm_create)
    destroy = commands.add_parser("vm-destroy", help="stop and delete a lab VM")
    destroy.add_argument("--vmid", type=int, required=True)
    destroy.set_defaults(func=vm_destroy)
    record = commands.add_parser("received", help="record the sha256 of secrets from the environment")
    record.add_argument("--dir", required=True, help="the lab's state directory")
    record.add_argument("pairs", nargs="+", metavar="NAME=ENV_VAR")
    record.set_defaults(func=received)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except PipelineError as exc:
        print(f"pipeline-lab {args.command}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # the tool that ran it was interrupted
        print(f"pipeline-lab {args.command}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
