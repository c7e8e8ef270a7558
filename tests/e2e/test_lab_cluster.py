"""The lab's Proxmox as a cluster (issue 24), through the pipeline's own Proxmox client and the lab's pipeline-lab:
three nodes, local and shared storage, clones refused across nodes the way Proxmox refuses them, copies of a
template to another node's storage, linked clones, the guest agent's interfaces by MAC, DHCP addresses only the agent
knows, an agent that answers late or never, and config-lock timeouts injected on a share of clones."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from proxpipe.base.errors import PipelineError, ProxmoxError
from proxpipe.domain import placement
from proxpipe.domain.config import Retry
from proxpipe.domain.proxmox import Proxmox, tool_env
from tests.labproject import VENV_BIN, LabProject, answers_ssh, wait_for

pytestmark = pytest.mark.e2e

LOCK_TIMEOUT = "can't lock file '/var/lock/qemu-server/lock-{0}.conf' - got timeout"


class Cluster:
    """A lab project whose lab runs, with the pipeline's client for its API and pipeline-lab."""

    def __init__(self, project: LabProject):
        from proxpipe.engine.pipeline import load_config
        from proxpipe.lab import control

        self.project = project
        env = load_config(project.root / "pipeline.yaml").environment("lab")
        self.cfg = env.proxmox._replace(ca_file=control.ca_file(env), retry=Retry(6, 60))
        self.notes: list[str] = []

    def client(self, attempts: int = 6, **kwargs) -> Proxmox:
        self.notes = []
        return Proxmox(self.cfg._replace(retry=Retry(attempts, 60)), notify=self.notes.append, prefer_light=True,
                       **kwargs)

    def lab(self, *args: str) -> subprocess.CompletedProcess:
        env = self.project.environ(tool_env(self.cfg))
        return subprocess.run([str(VENV_BIN / "pipeline-lab"), *args], env=env, capture_output=True, text=True,
                              timeout=120)

    def vm_create(self, vmid: int, template: int, *args: str) -> subprocess.CompletedProcess:
        return self.lab("vm-create", "--template", str(template), "--vmid", str(vmid), "--name", f"vm-{vmid}", *args)

    def address(self, n: int) -> str:
        return f"{self.project.block}.{n}"

    def state(self) -> dict:
        return self.project.admin("state")

    def call(self, method: str, *args, **kwargs) -> None:
        self.project.admin("call", {"method": method, "args": list(args), "kwargs": kwargs})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    project = LabProject(tmp_path_factory.mktemp("cluster") / "project")
    project.ok("doctor")  # starts the lab's API
    yield Cluster(project)
    project.stop()


def vm(cluster, vmid):
    return next((v for v in cluster.state()["vms"] if v["vmid"] == vmid), None)


def agent_address(pve, vmid, node="pve1"):
    """The address the VM's agent reports, once it answers (the lab's agent starts with the VM's next tick)."""
    found = []
    wait_for(lambda: found.append(pve.agent_ipv4(vmid, node)) or found[-1] is not None, f"the agent of VM {vmid}",
             timeout=30)
    return found[-1]


# ----------------------------------------------------------------------------- nodes and storages


def test_three_nodes_local_and_shared_storage_and_the_base_template_on_pve1(cluster):
    pve = cluster.client()
    assert [(n.name, n.online) for n in pve.nodes()] == [("pve1", True), ("pve2", True), ("pve3", True)]
    storages = {s.name: s for s in pve.storages()}
    assert {name for name, s in storages.items() if s.images} == {"local-pve1", "local-pve2", "shared"}
    assert not storages["local-pve1"].shared and storages["local-pve1"].nodes == {"pve1"}
    assert not storages["local-pve2"].shared and storages["local-pve2"].nodes == {"pve2"}
    assert storages["shared"].shared and pve.cluster().enabled_nodes(storages["shared"]) == ["pve1", "pve2", "pve3"]
    base = pve.template_location(9000)
    assert base.node == "pve1" and base.template and base.disks == (("scsi0", "local-pve1"),)
    assert pve.template_location(9999) is None


