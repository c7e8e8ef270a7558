"""Addresses from the guest agent: a VM that got its address by DHCP is known to Terraform only as a VM, so the
provision stage asks the QEMU guest agent of each such VM for the IPv4 address of the interface whose MAC is its
net0's (never the loopback, never a Docker bridge), and waits until every one has answered or the deadline passed.
No fixed sleep: each VM is asked again after a short, growing pause."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError

if TYPE_CHECKING:
    from proxpipe.api import inventory


def from_agents(proxmox, hosts: list[inventory.Host], deadline: float, stage: str) -> dict[str, str]:
    """host name -> the address its VM's agent reports; PipelineError naming the first VM that never told."""
    for host in hosts:
        if host.vm_id is None:
            raise PipelineError(f"{stage}: host {host.name} has no address and no vm_id host variable to ask its "
                                "guest agent with: give the inventory output one of them")
    found: dict[str, str] = {}
    end, delay, told = time.monotonic() + deadline, 0.2, time.monotonic()
    while len(found) < len(hosts):
        for host in hosts:
            if host.name not in found:
                address = proxmox.agent_ipv4(host.vm_id, str(host.vars.get("node") or proxmox.node))
                if address:
                    found[host.name] = address
        if len(found) == len(hosts):
            break
        if time.monotonic() + delay > end:
            late = next(h for h in hosts if h.name not in found)
            raise PipelineError(f"{stage}: the guest agent of VM {late.vm_id} ({late.name}) did not report an IPv4 "
                                f"address for its net0 within {deadline:g}s: check that its template enables the "
                                "agent (agent: 1) and has the qemu-guest-agent package installed and running")
        if time.monotonic() - told > 5:
            console.step(f"waiting for the guest agent of {', '.join(h.name for h in hosts if h.name not in found)}")
            told = time.monotonic()
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)
    return found
