"""What a Proxmox VE cluster says about itself, as plain values: its nodes, its storages, where a template's
disks live, which VMs are linked clones of which template, and which guest-agent interface holds a VM's address.

Pure: the functions here read API answers (GET /nodes, GET /storage, a VM's config, the guest agent's
network-get-interfaces); proxpipe.domain.proxmox asks, proxpipe.domain.placement judges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

# Storage types Proxmox treats as shared whatever their `shared` flag says (pve-storage's shared plugin types).
SHARED_TYPES = frozenset({"nfs", "cifs", "glusterfs", "cephfs", "rbd", "iscsi", "iscsidirect", "zfs", "drbd", "pbs"})
# The config keys of drives (qemu-server's drive names).
_DRIVE = re.compile(r"^(ide[0-3]|sata[0-5]|scsi(?:[0-9]|[12][0-9]|30)|virtio(?:[0-9]|1[0-5])|efidisk0|tpmstate0)$")
# A linked clone's volume names its base: local-lvm:base-9100-disk-0/vm-201-disk-0 (block storages),
# local:9100/base-9100-disk-0.qcow2/201/vm-201-disk-0.qcow2 (directory storages).
_LINKED = re.compile(r"(?:^|/)base-(\d+)-disk-\d+[^/]*/(?:\d+/)?vm-\d+-disk-")
_MAC = re.compile(r"(?i)\b([0-9a-f]{2}(?::[0-9a-f]{2}){5})\b")


class Node(NamedTuple):
    name: str
    online: bool


class Storage(NamedTuple):
    """A storage of storage.cfg. nodes: the nodes it is restricted to, or None for every node."""

    name: str
    type: str
    shared: bool
    nodes: frozenset[str] | None
    content: frozenset[str]
    disabled: bool = False

    def enabled_on(self, node: str) -> bool:
        """PVE's storage_check_enabled: not disabled, and configured for the node."""
        return not self.disabled and (self.nodes is None or node in self.nodes)

    @property
    def images(self) -> bool:
        """It can hold VM disks."""
        return "images" in self.content


class Cluster(NamedTuple):
    nodes: tuple[Node, ...]
    storages: tuple[Storage, ...]

    def node(self, name: str) -> Node | None:
        return next((node for node in self.nodes if node.name == name), None)

    def storage(self, name: str) -> Storage | None:
        return next((store for store in self.storages if store.name == name), None)

    def enabled_nodes(self, store: Storage) -> list[str]:
        return sorted(node.name for node in self.nodes if store.enabled_on(node.name))


class TemplateLocation(NamedTuple):
    """Where a VM (normally a template) is: its node, and the storage of each of its drives (CD-ROMs with an ISO
    and cloud-init drives included: Proxmox counts them when it decides whether a clone may go to another node).
    disks is empty when the node did not answer."""

    vmid: int
    node: str
    name: str
    template: bool
    disks: tuple[tuple[str, str], ...]  # (drive key, storage id), in drive order

    @property
    def storages(self) -> list[str]:
        return sorted({storage for _key, storage in self.disks})


def _split(text: object) -> frozenset[str]:
    return frozenset(item for item in re.split(r"[\s,;]+", str(text or "")) if item)


def parse_nodes(answer: Iterable[Mapping]) -> tuple[Node, ...]:
    """GET /nodes."""
    return tuple(sorted((Node(str(item["node"]), item.get("status") == "online") for item in answer),
                        key=lambda node: node.name))


def parse_storages(answer: Iterable[Mapping]) -> tuple[Storage, ...]:
    """GET /storage (storage.cfg: no `nodes` option means every node)."""
    found = []
    for item in answer:
        kind = str(item.get("type", "dir"))
        nodes = _split(item.get("nodes"))
        found.append(Storage(str(item["storage"]), kind, bool(int(item.get("shared") or 0)) or kind in SHARED_TYPES,
                             nodes or None, _split(item.get("content")), bool(int(item.get("disable") or 0))))
    return tuple(sorted(found, key=lambda store: store.name))


def drive_volumes(config: Mapping) -> list[tuple[str, str]]:
    """(drive key, volume id) of a VM config's drives that live on a storage, in drive order: not an empty CD-ROM
    drive (none, cdrom) and not a path."""
    found = []
    for key in sorted((k for k in config if _DRIVE.match(k)), key=_natural):
        volume = str(config[key]).split(",")[0]
        if volume.startswith("file="):
            volume = volume[len("file="):]
        if volume in ("", "none", "cdrom") or volume.startswith("/") or ":" not in volume:
            continue
        found.append((key, volume))
    return found


def disk_storages(config: Mapping) -> tuple[tuple[str, str], ...]:
    """(drive key, storage id) of a VM config's drives."""
    return tuple((key, volume.partition(":")[0]) for key, volume in drive_volumes(config))


def linked_bases(config: Mapping) -> frozenset[int]:
    """The templates (VMIDs) a VM's disks are linked clones of; empty for a full clone."""
    return frozenset(int(found.group(1)) for _key, volume in drive_volumes(config)
                     for found in [_LINKED.search(volume.partition(":")[2])] if found)


def net_mac(value: object) -> str | None:
    """The MAC address of a net<N> config value (virtio=BC:24:11:AA:BB:CC,bridge=vmbr0), lower case."""
    found = _MAC.search(str(value or ""))
    return found.group(1).lower() if found else None


def interface_ipv4(interfaces: object, mac: str) -> str | None:
    """The IPv4 address of the interface whose hardware address is mac, from the guest agent's
    network-get-interfaces answer (a list, or {"result": list}); never the loopback interface. None when no
    such interface has one (yet)."""
    if isinstance(interfaces, Mapping):
        interfaces = interfaces.get("result")
    wanted = mac.lower()
    for iface in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(iface, Mapping) or iface.get("name") == "lo":
            continue
        if str(iface.get("hardware-address", "")).lower() != wanted:
            continue
        for address in iface.get("ip-addresses") or []:
            if isinstance(address, Mapping) and address.get("ip-address-type") == "ipv4" and address.get("ip-address"):
                return str(address["ip-address"])
    return None


def _natural(key: str) -> tuple[str, int]:
    found = re.fullmatch(r"(\D+)(\d+)", key)
    return (found.group(1), int(found.group(2))) if found else (key, 0)
