"""proxpipe.domain.cluster reads the cluster's answers (issue 24): nodes, storages, a VM's drives, linked clones, and
the guest agent's interfaces; and proxpipe.domain.proxmox retries config-lock answers and counts its retries."""

import pytest

from proxpipe.base.errors import ProxmoxError
from proxpipe.base.secrets import Secret
from proxpipe.domain import proxmox
from proxpipe.domain.cluster import disk_storages, interface_ipv4, linked_bases, net_mac, parse_nodes, parse_storages
from proxpipe.domain.config import ProxmoxConfig, Retry
from proxpipe.domain.pveapi import HTTPStatus

LOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-9100.conf' - got timeout"


def test_nodes_and_whether_each_is_online():
    answer = [{"node": "pve2", "status": "offline"}, {"node": "pve1", "status": "online", "cpu": 0.1}]
    assert [(n.name, n.online) for n in parse_nodes(answer)] == [("pve1", True), ("pve2", False)]


def test_storages_shared_enabled_nodes_and_content():
    found = {s.name: s for s in parse_storages([
        {"storage": "local-lvm", "type": "lvmthin", "content": "rootdir,images", "nodes": "pve1"},
        {"storage": "nfs", "type": "nfs", "content": "images"},  # NFS is shared without the flag
        {"storage": "dirs", "type": "dir", "content": "images", "shared": 1, "nodes": "pve1,pve2"},
        {"storage": "off", "type": "rbd", "content": "images", "disable": 1},
    ])}
    assert not found["local-lvm"].shared and found["local-lvm"].enabled_on("pve1")
    assert not found["local-lvm"].enabled_on("pve2") and found["local-lvm"].images
    assert found["nfs"].shared and found["nfs"].nodes is None and found["nfs"].enabled_on("pve9")
    assert found["dirs"].shared and found["dirs"].nodes == {"pve1", "pve2"}
    assert found["off"].shared and not found["off"].enabled_on("pve1")


def test_the_storages_of_a_vms_drives():
    config = {"scsi0": "local-lvm:base-9100-disk-0,size=8G", "scsi10": "nfs:9100/vm-9100-disk-1.qcow2,size=1G",
              "ide2": "local:iso/debian.iso,media=cdrom", "ide0": "none,media=cdrom", "ide1": "cdrom,media=cdrom",
              "sata0": "/dev/disk/by-id/ata-X", "efidisk0": "local-lvm:vm-9100-disk-2,size=4M",
              "net0": "virtio=BC:24:11:00:00:01", "description": "scsi0: not a drive"}
    assert disk_storages(config) == (("efidisk0", "local-lvm"), ("ide2", "local"), ("scsi0", "local-lvm"),
                                     ("scsi10", "nfs"))


def test_linked_clone_bases_from_volume_names():
    assert linked_bases({"scsi0": "local-lvm:base-9100-disk-0/vm-201-disk-0,size=8G"}) == {9100}
    assert linked_bases({"virtio0": "local:9100/base-9100-disk-0.qcow2/201/vm-201-disk-0.qcow2"}) == {9100}
    assert linked_bases({"scsi0": "local-lvm:vm-201-disk-0,size=8G"}) == frozenset()  # a full clone
    assert linked_bases({"scsi0": "local-lvm:base-9100-disk-0,size=8G"}) == frozenset()  # the template itself


def test_the_agents_address_is_the_one_of_the_interface_with_the_vms_mac():
    answer = {"result": [
        {"name": "lo", "hardware-address": "bc:24:11:00:00:01",
         "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4"}]},
        {"name": "docker0", "hardware-address": "02:42:ac:11:00:01",
         "ip-addresses": [{"ip-address": "172.17.0.1", "ip-address-type": "ipv4"}]},
        {"name": "ens18", "hardware-address": "bc:24:11:aa:bb:cc",
         "ip-addresses": [{"ip-address": "fe80::1", "ip-address-type": "ipv6"},
                          {"ip-address": "192.0.2.7", "ip-address-type": "ipv4", "prefix": 24}]}]}
    mac = net_mac("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1")
    assert mac == "bc:24:11:aa:bb:cc" and interface_ipv4(answer, mac) == "192.0.2.7"
    assert interface_ipv4(answer["result"], "BC:24:11:AA:BB:CC") == "192.0.2.7"
    assert interface_ipv4(answer, "bc:24:11:00:00:01") is None  # never lo
    assert interface_ipv4(answer, "00:11:22:33:44:55") is None  # no guessing at another interface
    assert interface_ipv4({"result": [{"name": "ens18", "hardware-address": mac, "ip-addresses": []}]}, mac) is None
    assert net_mac("bridge=vmbr0") is None


# ----------------------------------------------------------------------------- retries


def client(**kwargs):
    cfg = ProxmoxConfig("https://pve.example.invalid:8006", "pve1", "root@pam!t", Secret("s", "T", "test"), None, None,
                        None, True, 5, Retry(6, 600))
    return proxmox.Proxmox(cfg, notify=lambda text: None, **kwargs)


def failing(*errors):
    """A call that raises each error once, then answers."""
    pending = list(errors)

    def call():
        if pending:
            raise pending.pop(0)
        return "answer"
    return call


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(proxmox.time, "sleep", lambda seconds: None)


@pytest.mark.parametrize("message", [LOCK_TIMEOUT, "VM is locked (clone)", "VM 9100 is locked (backup)"])
def test_a_config_lock_answer_is_retried_and_counted(message):
    api = client()
    assert api.call("POST clone", failing(HTTPStatus(500, message), HTTPStatus(500, message))) == "answer"
    assert api.retries == 2 and api.lock_retries == 2


def test_other_retries_are_counted_apart_from_lock_retries():
    api = client()
    api.call("GET", failing(HTTPStatus(503, "Service Unavailable"), HTTPStatus(500, "VM is locked (clone)")))
    assert api.retries == 2 and api.lock_retries == 1


@pytest.mark.parametrize("message", ["can't clone VM to node 'pve2' (VM uses local storage)",
                                     "can't clone to non-shared storage 'local-lvm'",
                                     "storage 'local-pve2' is not available on node 'pve1'"])
def test_a_clone_proxmox_refuses_is_not_retried(message):
    api = client()
    with pytest.raises(ProxmoxError) as caught:
        api.call("POST clone", failing(HTTPStatus(500, message)))
    assert str(caught.value).endswith(f"POST clone failed: HTTP 500: {message}") and api.retries == 0


def test_a_task_ending_in_a_lock_timeout_is_started_again(monkeypatch):
    api = client()
    endings = [LOCK_TIMEOUT, "OK"]
    monkeypatch.setattr(api, "_wait", lambda what, upid, timeout: endings.pop(0))
    started = []
    api.task("POST clone", lambda: started.append(1) or "UPID:pve1:1")
    assert len(started) == 2 and api.retries == 1 and api.lock_retries == 1


def test_without_lock_retries_a_lock_timeout_fails_at_once(monkeypatch):
    api = client(retry_locks=False)
    with pytest.raises(ProxmoxError, match="got timeout"):
        api.call("POST clone", failing(HTTPStatus(500, LOCK_TIMEOUT)))
    monkeypatch.setattr(api, "_wait", lambda what, upid, timeout: LOCK_TIMEOUT)
    with pytest.raises(ProxmoxError, match=r"ended in TASK ERROR: can't lock file"):
        api.task("POST clone", lambda: "UPID:pve1:1")
    assert api.retries == 0
    assert api.call("GET", failing(HTTPStatus(503, "Service Unavailable"))) == "answer"  # others still are