def test_a_clone_onto_another_node_from_local_storage_fails_as_proxmox_fails(cluster):
    result = cluster.vm_create(301, 9000, "--address", cluster.address(31), "--node", "pve2")
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and lines == [
        f"pipeline-lab vm-create: Proxmox API {cluster.cfg.url} POST /nodes/pve1/qemu/9000/clone failed: HTTP 500: "
        "can't clone VM to node 'pve2' (VM uses local storage)"]  # refused at once: no retry
    result = cluster.vm_create(301, 9000, "--address", cluster.address(31), "--node", "pve2", "--storage", "shared")
    assert result.returncode == 1 and "(VM uses local storage)" in result.stderr  # the source's disks decide
    result = cluster.vm_create(301, 9000, "--address", cluster.address(31), "--node", "pve2", "--storage",
                               "local-pve2")
    assert result.returncode == 1 and "storage 'local-pve2' is not available on node 'pve1'" in result.stderr
    assert vm(cluster, 301) is None
    pve = cluster.client()
    assert placement.problems(pve.cluster(), 9000, pve.template_location(9000), ["pve1", "pve2"]) == [
        "template 9000 is on pve1's local storage local-pve1; VMs on pve2 cannot clone it: put it on shared storage "
        "(enabled on pve2), or copy it to pve2 with the build stage's nodes: [pve1, pve2] (or replicate: auto)"]


def test_a_template_copied_to_another_nodes_storage_is_cloned_there(cluster):
    pve = cluster.client()
    pve.copy_template(9000, 9150, "pve2", "local-pve2", "golden-pve2")
    copy = pve.template_location(9150)
    assert copy.node == "pve2" and copy.template and copy.disks == (("scsi0", "local-pve2"),)
    assert placement.problems(pve.cluster(), 9150, copy, ["pve2"]) == []
    volumes = cluster.state()["storages"]["local-pve2"]["volumes"]
    assert "base-9150-disk-0" in volumes and not any("9150" in v for v in cluster.state()["storages"]["local-pve1"]
                                                     ["volumes"])
    result = cluster.vm_create(302, 9150, "--address", cluster.address(32), "--node", "pve2")
    assert result.returncode == 0, result.stderr
    made = vm(cluster, 302)
    assert made["node"] == "pve2" and made["config"]["scsi0"].startswith("local-pve2:vm-302-disk-0")
    assert made["status"] == "running" and "cloned from 9150" in made["config"]["description"]


def test_a_template_copied_to_shared_storage_reaches_every_node(cluster):
    pve = cluster.client()
    pve.copy_template(9000, 9151, "pve3", "shared", "golden-shared")
    copy = pve.template_location(9151)
    assert copy.node == "pve3" and copy.disks == (("scsi0", "shared"),)
    assert placement.problems(pve.cluster(), 9151, copy, ["pve1", "pve2", "pve3"]) == []
    result = cluster.vm_create(303, 9151, "--address", cluster.address(33), "--node", "pve1")
    assert result.returncode == 0, result.stderr
    made = vm(cluster, 303)
    assert made["node"] == "pve1" and made["config"]["scsi0"].startswith("shared:")


def test_a_copy_that_cannot_be_made_is_one_line_and_leaves_nothing(cluster):
    pve = cluster.client()
    with pytest.raises(PipelineError) as caught:
        pve.copy_template(9000, 9152, "pve2", "local-pve1", "nope")
    assert str(caught.value).startswith("storage local-pve1 is not enabled on pve2")
    with pytest.raises(PipelineError, match="VMID 9000 is already in use"):
        pve.copy_template(9000, 9000, "pve2", "local-pve2", "nope")
    cluster.call("set_node_offline", "pve3")
    try:
        with pytest.raises(PipelineError) as caught:
            pve.copy_template(9000, 9152, "pve3", "shared", "nope")
        assert str(caught.value) == ("node pve3 is offline: template 9000 cannot be copied to pve3: bring pve3 back "
                                     "online")
        assert pve.cluster().node("pve3").online is False
        assert placement.problems(pve.cluster(), 9000, pve.template_location(9000), ["pve3"])[0].startswith(
            "node pve3 is offline: VMs on pve3 cannot be cloned from template 9000")
    finally:
        cluster.call("set_node_offline", "pve3", offline=False)
    assert vm(cluster, 9152) is None and cluster.client().nodes()[2].online


def test_a_failed_migration_deletes_the_half_made_copy(cluster):
    cluster.call("fail", "POST", "/nodes/pve1/qemu/9153/migrate", 500, "can't migrate VM 9153: migration aborted",
                 times=1)
    pve = cluster.client()
    with pytest.raises(PipelineError) as caught:
        pve.copy_template(9000, 9153, "pve2", "local-pve2", "half")
    assert str(caught.value).startswith("copying template 9000 to pve2: Proxmox API") and "migration aborted" in str(
        caught.value)
    assert vm(cluster, 9153) is None


# ----------------------------------------------------------------------------- linked clones


