"""Template drift: the template's config now (GET /nodes/{node}/qemu/{vmid}/config) against its snapshot from build.

The snapshot holds only what a clone inherits and someone may change in the UI: memory, cores, sockets, the disks
(volume and size), the cloud-init drive, each NIC's model, bridge and VLAN tag, and `template: 1`. It leaves out
what changes without anyone changing the template: the config digest, the description, `meta` and `vmgenid`; and
the NICs' MAC addresses, which no clone keeps (Proxmox gives each clone new ones; the template itself never runs),
so a MAC that differs is nothing a VM would get. Values are normalised the way Proxmox reads them: absent keys
are its defaults, `memory` may be "2048" or "current=2048", a size of "20480M" is "20G".
"""

from __future__ import annotations

import re
from typing import Any

from proxpipe.domain.drift import FIELD, DriftItem, differences

SNAPSHOT_VERSION = 1
DEFAULTS = {"memory": 512, "cores": 1, "sockets": 1}  # qemu-server's, for keys the config leaves out
_DISK = re.compile(r"^(ide|sata|scsi|virtio)\d+$")
# PVE::QemuServer::Drive::drive_is_cloudinit
_CLOUDINIT = re.compile(r"[:/](?:vm-\d+-)?cloudinit(?:\.(?:raw|qcow2|vmdk|subvol))?$")
_NIC = re.compile(r"^net\d+$")
_NIC_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
               "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def snapshot(config: dict[str, Any]) -> dict[str, Any]:
    """What to record when the template is built (a small, stable, JSON-ready dict), from its config."""
    disks, cloudinit = {}, None
    for key in sorted(config, key=_natural):
        if not _DISK.match(key):
            continue
        volume, options = _property_string(config[key])
        if _CLOUDINIT.search(volume):
            cloudinit = {"slot": key, "volume": volume}
        elif options.get("media") != "cdrom":  # an ISO in a CD-ROM drive is no disk
            disks[key] = {"volume": volume, "size": _size(options.get("size"))}
    return {"version": SNAPSHOT_VERSION,
            "memory": _memory(config.get("memory")),
            "cores": _int(config.get("cores"), DEFAULTS["cores"]),
            "sockets": _int(config.get("sockets"), DEFAULTS["sockets"]),
            "disks": disks, "cloudinit": cloudinit,
            "nics": {key: _nic(config[key]) for key in sorted(config, key=_natural) if _NIC.match(key)},
            "template": _int(config.get("template"), 0)}


def template_drift(then: dict[str, Any], config: dict[str, Any] | None, vmid: int) -> list[DriftItem]:
    """FIELD items for what differs between the build's snapshot (then) and the template's config now (None: the
    VM is gone): one per field ("memory", "cores", "sockets", "template"), disk or NIC slot ("scsi0", "net0") and
    "cloud-init drive", each with its changes."""
    if config is None:
        return [DriftItem(FIELD, "template", f"VM {vmid} no longer exists", ())]
    now = snapshot(config)
    items = []
    for name in ("template", "memory", "cores", "sockets"):
        if then.get(name) != now[name]:
            summary = "no longer a template" if name == "template" else "changed since the build"
            items.append(DriftItem(FIELD, name, summary, tuple(differences(then.get(name), now[name], name))))
    for group in ("disks", "nics"):
        before, after = then.get(group) or {}, now[group]
        for slot in sorted(set(before) | set(after), key=_natural):
            changes = differences(before.get(slot), after.get(slot), slot)
            if changes:
                items.append(DriftItem(FIELD, slot, _what(before.get(slot), after.get(slot)), tuple(changes)))
    changes = differences(then.get("cloudinit"), now["cloudinit"], "cloudinit")
    if changes:
        items.append(DriftItem(FIELD, "cloud-init drive", _what(then.get("cloudinit"), now["cloudinit"]),
                               tuple(changes)))
    return items


def _what(before: Any, after: Any) -> str:
    if before is None:
        return "added since the build"
    return "removed since the build" if after is None else "changed since the build"


def _property_string(value: Any) -> tuple[str, dict[str, str]]:
    """(first value, {key: value}) of a Proxmox property string such as "local-lvm:vm-9000-disk-0,size=20G" (the
    first value may also be given as file=...)."""
    first, options = "", {}
    for index, part in enumerate(str(value).split(",")):
        key, sep, item = part.partition("=")
        if sep:
            options[key.strip()] = item.strip()
        elif index == 0:
            first = part.strip()
    return first or options.pop("file", ""), options


def _memory(value: Any) -> int:
    """Memory in MiB: PVE 8 writes `memory` as a property string ("2048" or "current=2048")."""
    if value is None or value == "":
        return DEFAULTS["memory"]
    first, options = _property_string(value)
    return _int(options.get("current", first), DEFAULTS["memory"])


def _size(value: str | None) -> str | None:
    """A disk size in Proxmox's notation, in its largest whole unit: "20480M" and "20G" are both "20G"."""
    if not value:
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", value.strip().upper())
    if found is None:
        return value
    size = int(float(found.group(1)) * _UNITS.get(found.group(2), 1))
    for unit in "TGMK":
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


def _nic(value: Any) -> dict[str, Any]:
    """model, bridge and VLAN tag of a NIC ("virtio=BC:24:11:2E:9B:4F,bridge=vmbr0,tag=10"); not its MAC."""
    model, options = None, {}
    for part in str(value).split(","):
        key, _, item = part.partition("=")
        if key in _NIC_MODELS:
            model = key
        else:
            options[key] = item
    tag = options.get("tag")
    return {"model": model or options.get("model"), "bridge": options.get("bridge"),
            "tag": int(tag) if tag and tag.isdigit() else tag}


def _int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _natural(key: str) -> tuple[str, int]:
    """ide0, ide1, scsi2, scsi10."""
    found = re.fullmatch(r"(\D+)(\d+)", key)
    return (found.group(1), int(found.group(2))) if found else (key, 0)
