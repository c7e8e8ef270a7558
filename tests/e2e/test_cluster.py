"""Proxmox as a cluster in the pipeline (issue 24), on the lab's three nodes: addresses from the guest agent,
clone-lock contention retried, templates copied to the nodes that need them, placement checked before any tool."""

import json

import pytest

from tests.labproject import stages_run

pytestmark = pytest.mark.e2e


def inventory_hosts(project) -> dict:
    data = json.loads(project.handoff("ansible_inventory.json"))
    return data["all"]["children"]["jump_hosts"]["hosts"]


def vms_of(project, **vms) -> None:
    project.env["stages"]["provision"]["vars"]["vms"] = vms
    project.write_config()


def test_a_vm_without_a_static_address_gets_its_inventory_from_the_guest_agent(lab_project):
    project = lab_project()
    vms_of(project, **{"jump-01": {"vm_id": 201, "address": "dhcp"}})
    project.env["stages"]["provision"]["vars"]["agent_delays"] = {"jump-01": 2}  # it answers late: the stage waits
    project.write_config()
    result = project.ok("deploy")
    assert stages_run(result) == ["build", "provision", "configure"]
    address = inventory_hosts(project)["jump-01"]["ansible_host"]
    assert address.startswith(project.block + ".1") and address != "dhcp"  # a lease, only the agent knew it
    assert json.loads(project.handoff("configure.json"))["recap"]["jump-01"]["failed"] == 0


def test_an_agent_that_never_answers_fails_the_stage_in_one_line_and_keeps_the_inventory(lab_project):
    project = lab_project()
    project.ok("deploy")
    before = project.handoff("ansible_inventory.json")
    vms_of(project, **{"jump-01": {"vm_id": 201, "address": project.block + ".11"},
                       "jump-02": {"vm_id": 202, "address": "dhcp"}})
    provision = project.env["stages"]["provision"]
    provision["vars"]["agent_delays"] = {"jump-02": -1}
    provision["address_wait"] = 3
    project.write_config()
    result = project.doit("deploy")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if "✗ provision failed" in line]
    assert len(failed) == 1 and ("the guest agent of VM 202 (jump-02) did not report an IPv4 address for its net0 "
                                 "within 3s: check that its template enables the agent") in failed[0]
    assert project.handoff("ansible_inventory.json") == before


def test_config_lock_timeouts_on_a_share_of_clones_are_retried_and_counted(lab_project):
    project = lab_project(vms=10)
    project.ok("doctor")  # the lab's API runs
    project.admin("settings", {"clone_lock_failures": {"rate": 0.3, "seed": 1, "mode": "task"}})
    result = project.ok("deploy")
    assert stages_run(result) == ["build", "provision", "configure"]
    assert len(inventory_hosts(project)) == 10
    failures = project.admin("state")["clone_lock_failures"]["count"]
    runs = [e for e in project.history() if e.get("outcome") == "ok" and e["stage"] in ("build", "provision")]
    assert failures > 0 and sum(e.get("retries", 0) for e in runs) == failures  # the build clones its base too


def vm_source(project, vmid) -> tuple[int, str]:
    """(the template a lab VM was cloned from, the node it is on), as the lab's Proxmox records them."""
    vm = next(vm for vm in project.admin("state")["vms"] if vm["vmid"] == vmid)
    return int(vm["config"]["description"].split("cloned from ")[1].split(";")[0]), vm["node"]


def templates_on_cluster(project) -> dict[int, str]:
    return {vm["vmid"]: vm["node"] for vm in project.admin("state")["vms"] if vm["template"]}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """A lab project deployed with one VM on pve1; its template lives on pve1's local storage."""
    from tests.labproject import LabProject

    project = LabProject(tmp_path_factory.mktemp("nodes") / "project", vms=2)
    project.ok("deploy")
    yield project
    project.stop()


def test_vms_placed_where_the_template_cannot_be_cloned_are_refused_before_any_tool(two_nodes):
    project = two_nodes
    project.env["stages"]["provision"]["vars"]["vms"]["jump-02"]["node"] = "pve2"
    project.write_config()
    template = int(project.handoff("template_id.txt"))
    before = project.handoff("ansible_inventory.json")
    for command in ("plan", "deploy"):
        project.reset_calls()
        result = project.doit(command)
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, command
        said = [line for line in (result.stdout + result.stderr).splitlines()
                if f"template {template} is on pve1's local storage local-pve1" in line]
        assert len(said) == 1 and ("VMs on pve2 cannot clone it: put it on shared storage (enabled on pve2), or copy "
                                   "it to pve2 with the build stage's nodes: [pve1, pve2]") in said[0], command
        assert project.tool_calls() == [] and project.handoff("ansible_inventory.json") == before


