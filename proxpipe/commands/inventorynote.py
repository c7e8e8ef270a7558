"""The inventory output a Terraform root lacks, for `proxpipe init` to show as HCL: an `output` whose value is
jsonencode() of an Ansible inventory of the root's VMs, one group per VM resource, read with python-hcl2.

Each host gets vm_id and node, so that the pipeline can ask the guest agent for an address the output does not
give (ansible_host "dhcp"); a VM with a static cloud-init address gives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from proxpipe.domain import hcl


class VmKind(NamedTuple):
    host: str  # the attribute that names the host
    vm_id: str
    node: str
    address: str | None  # an attribute with the address the provider reports; None: the static one, else dhcp


# The Proxmox providers' VM and container resources: bpg/proxmox, then Telmate/proxmox.
VM_KINDS = {
    "proxmox_virtual_environment_vm": VmKind("name", "vm_id", "node_name", None),
    "proxmox_virtual_environment_container": VmKind("initialization[0].hostname", "vm_id", "node_name", None),
    "proxmox_vm_qemu": VmKind("name", "vmid", "target_node", "default_ipv4_address"),
    "proxmox_lxc": VmKind("hostname", "vmid", "target_node", None),
}
_STATIC = "initialization[0].ip_config[0].ipv4[0].address"  # bpg's cloud-init address, e.g. 10.0.0.5/24


class Vm(NamedTuple):
    type: str
    name: str
    many: bool  # count or for_each: the resource is a list or a map of instances
    static: bool  # it sets a cloud-init IPv4 address


def vm_resources(directory: Path) -> list[Vm]:
    found = []
    for _path, block in hcl.blocks(directory, hcl.TERRAFORM, "resource"):
        for kind, named in (block.items() if isinstance(block, dict) else ()):
            if kind not in VM_KINDS or not isinstance(named, dict):
                continue
            for name, body in named.items():
                body = body if isinstance(body, dict) else {}
                found.append(Vm(kind, name, "count" in body or "for_each" in body, _static_address(body)))
    return found


def _static_address(body: dict) -> bool:
    node: Any = body
    for key in ("initialization", "ip_config", "ipv4"):
        node = node.get(key) if isinstance(node, dict) else None
        node = node[0] if isinstance(node, list) and node else node
    return isinstance(node, dict) and "address" in node


def output_hcl(name: str, vms: list[Vm]) -> list[str]:
    """The output block, formatted as `terraform fmt` leaves it. Without a VM resource: one for a resource to name."""
    groups = [line for vm in vms or [Vm("proxmox_virtual_environment_vm", "NAME", True, True)] for line in _group(vm)]
    return [f'output "{name}" {{',
            '  description = "Ansible inventory of the VMs (proxpipe hands it to the configure stages)"',
            "  value = jsonencode({",
            "    all = {",
            "      children = {",
            *groups,
            "      }",
            "    }",
            "  })",
            "}"]


def _group(vm: Vm) -> list[str]:
    kind = VM_KINDS[vm.type]
    instances = f"{vm.type}.{vm.name}" if vm.many else f"[{vm.type}.{vm.name}]"
    address = (f"vm.{kind.address}" if kind.address else
               f'split("/", vm.{_STATIC})[0]' if vm.static else '"dhcp"')
    return [f"        {vm.name.replace('-', '_')} = {{",
            "          hosts = {",
            f"            for vm in {instances} : vm.{kind.host} => {{",
            f"              ansible_host = {address}",
            f"              vm_id        = vm.{kind.vm_id}",
            f"              node         = vm.{kind.node}",
            "            }",
            "          }",
            "        }"]
