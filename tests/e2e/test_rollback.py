"""Rollback of every stage and the template lifecycle (issue 5), end to end on the real tools in the lab."""

import json
import subprocess

import pytest

from tests.labproject import stages_run

pytestmark = pytest.mark.e2e


def vm_source(project, vmid=201) -> int:
    """The template a lab VM was cloned from, as the Proxmox side records it."""
    vm = next(vm for vm in project.admin("state")["vms"] if vm["vmid"] == vmid)
    return int(vm["config"]["description"].split("cloned from ")[1].split(";")[0])


def state_template(project) -> int:
    state = json.loads((project.root / "lab" / "terraform" / "terraform.tfstate").read_text())
    (resource,) = [r for r in state["resources"] if r["type"] == "null_resource" and r["name"] == "vm"]
    return int(resource["instances"][0]["attributes"]["triggers"]["template_id"])


def git_commit_all(project, message):
    subprocess.run(["git", "add", "-A"], cwd=project.root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
                   cwd=project.root, check=True)


@pytest.fixture(scope="module")
def two_builds(deployed):
    """The module's deployed project, built a second time: two templates to go back and forth between."""
    project = deployed
    first = int(project.handoff("template_id.txt"))
    project.ok("build", "--rebuild")
    project.ok("deploy")
    second = int(project.handoff("template_id.txt"))
    assert second != first
    project.first, project.second = first, second
    return project


def test_build_rollback_recreates_the_vm_from_the_previous_template(two_builds):
    project = two_builds
    assert vm_source(project) == project.second
    result = project.ok("rollback", "--stage", "build")
    assert int(project.handoff("template_id.txt")) == project.first
    assert stages_run(result) == ["provision", "configure"]
    assert vm_source(project) == project.first  # through the API
    assert state_template(project) == project.first  # and the Terraform state
    entry = [e for e in project.history() if e.get("action") == "rollback"][-1]
    assert entry["template_id"] == project.first and entry["from"] == project.second
    # afterwards the pipeline is up to date: the rollback is not undone by the next deploy
    result = project.ok("deploy")
    assert stages_run(result) == []


def test_build_rollback_to_a_given_template(two_builds):
    project = two_builds
    project.ok("rollback", "--stage", "build", "--to", str(project.second))
    assert int(project.handoff("template_id.txt")) == project.second and vm_source(project) == project.second


@pytest.mark.parametrize("to, message", [
    ("12345", "--to 12345: not a template this pipeline built in environment lab"),
    ("abc", "--to abc: not a template this pipeline built"),
    ("9000", "--to 9000: not a template this pipeline built"),  # the lab's base image: not ours
])
def test_build_rollback_refusals_change_nothing(two_builds, to, message):
    project = two_builds
    before = project.handoff("template_id.txt")
    project.reset_calls()
    result = project.doit("rollback", "--stage", "build", "--to", to)
    assert result.returncode == 1 and message in result.stderr
    assert project.handoff("template_id.txt") == before and project.tool_calls() == []


def test_build_rollback_to_a_template_gone_from_the_node(two_builds):
    project = two_builds
    current = int(project.handoff("template_id.txt"))
    other = project.first if current == project.second else project.second
    project.admin("vm", {"vmid": other, "delete": True})
    result = project.doit("rollback", "--stage", "build", "--to", str(other))
    assert result.returncode == 1 and f"template {other} no longer exists on pve1" in result.stderr
    result = project.doit("rollback", "--stage", "build")
    assert result.returncode == 1 and "no earlier template to roll back to" in result.stderr
    assert int(project.handoff("template_id.txt")) == current


def test_provision_rollback_replace_recreates_the_vm(two_builds):
    project = two_builds
    marker = project.state / "vms" / "201" / "root" / "etc" / "automation.conf"
    assert marker.exists()
    result = project.ok("rollback", "--stage", "provision", "--mode", "replace")
    assert stages_run(result) == ["configure"]
    assert 'replacing null_resource.vm["jump-01"]' in result.stdout
    entry = [e for e in project.history() if e.get("action") == "replace"][-1]
    assert entry["replaced"] == ['null_resource.vm["jump-01"]']
    assert marker.exists()  # re-created and configured again
    assert project.ok("validate").returncode == 0