def test_with_copies_each_vm_is_cloned_from_a_template_on_its_own_node(two_nodes):
    project = two_nodes
    project.env["stages"]["build"]["nodes"] = ["pve1", "pve2"]
    project.env["stages"]["provision"]["template_ids_by_node"] = "template_ids_by_node"
    project.write_config()
    result = project.ok("deploy")
    assert stages_run(result) == ["build", "provision", "configure"]
    build = [e for e in project.history() if e["action"] == "build"][-1]
    primary, copy = build["template_id"], build["copies"]["pve2"]
    assert templates_on_cluster(project)[primary] == "pve1" and templates_on_cluster(project)[copy] == "pve2"
    assert vm_source(project, 201) == (primary, "pve1") and vm_source(project, 202) == (copy, "pve2")


def test_replicate_auto_copies_the_template_to_the_nodes_its_vms_need_and_only_there(lab_project):
    project = lab_project(vms=2)
    project.env["stages"]["build"]["replicate"] = "auto"
    project.env["stages"]["provision"]["template_ids_by_node"] = "template_ids_by_node"
    project.write_config()
    project.ok("deploy")  # every VM on pve1, beside the template: no copy
    first = [e for e in project.history() if e["action"] == "build"][-1]
    assert not first.get("copies") and len(templates_on_cluster(project)) == 2  # the base image and the template
    project.env["stages"]["provision"]["vars"]["vms"]["jump-02"]["node"] = "pve2"
    project.write_config()
    status = project.ok("status").stdout
    assert (f"VMs on pve2 need a copy of template {first['template_id']}, which it cannot clone from "
            "(replicate: auto)") in status
    result = project.ok("deploy")
    assert stages_run(result) == ["build", "provision", "configure"]
    build = [e for e in project.history() if e["action"] == "build"][-1]
    assert list(build["copies"]) == ["pve2"]
    assert vm_source(project, 201) == (build["template_id"], "pve1")
    assert vm_source(project, 202) == (build["copies"]["pve2"], "pve2")
    assert stages_run(project.ok("deploy")) == []


def test_a_rollback_points_every_node_back_at_the_earlier_template(two_nodes):
    project = two_nodes
    first = [e for e in project.history() if e["action"] == "build"][-1]
    project.ok("build", "--rebuild")
    project.ok("deploy")
    second = [e for e in project.history() if e["action"] == "build"][-1]
    assert vm_source(project, 202) == (second["copies"]["pve2"], "pve2")
    project.ok("rollback", "--stage", "build", "--to", str(first["template_id"]))
    assert vm_source(project, 201) == (first["template_id"], "pve1")
    assert vm_source(project, 202) == (first["copies"]["pve2"], "pve2")


def test_retention_deletes_copies_with_their_template_and_keeps_a_linked_clones_base(two_nodes):
    import subprocess

    from proxpipe.domain.proxmox import tool_env
    from proxpipe.engine.pipeline import load_config
    from proxpipe.lab import control
    from tests.labproject import VENV_BIN

    project = two_nodes
    first, second = [e for e in project.history() if e["action"] == "build" and e.get("copies")][-2:]
    # The VMs were rolled back to `first`; VM 250 becomes a linked clone of `second`, which nothing else uses.
    env = load_config(project.root / "pipeline.yaml").environment("lab")
    made = subprocess.run([str(VENV_BIN / "pipeline-lab"), "vm-create", "--template", str(second["template_id"]),
                           "--vmid", "250", "--name", "linked", "--address", f"{project.block}.50", "--linked"],
                          env=project.environ(tool_env(env.proxmox._replace(ca_file=control.ca_file(env)))),
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    project.env["stages"]["build"]["keep_templates"] = 1
    project.write_config()
    result = project.ok("build", "--rebuild")  # keeps 1 (the new one), `first` in use by the VMs
    assert (f"keeps template {second['template_id']} past the 1 kept: VM 250 is a linked clone of it"
            in result.stdout)
    project.ok("deploy")  # the VMs move to the new template: `first` is in use no more
    result = project.ok("build", "--rebuild")
    templates = templates_on_cluster(project)
    assert first["template_id"] not in templates and first["copies"]["pve2"] not in templates
    assert f"deleted template {first['template_id']} and its copies {first['copies']['pve2']}" in result.stdout
    assert second["template_id"] in templates and second["copies"]["pve2"] in templates
