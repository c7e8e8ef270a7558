"""doit validate in the lab (issue 4): every check passes after a deploy, and each one catches its fault
with a message that names the host, id or file. The tests share one deployed project, in order; each
breaks one thing, checks what validate says, and repairs it."""

import json
import os
import shutil
import signal
from xml.etree import ElementTree

import pytest

pytestmark = pytest.mark.e2e

CHECKS = ["template", "lint", "terraform-state", "vm", "placement", "revoked", "ssh", "ansible-ping",
          "configure-current"]


def results(project, *args):
    result = project.doit("validate", *args)
    report = json.loads((project.state / "validate.json").read_text())
    by_check = {}
    for row in report["results"]:
        by_check.setdefault(row["check"], []).append(row)
    return result, report, by_check


def failed_messages(by_check, check):
    return [r["message"] for r in by_check[check] if r["status"] == "failed"]


def test_everything_passes_after_a_deploy(deployed):
    result, report, by_check = results(deployed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(by_check) == sorted(CHECKS)
    assert report["counts"] == {"passed": len(report["results"]), "failed": 0, "skipped": 0}
    assert "validation passed" in result.stdout
    for check in CHECKS:
        assert f"\n{check} " in "\n" + result.stdout, f"no table row for {check}"
    suite = ElementTree.parse(deployed.state / "validate.xml").getroot().find("testsuite")
    assert suite.get("tests") == str(len(report["results"])) and suite.get("failures") == "0"


def test_list_and_select(deployed):
    listed = deployed.ok("validate", "--list").stdout
    for check in CHECKS:
        assert check in listed
    result, report, by_check = results(deployed, "--check", "template", "--check", "vm")
    assert result.returncode == 0 and sorted(by_check) == ["template", "vm"]
    result = deployed.doit("validate", "--check", "nope")
    assert result.returncode == 1 and "--check nope: no such check" in result.stderr


def test_a_deleted_template(deployed):
    template_id = int(deployed.handoff("template_id.txt"))
    deployed.admin("vm", {"vmid": template_id, "delete": True})
    result, report, by_check = results(deployed)
    assert result.returncode == 1
    assert failed_messages(by_check, "template") == [f"template {template_id} does not exist on the cluster"]
    assert by_check["template"][0]["target"] == f"template {template_id}"
    suite = ElementTree.parse(deployed.state / "validate.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failure = suite.find("testcase[@classname='build.template']/failure")
    assert str(template_id) in failure.get("message")
    deployed.ok("build")  # the template is stale now: it is built again


def test_a_stopped_vm(deployed):
    deployed.admin("vm", {"vmid": 201, "set": {"status": "stopped", "qmpstatus": "stopped"}})
    result, report, by_check = results(deployed)
    assert result.returncode == 1
    assert failed_messages(by_check, "vm") == ["VM 201 is stopped, not running"]
    assert by_check["vm"][0]["target"] == "jump-01"
    assert failed_messages(by_check, "ssh")  # a stopped VM's sshd is down too
    deployed.admin("vm", {"vmid": 201, "set": {"status": "running", "qmpstatus": "running"}})
    _wait_for_ssh(deployed)


def _wait_for_ssh(project):
    import time

    for _ in range(100):
        if results(project, "--check", "ssh")[0].returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("the VM's sshd did not come back")


def test_a_killed_sshd(deployed):
    pid = int((deployed.state / "vms" / "201" / "sshd.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    result, report, by_check = results(deployed)
    assert result.returncode == 1
    (message,) = failed_messages(by_check, "ssh")
    assert by_check["ssh"][0]["target"].startswith("jump-01 (127.") and "refused" in message.lower()
    assert failed_messages(by_check, "ansible-ping")[0].startswith("unreachable")
    assert by_check["ansible-ping"][0]["target"] == "jump-01"
    assert not failed_messages(by_check, "vm")  # the VM itself still runs
    deployed.admin("vm", {"vmid": 201, "set": {"status": "stopped"}})  # a reboot brings sshd back
    deployed.admin("vm", {"vmid": 201, "set": {"status": "running"}})
    _wait_for_ssh(deployed)


def test_an_inventory_edited_by_hand(deployed):
    path = deployed.state / "ansible_inventory.json"
    original = path.read_text()
    inventory = json.loads(original)
    inventory["all"]["children"]["jump_hosts"]["hosts"]["jump-01"]["ansible_user"] = "someone-else"
    path.write_text(json.dumps(inventory))
    result, report, by_check = results(deployed)
    assert result.returncode == 1
    (state_message,) = failed_messages(by_check, "terraform-state")
    assert "ansible_inventory.json" in by_check["terraform-state"][0]["target"]
    assert "all.children.jump_hosts.hosts.jump-01.ansible_user is \"someone-else\"" in state_message
    (drift,) = failed_messages(by_check, "configure-current")
    assert "ansible_inventory.json changed since the last configure" in drift
    path.write_text(original)
    assert results(deployed)[0].returncode == 0


def test_a_removed_terraform_state(deployed):
    state_file = deployed.root / "lab" / "terraform" / "terraform.tfstate"
    backup = state_file.with_suffix(".saved")
    shutil.copy(state_file, backup)
    state_file.unlink()
    result, report, by_check = results(deployed)
    assert result.returncode == 1
    (message,) = failed_messages(by_check, "terraform-state")
    assert by_check["terraform-state"][0]["target"] == "lab/terraform"
    assert "the state has no resources" in message
    shutil.move(backup, state_file)


def test_a_playbook_edited_after_the_deploy(deployed):
    deployed.edit("lab/ansible/site.yml", "gather_facts: false", "gather_facts: false\n  # edited after deploy")
    result, report, by_check = results(deployed)
    assert result.returncode == 1
    (message,) = failed_messages(by_check, "configure-current")
    assert "playbook inputs changed since the last configure: lab/ansible/site.yml" in message
    deployed.ok("deploy")
    assert results(deployed)[0].returncode == 0


def test_a_check_that_cannot_apply_is_skipped_not_passed(lab_project):
    project = lab_project()
    result, report, by_check = results(project)
    assert result.returncode == 0  # nothing failed: nothing is there yet
    assert report["counts"]["passed"] == 1 and report["counts"]["skipped"] == len(CHECKS) - 1
    assert "no template_id.txt yet (run `doit build`)" in by_check["template"][0]["message"]
    assert by_check["lint"][0]["status"] == "passed"  # the lint gate needs no deploy
