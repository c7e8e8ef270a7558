"""What a lab VM's guest shows the network and its guest agent: its address, and the agent's answers.

* The address: a static one from the VM's ipconfig0 (ip=127.x.y.z/8, what cloud-init would set), or, with
  ip=dhcp, a lease from the lab's pool (its loopback block from .100 up), which only the guest agent reports.
* The agent's network-get-interfaces: lo, a docker0 bridge with an address of its own, and the interface whose
  MAC is the VM's net0 with the VM's address (after a link-local IPv6 one): a reader must pick by MAC.
* Delays from the VM's description (as cloud-init user data would set them): sshd_delay=N and agent_delay=N,
  the seconds after power-on until the sshd or the agent is up; -1: never.
"""

from __future__ import annotations

import re

_IP = re.compile(r"(?:^|,)ip=(127\.\d+\.\d+\.\d+)")
_DHCP = re.compile(r"(?:^|,)ip=dhcp\b")
_MAC = re.compile(r"(?i)\b([0-9a-f]{2}(?::[0-9a-f]{2}){5})\b")
POOL = range(100, 255)  # the host part of DHCP addresses in the lab's block


def static_address(config: dict) -> str | None:
    found = _IP.search(str(config.get("ipconfig0", "")))
    return found.group(1) if found else None


def wants_dhcp(config: dict) -> bool:
    return bool(_DHCP.search(str(config.get("ipconfig0", ""))))


def delay(config: dict, name: str) -> float:
    """A `name=N` delay of the VM's description; 0 when it has none."""
    found = re.search(rf"\b{name}=(-?\d+(?:\.\d+)?)", str(config.get("description", "")))
    return float(found.group(1)) if found else 0.0


def agent_enabled(config: dict) -> bool:
    """The VM's `agent` option is on (1, or enabled=1)."""
    first = str(config.get("agent", "0")).split(",")[0]
    return first.partition("=")[2] == "1" if first.startswith("enabled=") else first == "1"


def mac_of(config: dict) -> str:
    found = _MAC.search(str(config.get("net0", "")))
    return found.group(1).lower() if found else "bc:24:11:00:10:01"


def interfaces(address: str, mac: str, vmid: int) -> list[dict]:
    """network-get-interfaces as qemu-guest-agent answers it on a host that also runs Docker."""
    low = vmid & 0xFF
    return [{"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                              {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]},
            {"name": "docker0", "hardware-address": f"02:42:ac:11:00:{low:02x}",
             "ip-addresses": [{"ip-address": "172.17.0.1", "ip-address-type": "ipv4", "prefix": 16}]},
            {"name": "eth0", "hardware-address": mac,
             "ip-addresses": [{"ip-address": f"fe80::be24:11ff:fe00:{low:x}", "ip-address-type": "ipv6",
                               "prefix": 64},
                              {"ip-address": address, "ip-address-type": "ipv4", "prefix": 8}]}]


class Leases:
    """The lab's DHCP server: one address per VM from the pool, kept while the VM exists (across restarts)."""

    def __init__(self, block: str, leases: dict | None = None):
        self.block = block  # "127.a.b"
        self.by_vm: dict[int, str] = {int(vmid): address for vmid, address in (leases or {}).items()}

    def address(self, vmid: int, taken: set[str]) -> str | None:
        """vmid's address: its lease, or a new one not in `taken` (the static addresses); None when the pool is
        exhausted."""
        if vmid in self.by_vm:
            return self.by_vm[vmid]
        used = taken | set(self.by_vm.values())
        free = next((f"{self.block}.{n}" for n in POOL if f"{self.block}.{n}" not in used), None)
        if free is not None:
            self.by_vm[vmid] = free
        return free

    def keep(self, vmids: set[int]) -> None:
        """Forget the leases of VMs that no longer exist."""
        self.by_vm = {vmid: address for vmid, address in self.by_vm.items() if vmid in vmids}

    def to_json(self) -> dict[str, str]:
        return {str(vmid): address for vmid, address in sorted(self.by_vm.items())}