def test_a_linked_clone_names_its_base_and_keeps_it(cluster):
    pve = cluster.client()
    pve.copy_template(9000, 9160, "pve2", "local-pve2", "golden-linked")
    result = cluster.vm_create(304, 9160, "--address", cluster.address(34), "--node", "pve2", "--linked")
    assert result.returncode == 0, result.stderr
    assert vm(cluster, 304)["config"]["scsi0"].startswith("local-pve2:base-9160-disk-0/vm-304-disk-0")
    bases = pve.linked_clone_bases()
    assert bases[304] == {9160} and bases[302] == frozenset() and 9160 not in bases  # templates are not listed
    assert pve.linked_clone_bases([304]) == {304: {9160}}
    with pytest.raises(ProxmoxError) as caught:
        pve.delete_vm(9160, "pve2")
    assert str(caught.value) == ("Proxmox task DELETE /nodes/pve2/qemu/9160 ended in TASK ERROR: base volume "
                                 "'base-9160-disk-0' is still in use by linked clones")
    assert vm(cluster, 9160)["template"]
    assert cluster.lab("vm-destroy", "--vmid", "304").returncode == 0
    pve.delete_vm(9160, "pve2")
    assert vm(cluster, 9160) is None


def test_a_linked_clone_of_a_template_on_local_storage_stays_on_its_node(cluster):
    result = cluster.vm_create(305, 9000, "--address", cluster.address(35), "--node", "pve2", "--linked")
    assert result.returncode == 1 and "(VM uses local storage)" in result.stderr


# ----------------------------------------------------------------------------- the guest agent


def test_the_agent_reports_the_address_on_the_interface_with_the_vms_mac(cluster):
    assert cluster.vm_create(306, 9000, "--address", cluster.address(36)).returncode == 0
    pve = cluster.client()
    assert agent_address(pve, 306) == cluster.address(36)
    config = pve.vm_config(306, "pve1")
    raw = pve.api.nodes("pve1").qemu(306).agent("network-get-interfaces").get()["result"]
    names = [iface["name"] for iface in raw]
    assert names == ["lo", "docker0", "eth0"]
    eth0 = raw[2]
    assert eth0["hardware-address"] == config["net0"].split(",")[0].split("=")[1].lower()
    assert [a["ip-address"] for a in raw[1]["ip-addresses"]] == ["172.17.0.1"]
    assert pve.agent_ipv4(306, "pve1") == cluster.address(36)
    assert pve.agent_ipv4(306, "pve1", eth0["hardware-address"].upper()) == cluster.address(36)
    assert pve.agent_ipv4(306, "pve1", raw[1]["hardware-address"]) == "172.17.0.1"  # the MAC decides
    assert pve.agent_ipv4(306, "pve1", "00:11:22:33:44:55") is None


def test_a_vm_without_a_static_address_gets_one_only_the_agent_knows(cluster):
    assert cluster.vm_create(307, 9000, "--address", "dhcp").returncode == 0
    pve = cluster.client()
    assert pve.vm_config(307, "pve1")["ipconfig0"] == "ip=dhcp"
    leased = agent_address(pve, 307)
    assert leased.startswith(f"{cluster.project.block}.") and int(leased.rsplit(".", 1)[1]) >= 100
    assert cluster.state()["leases"]["307"] == leased
    wait_for(lambda: answers_ssh(leased), f"the sshd of VM 307 at {leased}", timeout=30)
    assert cluster.vm_create(308, 9000, "--address", "dhcp").returncode == 0
    assert agent_address(pve, 308) != leased  # one lease each


def test_an_agent_that_answers_late_or_never(cluster):
    pve = cluster.client()
    assert cluster.vm_create(309, 9000, "--address", cluster.address(39), "--agent-delay", "600").returncode == 0
    assert cluster.vm_create(310, 9000, "--address", cluster.address(40), "--agent-delay", "-1").returncode == 0
    assert cluster.vm_create(311, 9000, "--address", cluster.address(41), "--agent-delay", "1").returncode == 0
    assert agent_address(pve, 311) == cluster.address(41)  # a second after it started
    assert pve.agent_ipv4(309, "pve1") is None and pve.agent_ipv4(310, "pve1") is None  # started before it
    assert pve.retries == 0  # "not running" is an answer, not a fault to retry
    cluster.project.admin("vm", {"vmid": 309, "set": {"agent_delay": 0}})
    assert agent_address(pve, 309) == cluster.address(39)
    cluster.project.admin("vm", {"vmid": 309, "set": {"agent_hangs": True}})  # running, but not answering
    assert pve.agent_ipv4(309, "pve1") is None
    wait_for(lambda: answers_ssh(cluster.address(40)), "the sshd of VM 310", timeout=30)  # the guest runs
    assert pve.agent_ipv4(310, "pve1") is None  # but its agent never does


def test_the_agent_of_a_vm_that_does_not_exist_is_an_error(cluster):
    with pytest.raises(ProxmoxError, match="does not exist"):
        cluster.client().agent_ipv4(399, "pve1", "bc:24:11:00:00:01")


# ----------------------------------------------------------------------------- clone contention


