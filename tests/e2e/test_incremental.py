"""doit deploy reruns exactly the stale stages (issue 2, a-g), on the real tools in the lab.

The tests share one deployed project and run in order; each leaves it deployed and up to date.
"""

import json
import time

import pytest

from tests.labproject import stages_run, stages_skipped

pytestmark = pytest.mark.e2e


def test_first_deploy_built_provisioned_and_configured(deployed):
    template_id = int(deployed.handoff("template_id.txt"))
    assert 9100 <= template_id <= 9199
    inventory = json.loads(deployed.handoff("ansible_inventory.json"))
    host = inventory["all"]["children"]["jump_hosts"]["hosts"]["jump-01"]
    assert host["template_id"] == template_id and host["ansible_host"].startswith("127.")
    recap = json.loads(deployed.handoff("configure.json"))["recap"]
    assert recap["jump-01"]["failed"] == 0 and recap["jump-01"]["unreachable"] == 0
    config = (deployed.state / "vms" / "201" / "root" / "etc" / "automation.conf").read_text()
    assert f"template = {template_id}" in config
    packer_builds = [c for c in deployed.tool_calls() if c.startswith("packer build")]
    assert len(packer_builds) == 1, "packer build must run exactly once per build"


def test_a_second_deploy_with_nothing_changed_starts_no_tool(deployed):
    deployed.reset_calls()
    result = deployed.ok("deploy")
    assert deployed.tool_calls() == []
    assert stages_run(result) == []
    assert stages_skipped(result) == ["build", "provision", "configure"]


def test_a_no_op_deploy_loads_what_only_a_running_stage_needs_only_then(deployed):
    # What a no-op costs (issue 22's start-up targets): tool runners, play output, plan records, the pg backend and
    # the stages' threads are imported when a stage runs, never for a run that skips every stage.
    result = deployed.ok("deploy", env={"PYTHONPROFILEIMPORTTIME": "1"})
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "proxpipe.engine.run" in loaded, result.stderr[-2000:]
    assert stages_skipped(result) == ["build", "provision", "configure"]
    assert loaded.isdisjoint({"concurrent.futures", "proxpipe.domain.toolrunner", "proxpipe.stages.ansible_output",
                              "proxpipe.stages.tfbackend", "proxpipe.domain.plan", "proxpipe.engine.execute"})


def test_g_status_explains_and_starts_no_tool(deployed):
    deployed.edit("lab/ansible/site.yml", "gather_facts: false", "gather_facts: false\n  # edited")
    deployed.reset_calls()
    result = deployed.ok("status")
    assert deployed.tool_calls() == []
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert "up to date" in rows["build"] and "exists" in rows["build"]
    assert "up to date" in rows["provision"]
    assert "stale" in rows["configure"] and "lab/ansible/site.yml changed" in rows["configure"]
    deployed.ok("deploy")


def test_b_editing_a_role_file_reruns_configure_only(deployed):
    deployed.edit("lab/ansible/roles/automation_server/defaults/main.yml", "- curl", "- curl\n  - jq")
    deployed.reset_calls()
    result = deployed.ok("deploy")
    assert stages_run(result) == ["configure"]
    assert not [c for c in deployed.tool_calls() if c.split()[0] in ("packer", "terraform")]
    config = (deployed.state / "vms" / "201" / "root" / "etc" / "automation.conf").read_text()
    assert "\njq\n" in config


def test_c_editing_tf_reruns_provision_and_configure_only_if_inventory_changed(deployed):
    deployed.append("lab/terraform/main.tf", "\n# a comment changes no resource and no output\n")
    inventory_before = deployed.handoff("ansible_inventory.json")
    result = deployed.ok("deploy")
    assert stages_run(result) == ["provision"]
    assert "configure" in stages_skipped(result)
    assert deployed.handoff("ansible_inventory.json") == inventory_before

    deployed.edit("lab/terraform/main.tf", 'lab_root                     =',
                  'role                         = "jump"\n      lab_root                     =')
    result = deployed.ok("deploy")
    assert stages_run(result) == ["provision", "configure"]
    assert '"role": "jump"' in deployed.handoff("ansible_inventory.json")


def test_d_a_new_template_id_reruns_provision_and_configure(deployed):
    old = int(deployed.handoff("template_id.txt"))
    result = deployed.ok("build", "--rebuild")
    new = int(deployed.handoff("template_id.txt"))
    assert new != old and stages_run(result) == ["build"]
    result = deployed.ok("deploy")
    assert stages_run(result) == ["provision", "configure"]
    inventory = json.loads(deployed.handoff("ansible_inventory.json"))
    assert inventory["all"]["children"]["jump_hosts"]["hosts"]["jump-01"]["template_id"] == new


def test_e_a_template_deleted_on_the_proxmox_side_makes_build_stale(deployed):
    template_id = int(deployed.handoff("template_id.txt"))
    deployed.admin("vm", {"vmid": template_id, "delete": True})
    status = deployed.ok("status").stdout
    build_row = next(line for line in status.splitlines() if line.startswith("build"))
    assert "stale" in build_row and f"template {template_id} does not exist" in build_row
    result = deployed.ok("deploy")
    assert stages_run(result)[0] == "build"
    # The rebuilt template takes the lowest free VMID of the range: the deleted one's, here.
    rebuilt = int(deployed.handoff("template_id.txt"))
    assert rebuilt == min(set(range(9100, 9200)) - _used_ids(deployed) | {rebuilt})
    status = deployed.ok("status").stdout
    assert f"template {rebuilt} exists" in status


