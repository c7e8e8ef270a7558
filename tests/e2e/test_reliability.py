"""Reliability (issue 7) on the real tools in the lab: the lock, SIGKILL in the middle of each stage, Proxmox
faults injected with fakepve's own switches, waiting for SSH, and idempotency. Every wait is bounded."""

import getpass
import json
import signal
import socket
import threading
import time

import pytest

from tests.labproject import stages_run, wait_for

pytestmark = pytest.mark.e2e




def handoffs(project):
    return {name: (project.state / name).read_text() if (project.state / name).exists() else None
            for name in ("template_id.txt", "ansible_inventory.json", "configure.json")}


def faults(project, **settings):
    project.admin("settings", settings)


def call(project, method, *args, **kwargs):
    project.admin("call", {"method": method, "args": list(args), "kwargs": kwargs})


@pytest.fixture
def clean(deployed):
    """Leaves the module's shared lab as it found it: no faults, real time, deployed."""
    yield deployed
    faults(deployed, clear_faults=True, time_scale=0, start_secs=0, ticket_ttl=7200)
    deployed.admin("vm", {"vmid": 9000, "set": {"lock": None}})
    deployed.ok("deploy")


# ----------------------------------------------------------------------------- the lock


def test_a_second_run_fails_at_once_while_others_still_work(lab_project):
    project = lab_project(extra={"environments": {"lab": {"stages": {"provision": {"vars": {
        "sshd_delays": {"jump-01": 8}}}}}}})
    first = project.start("deploy")
    try:
        wait_for(lambda: any(c.startswith("terraform apply") for c in project.tool_calls()), "the first deploy")
        holder = json.loads((project.state / "lock.json").read_text())
        for command in (["deploy"], ["build"], ["configure"], ["rollback", "--stage", "build"], ["destroy"]):
            result = project.doit(*command)
            assert result.returncode == 1, command
            assert (f"environment lab is locked by {holder['user']}@{holder['host']} pid {holder['pid']} "
                    f"(deploy, since {holder['since']})" in result.stderr), result.stderr
        assert project.doit("status").returncode == 0
        assert "locked" not in project.doit("validate").stderr
        assert project.doit("history").returncode == 0
        assert project.doit("docs", "--output", str(project.root / "guides")).returncode == 0
    finally:
        out, err = first.communicate(timeout=180)
    assert first.returncode == 0, out + err  # (the late sshd kept it busy; the wait itself is tested below)


# ----------------------------------------------------------------------------- SIGKILL in each stage


@pytest.mark.parametrize("stage, command, tool", [
    ("build", ["build", "--rebuild"], "packer build"),
    ("provision", ["provision", "--template-id", "9000"], "terraform apply"),
    ("configure", ["configure", "--force"], "ansible-playbook"),
])
def test_sigkill_in_the_middle_of_a_stage(clean, stage, command, tool):
    lab = clean
    before = handoffs(lab)
    faults(lab, time_scale=1)
    call(lab, "slow_network", 0.4)  # every API call takes 0.4 s: the tools are caught in the middle
    lab.reset_calls()
    victim = lab.start(*command)
    wait_for(lambda: any(c.startswith(tool) for c in lab.tool_calls()), tool)
    time.sleep(0.3)  # in the middle: ansible-playbook alone takes a second to start
    assert victim.poll() is None, "the stage finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    faults(lab, clear_faults=True, time_scale=0)

    assert handoffs(lab) == before  # every handoff is the previous valid one
    leftovers = [p.name for p in lab.state.iterdir() if ".tmp-" in p.name]
    status = lab.ok("status").stdout  # no temporary file is taken for a handoff
    for name, text in before.items():
        assert text is None or f"{name}: INVALID" not in status
    result = lab.ok("deploy")
    assert f"taking over the lock of environment lab left by {getpass.getuser()}@{socket.gethostname()} pid" \
        in result.stderr
    assert not [p for p in lab.state.iterdir() if p.name in leftovers]  # cleaned up
    assert lab.ok("validate").returncode == 0
    assert stage in {"build", "provision", "configure"}


# ----------------------------------------------------------------------------- Proxmox faults


def test_a_flaky_network_is_ridden_out_by_the_retries(clean):
    lab = clean
    call(lab, "flaky_network", drop_rate=0.2, seed=7)
    result = lab.ok("build", "--rebuild")
    lab.ok("deploy")
    logs = result.stdout + "".join(p.read_text() for p in lab.state.glob("logs/*/build.log"))
    assert "connection failed" in logs and "retrying in" in logs