def lock_failures(cluster, **setting):
    cluster.project.admin("settings", {"clone_lock_failures": setting})


def test_clone_lock_timeouts_are_retried_and_counted(cluster):
    lock_failures(cluster, rate=0.5, seed=4)
    try:
        pve = cluster.client(attempts=10)
        pve.copy_template(9000, 9170, "pve2", "local-pve2", "contended")
        for vmid in (9171, 9172, 9173):
            pve.copy_template(9000, vmid, "pve1", "local-pve1", "contended")
        injected = cluster.state()["clone_lock_failures"]
        assert injected["rate"] == 0.5 and injected["count"] > 0
        assert pve.lock_retries == injected["count"] == pve.retries
        assert sum(LOCK_TIMEOUT.format(9000) in note for note in cluster.notes) == injected["count"]
    finally:
        lock_failures(cluster)


@pytest.mark.parametrize(("mode", "message"), [("task", "ended in TASK ERROR: " + LOCK_TIMEOUT.format(9000)),
                                               ("http", "HTTP 500: " + LOCK_TIMEOUT.format(9000)),
                                               ("locked", "HTTP 500: VM is locked (clone)")])
def test_every_clone_failing_on_the_lock_ends_in_one_line(cluster, mode, message):
    lock_failures(cluster, rate=1.0, mode=mode)
    try:
        pve = cluster.client(attempts=2)
        with pytest.raises(ProxmoxError) as caught:
            pve.copy_template(9000, 9180, "pve1", "local-pve1", "never")
        assert str(caught.value).endswith(message) and "\n" not in str(caught.value)
        assert pve.lock_retries == 1 and cluster.state()["clone_lock_failures"]["count"] == 2
        assert vm(cluster, 9180) is None
    finally:
        lock_failures(cluster)


def test_parallel_clones_ride_out_lock_timeouts_or_fail_like_a_provider(cluster):
    lock_failures(cluster, rate=0.3, seed=1)
    try:
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda n: cluster.vm_create(320 + n, 9000, "--address", cluster.address(60 + n)),
                                    range(10)))
        assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results]
        retried = sum(r.stdout.count(f"{LOCK_TIMEOUT.format(9000)}; retrying in") for r in results)
        assert retried == cluster.state()["clone_lock_failures"]["count"] > 0
        assert all(vm(cluster, 320 + n)["status"] == "running" for n in range(10))

        lock_failures(cluster, rate=1.0)
        result = cluster.vm_create(330, 9000, "--address", cluster.address(70), "--no-lock-retry")
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            f"pipeline-lab vm-create: Proxmox task POST /nodes/pve1/qemu/9000/clone ended in TASK ERROR: "
            f"{LOCK_TIMEOUT.format(9000)}"]
        assert cluster.state()["clone_lock_failures"]["count"] == 1
    finally:
        lock_failures(cluster)
    for n in range(10):
        assert cluster.lab("vm-destroy", "--vmid", str(320 + n)).returncode == 0


def test_bad_clone_lock_settings_are_refused(cluster):
    with pytest.raises(PipelineError, match="rate 2.0 is not between 0 and 1"):
        lock_failures(cluster, rate=2)
    with pytest.raises(PipelineError, match="mode 'sometimes'"):
        lock_failures(cluster, rate=0.1, mode="sometimes")


# ----------------------------------------------------------------------------- persistence


def test_the_cluster_survives_a_restart_and_an_old_state_file_loads(lab_project):
    project = lab_project()
    project.ok("doctor")
    lab = Cluster(project)
    assert lab.vm_create(201, 9000, "--address", "dhcp").returncode == 0
    leased = agent_address(lab.client(), 201)
    lab.call("set_node_offline", "pve3")
    project.ok("lab-stop")
    project.ok("doctor")
    pve = lab.client()
    assert [n.online for n in pve.nodes()] == [True, True, False]
    assert agent_address(pve, 201) == leased
    assert pve.template_location(9000).disks == (("scsi0", "local-pve1"),)
    assert "vm-201-disk-0" in lab.state()["storages"]["local-pve1"]["volumes"]

    project.ok("lab-stop")
    state_file = project.state / "fake-pve" / "state.json"
    before_cluster = {"vms": json.loads(state_file.read_text())["vms"]}  # what a lab wrote before it had nodes
    state_file.write_text(json.dumps(before_cluster))
    project.ok("doctor")
    pve = lab.client()
    assert [(n.name, n.online) for n in pve.nodes()] == [("pve1", True), ("pve2", True), ("pve3", True)]
    assert {s.name for s in pve.storages()} == {"local", "local-pve1", "local-pve2", "shared"}
    assert pve.vm(201)["status"] == "running" and pve.vm(9000)["template"]
