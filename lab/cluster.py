"""The lab's Proxmox VE as a three-node cluster, and where fakepve is more lenient than PVE, PVE's own rules.

The cluster (new labs; an old state.json without nodes or storages gets it too):

* nodes pve1, pve2 and pve3 (a test takes pve3, or any, offline with /_lab/call set_node_offline);
* storages: local-pve1 and local-pve2 (LVM-thin, VM disks, each enabled on its own node only, not shared),
  shared (NFS, VM disks, enabled on every node) and local (every node's directory for ISOs and backups, not
  shared, no VM disks);
* the base template (9000) on pve1, its disk scsi0 on local-pve1, as a real template has.

PVE's rules that fakepve leaves out, from qemu-server's PVE/API2/Qemu.pm and pve-storage's PVE/Storage.pm:

* a clone's `storage` must be enabled on the node the clone runs on and on its `target` ("storage 'x' is not
  available on node 'pve2'"), before the check for shared storage fakepve makes;
* a clone to another node needs every drive of the source on shared storage (check_storage_access_clone):
  "can't clone VM to node 'pve2' (VM uses local storage)"; fakepve moves it whatever its disks;
* a linked clone on a block storage (LVM-thin, RBD, ZFS) is named after its base,
  local-pve1:base-9100-disk-0/vm-201-disk-0 (fakepve names it like a full clone's disk);
* a template whose base volume a linked clone still uses cannot be removed: the destroy task fails with
  "base volume 'base-9100-disk-0' is still in use by linked clones" and the template stays as it was;
* a VM starts only where every disk's storage is enabled (a task error, as vm_start's activate_volumes);
* an offline migration (POST .../migrate, which fakepve only answers with a task that does nothing) moves the
  config to the target and the local disks to `targetstorage`; shared disks stay where they are.

Clone contention for tests (/_lab/settings clone_lock_failures: {rate, seed, mode}): that share of clone
requests fails with PVE's config-lock timeout, as the clone task's TASK ERROR (mode task, the default), as the
500 answer of the request (mode http) or as "VM is locked (clone)" (mode locked); /_lab/state counts them.
"""

from __future__ import annotations

import random
import time

from fakepve.model import PveError, TaskError, lock_timeout
from fakepve.qemu import drives_of, join_drive, volume_ref
from fakepve.storage import spec_of

NODES = ("pve1", "pve2", "pve3")
BASE_STORAGE = "local-pve1"
LOCK_MODES = ("task", "http", "locked")
GIB = 1024 ** 3


def default_storages(address: str) -> dict[str, dict]:
    def local(node: str) -> dict:
        return {"type": "lvmthin", "vgname": "pve", "thinpool": "data", "content": "images,rootdir", "nodes": node,
                "active": 1, "files": set()}

    return {"local": {"type": "dir", "path": "/var/lib/vz", "content": "iso,vztmpl,backup", "active": 1,
                      "files": set()},
            "local-pve1": local("pve1"), "local-pve2": local("pve2"),
            "shared": {"type": "nfs", "server": address, "export": "/srv/proxpipe-lab", "path": "/mnt/pve/shared",
                       "content": "images,rootdir", "shared": 1, "active": 1, "files": set()}}


def base_config(vmid: int) -> dict:
    """The base template's config: one disk on pve1's local storage."""
    return {"cores": 1, "memory": 1024, "ostype": "l26", "agent": "1", "template": 1, "scsihw": "virtio-scsi-single",
            "scsi0": f"{BASE_STORAGE}:base-{vmid}-disk-0,size=8G", "boot": "order=scsi0",
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "description": "lab base image"}


