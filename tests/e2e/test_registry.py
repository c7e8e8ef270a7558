"""The template registry (issue 25) on local state: lineage, channels and promotion under the approval rule, a stage
that takes its template from a channel, revocation refused everywhere, retention that keeps what a channel points at.

The tests share one lab project and run in order, each leaving it deployed. Shared state: test_shared_state.py.
"""

import json
import subprocess

import jsonschema
import pytest

from tests.labproject import REPO, VENV_BIN, LabProject, stages_run

pytestmark = pytest.mark.e2e

SCHEMA = json.loads((REPO / "schemas" / "templates.schema.json").read_text())
ALICE, BOB = {"USER": "alice", "LOGNAME": "alice"}, {"USER": "bob", "LOGNAME": "bob"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    made = LabProject(tmp_path_factory.mktemp("registry") / "project")
    made.env["stages"]["build"]["publish"] = "dev"
    made.write_config()
    made.ok("deploy")
    yield made
    made.stop()


def proxpipe(project, *args):
    return subprocess.run([str(VENV_BIN / "proxpipe"), *args], cwd=project.root, env=project.environ(),
                          capture_output=True, text=True, timeout=120)


def registry(project, *args) -> dict:
    document = json.loads(project.ok("templates", "--json", *args).stdout)
    jsonschema.validate(document, SCHEMA)
    return document


def entry(document, vmid) -> dict:
    return next(t for t in document["templates"] if t["vmid"] == vmid)


def refused(result) -> str:
    """A refusal: exit 1, no traceback; what it said (a stage's failure line is on stdout, a command's on stderr)."""
    said = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in said, said
    return said


def set_option(project, stage, **options) -> None:
    for key, value in options.items():
        if value is None:
            project.env["stages"][stage].pop(key, None)
        else:
            project.env["stages"][stage][key] = value
    project.write_config()


def test_a_build_is_in_the_registry_with_its_lineage_and_on_its_channel(project):
    vmid = int(project.handoff("template_id.txt"))
    document = registry(project)
    found = entry(document, vmid)
    assert found["stage"] == "build" and found["environment"] == "lab" and found["status"] == "active"
    assert found["node"] == "pve1" and found["storages"] == ["local-pve1"] and found["base"] == 9000
    assert found["packer"] == "1.6.6" and found["built_by"] and found["inputs"]
    assert found["channels"] == ["dev"] and found["vms"] == ["jump-01"]
    assert document["channels"]["dev"]["vmid"] == vmid
    table = project.ok("templates").stdout
    assert str(vmid) in table and "dev" in table and "jump-01" in table


def test_promotion_under_second_person_is_refused_for_its_author_and_taken_from_another(project):
    vmid = int(project.handoff("template_id.txt"))
    project.env["approval"] = "second-person"
    project.write_config()
    try:
        asked = project.ok("promote", "--template", str(vmid), "--channel", "staging", "--reason", "ok in dev",
                           env=ALICE)
        assert "requested by alice" in asked.stdout and "staging" not in registry(project)["channels"]
        own = project.doit("promote", "--channel", "staging", "--approve", env=ALICE)
        assert "requested by alice, who may not approve it (approval: second-person)" in refused(own)
        assert "staging" not in registry(project)["channels"]
        project.ok("promote", "--channel", "staging", "--approve", env=BOB)
    finally:
        project.env["approval"] = "none"
        project.write_config()
    assert registry(project)["channels"]["staging"] == {**registry(project)["channels"]["staging"], "vmid": vmid,
                                                        "by": "bob", "why": "ok in dev"}
    promoted = [e for e in project.history() if e.get("action") == "promote"][-1]
    assert promoted["template_id"] == vmid and promoted["by"] == "bob" and promoted["requested_by"] == "alice"


def test_a_stage_from_a_channel_deploys_its_template_without_packer_and_follows_the_channel(project):
    first = int(project.handoff("template_id.txt"))  # on dev and staging
    project.ok("build", "--rebuild")
    project.ok("deploy")
    second = int(project.handoff("template_id.txt"))  # on dev only, and the VMs on it
    assert registry(project)["channels"]["dev"]["vmid"] == second != first
    set_option(project, "build", from_channel="staging")
    project.reset_calls()
    result = project.ok("deploy")
    assert not [call for call in project.tool_calls() if call.startswith("packer")]
    assert int(project.handoff("template_id.txt")) == first and "provision" in stages_run(result)
    project.ok("promote", "--from", "dev", "--channel", "staging")
    assert f"channel staging moved from {first} to {second}" in project.ok("status").stdout
    planned = project.ok("plan")
    assert (f"channel staging moved from {first} to {second}; then the VMs on template {first} are re-created from "
            "it: jump-01") in planned.stdout + planned.stderr
    project.reset_calls()
    deployed = project.ok("deploy").stdout
    said = next(line for line in deployed.splitlines() if "replacing" in line)  # before the apply, in one line
    assert 'null_resource.vm["jump-01"]' in said and f"the template changes from {first} to {second}" in said
    assert not [call for call in project.tool_calls() if call.startswith("packer")]
    assert int(project.handoff("template_id.txt")) == second
    assert json.loads(project.handoff("ansible_inventory.json"))["all"]["children"]["jump_hosts"]["hosts"][
        "jump-01"]["template_id"] == second
    set_option(project, "build", from_channel=None)


def test_a_revoked_template_is_refused_by_every_provision_and_flagged_on_its_vms(project):
    current = int(project.handoff("template_id.txt"))  # the VMs are on it; staging points at it
    older = next(t["vmid"] for t in registry(project)["templates"] if t["vmid"] != current)
    project.ok("revoke", "--template", str(older), "--reason", "CVE-2026-0001 in openssl")
    before = {name: project.handoff(name) for name in ("template_id.txt", "ansible_inventory.json")}
    project.reset_calls()
    said = refused(project.doit("provision", "--template-id", str(older)))
    assert f"template {older} is revoked by" in said and "CVE-2026-0001 in openssl" in said
    assert f"the newest active template on channel dev is {current}" in said and "no tool was started" in said
    set_option(project, "build", from_channel="staging")  # the channel still points at it once it is revoked
    said = proxpipe(project, "revoke", str(current), "--reason", "bad kernel")  # the id as the issue writes it
    assert said.returncode == 0 and f"revoked template {current}" in said.stdout, said.stdout + said.stderr
    project.append("lab/terraform/main.tf", "\n# an edit: provision is stale\n")
    for command in ("deploy", "plan"):
        said = refused(project.doit(command))
        assert f"template {current} is revoked by" in said and "bad kernel" in said, command
    assert project.tool_calls() == [] and before == {name: project.handoff(name) for name in before}
    moved = project.doit("promote", "--template", str(current), "--channel", "prod")
    assert f"channel prod may not point at template {current}: it is revoked" in refused(moved)
    checked = project.doit("validate", "--check", "revoked")
    assert checked.returncode == 1 and f"was cloned from template {current} is revoked" in checked.stdout
    assert f"jump-01 runs on template {current} is revoked" in project.ok("status").stdout
    project.ok("restore-template", "--template", str(older))
    project.ok("restore-template", "--template", str(current))
    set_option(project, "build", from_channel=None)
    project.ok("deploy")  # builds again as it was written: keeps the template built from these inputs
    assert int(project.handoff("template_id.txt")) == current


def test_a_build_whose_template_is_revoked_is_stale_and_the_next_deploy_replaces_it(project):
    current = int(project.handoff("template_id.txt"))
    project.ok("revoke", "--template", str(current), "--reason", "bad kernel")
    status = project.ok("status").stdout
    assert f"template {current} is revoked by" in status and "a new one is built" in status
    project.ok("deploy")
    new = int(project.handoff("template_id.txt"))
    assert new != current and project.ok("validate", "--check", "revoked").returncode == 0
    project.ok("restore-template", "--template", str(current))
    assert {t["status"] for t in registry(project)["templates"]} == {"active"}


def test_a_template_built_from_one_of_ours_is_its_child_and_revoked_with_it(project):
    parent = int(project.handoff("template_id.txt"))
    variables = project.env["stages"]["build"]["vars"]
    variables["base_template_id"] = str(parent)  # the next build clones our template, not the lab's base image
    project.write_config()
    project.ok("build")
    child = int(project.handoff("template_id.txt"))
    assert entry(registry(project), child)["parent"] == parent and entry(registry(project), child)["base"] == parent
    said = project.ok("revoke", "--template", str(parent), "--reason", "bad base").stdout
    assert f"revoked template {parent}, and its children {child}" in said
    assert entry(registry(project), child)["revoked"]["via"] == parent
    project.ok("restore-template", "--template", str(parent))
    assert entry(registry(project), child)["status"] == "active"
    variables["base_template_id"] = "9000"
    project.write_config()
    project.ok("deploy")


def test_retention_keeps_a_template_a_channel_points_at_and_marks_what_it_deleted(project):
    oldest = min(t["vmid"] for t in registry(project)["templates"])
    project.ok("promote", "--template", str(oldest), "--channel", "golden")
    set_option(project, "build", keep_templates=1)
    for _ in range(3):  # each build moves dev on; the deploy moves the VMs off the one before
        project.ok("build", "--rebuild")
        project.ok("deploy")
    document = registry(project)
    on_cluster = {vm["vmid"] for vm in project.admin("state")["vms"] if vm["template"]}
    assert oldest in on_cluster and entry(document, oldest)["status"] == "active"
    deleted = [t for t in document["templates"] if t["status"] == "deleted"]
    assert deleted and all(t["deleted_at"] and not t["channels"] and not t["vms"] for t in deleted)
    active = {t["vmid"] for t in document["templates"] if t["status"] == "active"}
    assert on_cluster - {9000} <= active  # the lab's base image, and what the registry says is there
    assert {t["vmid"] for t in deleted} - active <= set(range(9100, 9200)) - on_cluster  # a VMID given again