def test_a_vm_deleted_on_the_proxmox_side_is_re_created_and_configured(deployed):
    conf = deployed.state / "vms" / "201" / "root" / "etc" / "automation.conf"
    deployed.admin("vm", {"vmid": 201, "delete": True})
    assert not conf.exists()
    deployed.reset_calls()
    result = deployed.ok("deploy")
    assert stages_run(result) == ["provision", "configure"]
    # The lab's null_resource cannot see its VM vanish: the first plan keeps it, the state names it, and the
    # second plan re-creates exactly it.
    terraform = [c for c in deployed.tool_calls() if c.startswith("terraform")]
    assert [c.split()[1] for c in terraform] == ["plan", "state", "plan", "apply", "output"]
    assert '-replace=null_resource.vm["jump-01"]' in terraform[2]
    # the stage's parallelism (the lab's: 30) reaches both plans and the apply
    assert [c.split()[1] for c in terraform if "-parallelism=30" in c.split()] == ["plan", "plan", "apply"]
    assert 201 in _used_ids(deployed) and conf.exists()


def _used_ids(project) -> set[int]:
    return {vm["vmid"] for vm in project.admin("state")["vms"]}


def test_f_a_failed_stage_keeps_the_handoffs_and_deploy_resumes_there(deployed):
    handoffs = {name: deployed.handoff(name) for name in
                ("template_id.txt", "ansible_inventory.json", "configure.json")}
    deployed.edit("lab/ansible/roles/automation_server/tasks/main.yml", "ansible.builtin.template:",
                  "ansible.builtin.no_such_module:")
    result = deployed.doit("deploy")
    assert result.returncode == 1
    assert stages_run(result) == ["configure"]
    assert "configure failed" in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert {name: deployed.handoff(name) for name in handoffs} == handoffs

    deployed.edit("lab/ansible/roles/automation_server/tasks/main.yml", "ansible.builtin.no_such_module:",
                  "ansible.builtin.template:")
    result = deployed.ok("deploy")
    assert stages_run(result) == ["configure"]


def test_provision_with_a_bad_template_id_changes_nothing(deployed):
    before = {path.name: path.read_bytes() for path in deployed.state.glob("*.json*")}
    before["template_id.txt"] = deployed.handoff("template_id.txt").encode()
    deployed.reset_calls()
    for bad in ("abc", "99", "-5", "1000000000"):
        result = deployed.doit("provision", "--template-id", bad)
        assert result.returncode != 0, bad
        assert "Traceback" not in result.stdout + result.stderr
        assert "not a Proxmox VMID" in result.stderr or "outside the Proxmox VMID range" in result.stderr
    assert not [c for c in deployed.tool_calls() if c.startswith("terraform")]
    after = {path.name: path.read_bytes() for path in deployed.state.glob("*.json*")
             if path.name in before}
    after["template_id.txt"] = deployed.handoff("template_id.txt").encode()
    for name in ("ansible_inventory.json", "configure.json", "template_id.txt"):
        assert after[name] == before[name], name


def test_provision_from_a_template_id_given_by_hand(deployed):
    current = int(deployed.handoff("template_id.txt"))
    result = deployed.ok("provision", "--template-id", str(current))
    assert stages_run(result) == ["provision"]
    result = deployed.ok("provision", env={"TEMPLATE_ID": str(current)})
    assert stages_skipped(result) == ["provision"]


def test_repeated_checks_reuse_the_clusters_answer_until_the_pipeline_changes_something(lab_project):
    project = lab_project(extra={"environments": {"lab": {"proxmox": {"check_cache": 600}}}})
    project.ok("deploy")
    project.ok("deploy")  # a no-op: its up-to-date checks saved the cluster's answer for the next commands
    template = int(project.handoff("template_id.txt"))
    project.admin("vm", {"vmid": template, "delete": True})  # behind the pipeline's back
    time.sleep(1.1)  # so that the answer's age shows
    build = next(line for line in project.ok("status").stdout.splitlines() if line.startswith("build"))
    assert "up to date" in build and f"template {template} exists on pve1, as of " in build
    project.ok("configure", "--force")  # the pipeline ran a tool: the next check asks the API again
    build = next(line for line in project.ok("status").stdout.splitlines() if line.startswith("build"))
    assert "stale" in build and f"template {template} does not exist on the cluster" in build
    project.ok("deploy")


def test_status_right_after_a_provision_sees_its_new_vms(lab_project):
    # The provision stage asks the cluster for its VMs before Terraform makes them; that answer must not outlive
    # the stage, or status would say for check_cache seconds that a VM just made "no longer exists".
    project = lab_project(extra={"environments": {"lab": {"proxmox": {"check_cache": 600}}}})
    project.ok("deploy")
    project.admin("vm", {"vmid": 201, "delete": True})
    project.ok("provision")  # re-creates VM 201
    rows = {line.split()[0]: line for line in project.ok("status").stdout.splitlines() if line.strip()}
    assert "up to date" in rows["provision"] and "no longer exist" not in rows["provision"], rows["provision"]
