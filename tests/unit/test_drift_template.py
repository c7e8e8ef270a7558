"""Template drift (proxpipe/domain/template_drift.py): the snapshot recorded at build time, compared with the
template's config now, as Proxmox VE 8 returns it from GET /nodes/{node}/qemu/{vmid}/config; and that config read
through the pipeline's own client (Proxmox.vm_config) from fakepve, changed through its API."""

import json

import pytest

from proxpipe.base.secrets import Secret
from proxpipe.domain.config import ProxmoxConfig, Retry
from proxpipe.domain.drift import FIELD, Change, DriftItem
from proxpipe.domain.proxmox import Proxmox
from proxpipe.domain.template_drift import snapshot, template_drift

# A cloud-image template as PVE 8 returns its config: memory as a string, the cloud-init drive on ide2, a MAC in net0.
BUILT = {"agent": "1", "boot": "order=scsi0;net0", "cores": 2, "cpu": "x86-64-v2-AES",
         "description": "built by packer at 2026-01-01", "digest": "5b1c0d3e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
         "ide2": "local-lvm:vm-9000-cloudinit,media=cdrom", "memory": "2048",
         "meta": "creation-qemu=8.1.5,ctime=1767225600", "name": "ubuntu-2404-tmpl",
         "net0": "virtio=BC:24:11:2E:9B:4F,bridge=vmbr0,firewall=1", "ostype": "l26",
         "scsi0": "local-lvm:base-9000-disk-0,discard=on,iothread=1,size=3584M", "scsihw": "virtio-scsi-single",
         "serial0": "socket", "smbios1": "uuid=0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "sockets": 1, "template": 1,
         "vga": "serial0", "vmgenid": "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8"}


def test_the_snapshot_is_small_stable_and_json():
    recorded = snapshot(BUILT)
    assert recorded == {"version": 1, "memory": 2048, "cores": 2, "sockets": 1,
                        "disks": {"scsi0": {"volume": "local-lvm:base-9000-disk-0", "size": "3584M"}},
                        "cloudinit": {"slot": "ide2", "volume": "local-lvm:vm-9000-cloudinit"},
                        "nics": {"net0": {"model": "virtio", "bridge": "vmbr0", "tag": None}}, "template": 1}
    assert json.loads(json.dumps(recorded)) == recorded


def test_an_unchanged_template_is_in_sync_whatever_proxmox_rewrites():
    now = {**BUILT, "digest": "another", "description": "edited notes", "vmgenid": "another",
           "net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1",  # a new MAC reaches no clone
           "memory": "current=2048",  # how PVE 8.1+ may write it
           "scsi0": "local-lvm:base-9000-disk-0,discard=on,iothread=1,size=3.5G"}
    assert template_drift(snapshot(BUILT), now, 9000) == []
    defaults = {key: value for key, value in BUILT.items() if key not in ("cores", "sockets")}
    # a key the config leaves out has Proxmox's default (1 core, 1 socket)
    assert template_drift(snapshot({**BUILT, "cores": 1}), defaults, 9000) == []


def test_memory_cores_and_a_disk_changed_in_the_ui():
    now = {**BUILT, "memory": "4096", "cores": 4, "scsi0": "local-lvm:base-9000-disk-0,discard=on,size=10G"}
    assert template_drift(snapshot(BUILT), now, 9000) == [
        DriftItem(FIELD, "memory", "changed since the build", (Change("memory", 2048, 4096),)),
        DriftItem(FIELD, "cores", "changed since the build", (Change("cores", 2, 4),)),
        DriftItem(FIELD, "scsi0", "changed since the build", (Change("scsi0.size", "3584M", "10G"),))]


def test_disks_added_or_removed_and_the_cloud_init_drive():
    now = {key: value for key, value in BUILT.items() if key != "ide2"}
    now["virtio1"] = "local-lvm:base-9000-disk-1,size=8G"
    items = template_drift(snapshot(BUILT), now, 9000)
    assert [(i.subject, i.summary) for i in items] == [("virtio1", "added since the build"),
                                                       ("cloud-init drive", "removed since the build")]
    assert items[1].changes == (Change("cloudinit", {"slot": "ide2", "volume": "local-lvm:vm-9000-cloudinit"}, None),)
    moved = {**BUILT, "ide2": "none,media=cdrom", "scsi1": "ceph:vm-9000-cloudinit,media=cdrom"}
    (item,) = template_drift(snapshot(BUILT), moved, 9000)
    assert item.changes == (Change("cloudinit.slot", "ide2", "scsi1"),
                            Change("cloudinit.volume", "local-lvm:vm-9000-cloudinit", "ceph:vm-9000-cloudinit"))


def test_a_nic_on_another_bridge_or_vlan():
    now = {**BUILT, "net0": "e1000=BC:24:11:2E:9B:4F,bridge=vmbr1,tag=20"}
    (item,) = template_drift(snapshot(BUILT), now, 9000)
    assert item.subject == "net0" and item.changes == (
        Change("net0.model", "virtio", "e1000"), Change("net0.bridge", "vmbr0", "vmbr1"), Change("net0.tag", None, 20))


def test_no_longer_a_template_or_gone():
    now = {key: value for key, value in BUILT.items() if key != "template"}
    assert template_drift(snapshot(BUILT), now, 9000) == [
        DriftItem(FIELD, "template", "no longer a template", (Change("template", 1, 0),))]
    assert template_drift(snapshot(BUILT), None, 9000) == [DriftItem(FIELD, "template", "VM 9000 no longer exists")]


@pytest.fixture
def client(fakepve, fakepve_cafile):
    fakepve.add_vm(9000, "ubuntu-2404-tmpl", node="pve1", template=True, config={
        key: value for key, value in BUILT.items() if key not in ("digest", "name")})
    cfg = ProxmoxConfig(fakepve.url, "pve1", None, None, "root@pam", Secret("secret", "PW", "test"),
                        fakepve_cafile, True, 10, Retry(1, 5))
    return Proxmox(cfg, notify=lambda text: None)


def test_the_config_through_the_api_and_a_change_made_through_it(client):
    config = client.vm_config(9000)
    assert config["memory"] == "2048" and config["template"] == 1 and "digest" in config
    recorded = snapshot(config)
    assert template_drift(recorded, client.vm_config(9000), 9000) == []
    client.call("PUT config", lambda: client.api.nodes("pve1").qemu(9000).config.put(memory=3072, cores=3))
    assert [(i.subject, i.changes) for i in template_drift(recorded, client.vm_config(9000), 9000)] == [
        ("memory", (Change("memory", 2048, 3072),)), ("cores", (Change("cores", 2, 3),))]
    assert client.vm_config(9999) is None