def test_5xx_answers_on_clone_are_retried(clean):
    lab = clean
    call(lab, "fail", "POST", "/nodes/pve1/qemu/9000/clone", 503, "Service Unavailable", times=2)
    lab.ok("build", "--rebuild")
    log = sorted(lab.state.glob("logs/*/build.log"))[-1].read_text()
    assert log.count("Proxmox API POST /nodes/pve1/qemu/9000/clone: HTTP 503: Service Unavailable; retrying") == 2


def test_a_locked_vm_is_waited_for(clean):
    lab = clean
    lab.admin("vm", {"vmid": 9000, "set": {"lock": "backup"}})
    threading.Timer(2.0, lambda: lab.admin("vm", {"vmid": 9000, "set": {"lock": None}})).start()
    lab.ok("build", "--rebuild")
    log = sorted(lab.state.glob("logs/*/build.log"))[-1].read_text()
    assert "VM is locked (backup); retrying in" in log


def test_a_task_error_is_retried_when_it_makes_sense_and_named_when_not(clean):
    lab = clean
    call(lab, "fail", "POST", "/qemu/201/status/start", error="locked", times=1)
    lab.ok("rollback", "--stage", "provision", "--mode", "replace")
    log = sorted(lab.state.glob("logs/*/provision-replace.log"))[-1].read_text()
    assert "status/start: VM is locked (backup); retrying in" in log

    before = handoffs(lab)
    call(lab, "fail", "POST", "/qemu/201/status/start", error="qemu_exited_code")
    result = lab.doit("rollback", "--stage", "provision", "--mode", "replace")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert ("Proxmox task POST /nodes/pve1/qemu/201/status/start ended in TASK ERROR: QEMU exited with code 1"
            in result.stdout + result.stderr)
    assert handoffs(lab)["ansible_inventory.json"] == before["ansible_inventory.json"]


def test_a_slow_start_is_waited_for(clean):
    lab = clean
    faults(lab, time_scale=1, start_secs=3)
    result = lab.ok("rollback", "--stage", "provision", "--mode", "replace")
    assert stages_run(result) == ["configure"]
    assert lab.ok("validate", "--check", "vm").returncode == 0


def test_an_expired_ticket_is_renewed(lab_project):
    project = lab_project(extra={"environments": {"lab": {"proxmox": {
        "token_id": None, "token_secret": None, "user": "root@pam", "password": "${LAB_PVE_PASSWORD}"}}}})
    for key in ("token_id", "token_secret"):
        project.env["proxmox"].pop(key)
    project.write_config()
    env = {"LAB_PVE_PASSWORD": "a-lab-password"}
    project.ok("status", env=env)
    project.ok("build", env=env)  # starts the lab
    faults(project, ticket_ttl=0.3)
    result = project.ok("build", "--rebuild", env=env)
    assert "ticket rejected; logging in again" in result.stdout


# ----------------------------------------------------------------------------- waiting for SSH


def test_a_host_whose_sshd_starts_late_is_waited_for(lab_project):
    project = lab_project(extra={"environments": {"lab": {"stages": {"provision": {"vars": {
        "sshd_delays": {"jump-01": 10}}}}}}})
    result = project.ok("deploy")
    assert "SSH wait: still waiting for 1 host after 5s: jump-01 (127." in result.stdout
    assert json.loads(project.handoff("configure.json"))["recap"]["jump-01"]["failed"] == 0


def test_a_host_that_never_accepts_ssh_fails_after_the_deadline(lab_project):
    project = lab_project(extra={"environments": {"lab": {"stages": {
        "provision": {"vars": {"sshd_delays": {"jump-01": -1}}},
        "configure": {"ssh_wait": {"deadline": 4, "connect_timeout": 1}}}}}})
    result = project.doit("deploy")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if "✗ configure failed" in line)
    assert f"SSH wait: 1 host not ready within 4s: jump-01 ({project.address[:-2]}.11:22):" in line
    assert not (project.state / "configure.json").exists()


# ----------------------------------------------------------------------------- idempotency


def test_forcing_every_stage_on_an_unchanged_lab_changes_nothing(deployed):
    before = handoffs(deployed)
    result = deployed.ok("deploy", "--force")
    assert stages_run(result) == ["build", "provision", "configure"]
    runs = [e for e in deployed.history() if e.get("run") == deployed.history()[-1]["run"]]
    build, provision, configure = runs[-3:]
    assert build["reused"] is True and build["template_id"] == int(before["template_id.txt"])
    assert provision["plan"] == "no changes"
    assert configure["changed"] == 0
    assert json.loads(deployed.handoff("configure.json"))["recap"]["jump-01"]["changed"] == 0
    assert handoffs(deployed)["template_id.txt"] == before["template_id.txt"]
    assert handoffs(deployed)["ansible_inventory.json"] == before["ansible_inventory.json"]