class ClusterRules:
    """Mixin of the lab's FakePve: PVE's rules for clones, migrations, removals and starts across nodes."""

    def setup_cluster(self, address: str) -> None:
        self.nodes = {name: {"online": True} for name in NODES}
        self.storages = default_storages(address)
        self.clone_lock_failures: dict = {}
        self.clone_lock_count = 0
        self._clone_random = random.Random()

    def add_base_template(self, vmid: int, name: str) -> None:
        self.add_vm(vmid, name, status="stopped", template=True, config=base_config(vmid))
        self.storages[BASE_STORAGE].setdefault("volumes", {})[f"base-{vmid}-disk-0"] = {
            "content": "images", "format": "raw", "size": 8 * GIB, "vmid": vmid, "ctime": int(time.time())}

    # ------------------------------------------------------------------ fault injection

    def set_clone_lock_failures(self, setting: dict | None) -> None:
        """{rate: 0..1, seed: int or None, mode: task|http|locked}; None or {} ends it. Resets the count."""
        setting = dict(setting or {})
        if setting:
            rate = float(setting.get("rate", 0))
            if not 0 <= rate <= 1:
                raise ValueError(f"clone_lock_failures rate {rate} is not between 0 and 1")
            if setting.setdefault("mode", "task") not in LOCK_MODES:
                raise ValueError(f"clone_lock_failures mode {setting['mode']!r} is not one of {list(LOCK_MODES)}")
            setting["rate"] = rate
            self._clone_random.seed(setting.get("seed"))
        self.clone_lock_failures, self.clone_lock_count = setting, 0

    def _lock_failure(self) -> str | None:
        """The mode of an injected lock failure for this clone request, or None."""
        setting = self.clone_lock_failures
        if not setting or self._clone_random.random() >= setting["rate"]:
            return None
        self.clone_lock_count += 1
        return setting["mode"]

    # ------------------------------------------------------------------ clone

    async def _qm_clone(self, v, user):
        node, vmid, target, storage = v["node"], int(v["vmid"]), v.get("target"), v.get("storage")
        if target in (node, "localhost"):
            target = None
        if storage and storage in self.storages:
            self._check_enabled(storage, node)
            if target in self.nodes:
                self._check_enabled(storage, target)
        src = self.vm(vmid)
        if target in self.nodes and src is not None and src.node == node and not self._shared_guest(src, v):
            raise PveError(500, f"can't clone VM to node '{target}' (VM uses local storage)")
        mode = self._lock_failure()
        if mode == "http":
            raise PveError(500, lock_timeout(vmid))
        if mode == "locked":
            raise PveError(500, "VM is locked (clone)")
        if mode == "task":
            async def locked():
                raise TaskError(lock_timeout(vmid))
            return await self.task(node, "qmclone", vmid, user, locked,
                                   log=[f"creating a clone of VM {vmid} with ID {v['newid']}"])
        return await super()._qm_clone(v, user)

    def _shared_guest(self, vm, v) -> bool:
        """check_storage_access_clone's answer: every drive (an ISO or cloud-init drive too) on shared storage."""
        config = vm.snapshots.get(v["snapname"], vm.config) if v.get("snapname") else vm.config
        for _key, volume, _props in drives_of(config):
            sid = volume_ref(volume)[0]
            if volume in ("none", "cdrom") or sid is None:
                continue
            if not self.storages.get(sid, {}).get("shared"):
                return False
        return True

    def _qm_alloc(self, sid, vmid, fmt, size, linked_from=None):
        volid, fmt = super()._qm_alloc(sid, vmid, fmt, size, linked_from)
        store = self.storages[sid]
        if linked_from and not (spec_of(store) or {}).get("files"):
            name = volume_ref(volid)[1]
            linked = f"{linked_from.split('/')[-1]}/{name}"
            store["volumes"][linked] = store["volumes"].pop(name)
            volid = f"{sid}:{linked}"
        return volid, fmt

    # ------------------------------------------------------------------ destroy, start

    def linked_clones_of(self, vm) -> tuple[str, list[int]]:
        """(a base volume of template vm, the VMs whose disks are linked clones of it); ("", []) when none."""
        for _key, volume, _props in drives_of(vm.config, skip_cdrom=True):
            sid, name = volume_ref(volume)
            if sid is None or not name.split("/")[-1].startswith("base-"):
                continue
            users = sorted(other.vmid for other in self.vms if other is not vm
                           for _k, used, _p in drives_of(other.config) if used.startswith(f"{sid}:{name}/"))
            if users:
                return name, users
        return "", []

    async def _qm_destroy(self, v, user):
        vm = self.find(v["node"], v["vmid"])
        base, users = self.linked_clones_of(vm) if vm.template else ("", [])
        if not users:
            return await super()._qm_destroy(v, user)

        async def refused():
            raise TaskError(f"base volume '{base}' is still in use by linked clones")
        return await self.task(vm.node, "qmdestroy", vm.vmid, user, refused, vm=vm)

    def disk_not_here(self, vm) -> str | None:
        """Why the VM cannot start on its node: a disk on storage not enabled there; None when it can."""
        for _key, volume, _props in drives_of(vm.config):
            sid = volume_ref(volume)[0]
            if sid in self.storages and not self._storage_enabled(sid, vm.node):
                return f"storage '{sid}' is not available on node '{vm.node}'"
        return None

    # ------------------------------------------------------------------ migrate

    def _routes_lab_cluster(self):
        return [("POST", "/nodes/{node}/qemu/{vmid}/migrate", self._qm_migrate)]

    async def _qm_migrate(self, v, user):
        """An offline migration (qemu-server's migrate_vm and QemuMigrate's phase 1)."""
        vm = self.find(v["node"], v["vmid"])
        target = v["target"]
        if target == vm.node:
            raise PveError(500, "target is local node.")
        if target not in self.nodes:
            raise PveError(500, f"no such cluster node '{target}'")
        self.need_quorum()
        if vm.status == "running":
            raise PveError(500, "can't migrate running VM without --online")
        self._check_lock(vm)
        mapping = _storage_map(v.get("targetstorage"))

        async def body():
            if not self.nodes[target].get("online", True):
                raise TaskError("migration aborted (duration 00:00:00): Can't connect to destination address using "
                                "public key")
            moves = self._migration_moves(vm, target, mapping)
            self._qm_lock(vm, "migrate")
            try:
                for key, volume, props, dest in moves:
                    vol = self._volumes(volume_ref(volume)[0]).get(volume_ref(volume)[1]) or {}
                    volid, _fmt = self._qm_alloc(dest, vm.vmid, vol.get("format"), int(vol.get("size") or 0))
                    if vm.template:
                        volid = self._qm_rename_volume(volid)
                    self._qm_free(volume)
                    vm.config[key] = join_drive(volid, props)
                vm.node = target
            finally:
                self._qm_lock(vm, None)
            return f"migration finished successfully (duration 00:00:0{len(moves)})"
        return await self.task(vm.node, "qmigrate", vm.vmid, user, body, vm=vm,
                               log=[f"starting migration of VM {vm.vmid} to node '{target}'"])

    def _migration_moves(self, vm, target: str, mapping: dict[str, str]) -> list[tuple]:
        """(drive key, volume, options, destination storage) of the local disks; a TaskError for a disk that
        cannot be reached or placed on the target."""
        moves = []
        for key, volume, props in drives_of(vm.config, skip_cdrom=True):
            sid = volume_ref(volume)[0]
            store = self.storages.get(sid)
            if store is None:
                continue
            if store.get("shared"):
                if not self._storage_enabled(sid, target):
                    raise TaskError(f"storage '{sid}' is not available on node '{target}'")
                continue
            dest = mapping.get(sid, mapping.get("*", sid))
            if dest not in self.storages:
                raise TaskError(f"storage '{dest}' does not exist")
            if not self._storage_enabled(dest, target):
                raise TaskError(f"storage '{dest}' is not available on node '{target}'")
            moves.append((key, volume, props, dest))
        return moves


def _storage_map(text: str | None) -> dict[str, str]:
    """targetstorage: one storage for every disk ("*"), or source:target pairs."""
    found: dict[str, str] = {}
    for item in str(text or "").split(","):
        source, _, dest = item.strip().rpartition(":")
        if dest:
            found[source or "*"] = dest
    return found