def test_provision_rollback_destroy_then_deploy(two_builds):
    project = two_builds
    result = project.ok("rollback", "--stage", "provision", "--mode", "destroy")
    assert not (project.state / "ansible_inventory.json").exists()
    assert 201 not in {vm["vmid"] for vm in project.admin("state")["vms"]}
    status = project.ok("status").stdout
    provision_row = next(line for line in status.splitlines() if line.startswith("provision"))
    assert "stale" in provision_row and "ansible_inventory.json: none" in provision_row
    configure_row = next(line for line in status.splitlines() if line.startswith("configure"))
    assert "stale" in configure_row
    assert "destroyed" in result.stdout
    result = project.ok("deploy")
    assert stages_run(result) == ["provision", "configure"]
    assert 201 in {vm["vmid"] for vm in project.admin("state")["vms"]}


def test_configure_rollback_runs_the_playbook_of_a_git_ref(two_builds):
    project = two_builds
    git_commit_all(project, "first")
    project.edit("lab/ansible/roles/automation_server/defaults/main.yml", "automation_user: automation",
                 "automation_user: operator")
    git_commit_all(project, "second")
    project.ok("deploy")
    config = project.state / "vms" / "201" / "root" / "etc" / "automation.conf"
    assert "login = operator" in config.read_text()
    result = project.ok("rollback", "--stage", "configure", "--to", "HEAD~1")
    assert "as of HEAD~1" in result.stdout
    assert "login = automation\n" in config.read_text()
    entry = [e for e in project.history() if e.get("action") == "rollback"][-1]
    assert entry["stage"] == "configure" and entry["git_ref"] == "HEAD~1"
    validate = project.doit("validate", "--check", "configure-current")
    assert validate.returncode == 1 and "playbook inputs changed since the last configure" in validate.stdout
    result = project.ok("deploy")
    assert stages_run(result) == ["configure"]


def test_configure_rollback_refuses_an_unknown_ref(two_builds):
    project = two_builds
    before = project.handoff("configure.json")
    result = project.doit("rollback", "--stage", "configure", "--to", "no-such-ref")
    assert result.returncode == 1 and "--to no-such-ref: unknown git ref" in result.stderr
    assert project.handoff("configure.json") == before


def test_history_lists_builds_deploys_and_rollbacks_newest_first(two_builds):
    project = two_builds
    table = project.ok("history", "--limit", "50").stdout.splitlines()
    assert table[0].split()[:4] == ["time", "stage", "action", "outcome"]
    actions = [line.split()[3] for line in table[2:]]
    assert {"build", "provision", "configure", "rollback", "replace", "destroy"} <= set(actions)
    times = [" ".join(line.split()[:2]) for line in table[2:]]
    assert times == sorted(times, reverse=True)


def test_retention_keeps_three_and_never_a_template_it_did_not_build(lab_project):
    project = lab_project()
    project.ok("build")
    first = int(project.handoff("template_id.txt"))
    seeded = _seed_foreign_template(project, first + 1)  # inside the range, made by hand
    built = [first]
    for _ in range(3):
        project.ok("build", "--rebuild")
        built.append(int(project.handoff("template_id.txt")))
    assert seeded not in built and len(set(built)) == 4
    templates = {vm["vmid"] for vm in project.admin("state")["vms"] if vm["template"]}
    assert built[0] not in templates  # the oldest of four is deleted
    assert set(built[1:]) <= templates  # the newest three are kept
    assert seeded in templates and 9000 in templates  # never one it did not build
    deleted = [e for e in project.history() if e.get("action") == "retention"]
    assert [e["template_id"] for e in deleted] == [built[0]]


def _seed_foreign_template(project, vmid: int) -> int:
    """Clone the base image into a template by hand, as an admin would in the Proxmox UI."""
    from proxpipe.engine.pipeline import Pipeline

    pve = Pipeline.load(project.root / "pipeline.yaml", "lab").proxmox
    pve.task("clone", lambda: pve.api.nodes("pve1").qemu(9000).clone.post(newid=vmid, name="made-by-hand"))
    pve.task("template", lambda: pve.api.nodes("pve1").qemu(vmid).template.post())
    return vmid


def test_a_range_with_no_free_id_is_a_clear_error(lab_project):
    project = lab_project(extra={"environments": {"lab": {"stages": {"build": {"template_id_range": [9100, 9100]}}}}})
    project.ok("build")
    result = project.doit("build", "--rebuild")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert ("template_id_range: no free VMID in [9100, 9100]: all 1 are in use on the cluster; widen the range, "
            "lower keep_templates, or delete templates the pipeline no longer needs") in result.stdout
    assert project.handoff("template_id.txt") == "9100\n"
