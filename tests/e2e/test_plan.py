"""Plan, approve, apply (issue 15), on the real tools in the lab: what a deploy would do is shown before it does
it, across Packer, Terraform and Ansible; apply runs exactly the reviewed plan, and refuses a stale or unapproved one.

The tests share one deployed project and run in order; each leaves it deployed and up to date.
"""

import json
import stat

import pytest

from tests.labproject import stages_run

pytestmark = pytest.mark.e2e


def plan(project, *args):
    result = project.ok("plan", *args)
    plan_id = next(line.split()[1].rstrip(":") for line in result.stdout.splitlines() if line.startswith("plan "))
    return plan_id, result.stdout


def record(project, plan_id):
    return json.loads((project.state / "plans" / f"{plan_id}.json").read_text())


def tools_called(project):
    """The tools a command started (ssh is how ansible-playbook and the readiness check reach the hosts)."""
    return [call.split()[0] for call in project.tool_calls() if not call.startswith("ssh ")]


def test_an_up_to_date_environment_plans_without_starting_a_tool(deployed):
    deployed.reset_calls()
    plan_id, out = plan(deployed)
    assert deployed.tool_calls() == []
    assert "nothing to do, every stage is up to date" in out
    assert [s["action"] for s in record(deployed, plan_id)["stages"]] == ["keep", "keep", "keep"]


def test_plan_approve_apply_on_a_changed_playbook(deployed):
    deployed.edit("lab/ansible/roles/automation_server/defaults/main.yml", "- curl", "- curl\n  - htop")
    deployed.reset_calls()
    plan_id, out = plan(deployed)
    assert tools_called(deployed) == ["ansible-playbook"]
    assert "--check --diff" in next(c for c in deployed.tool_calls() if c.startswith("ansible-playbook"))
    planned = record(deployed, plan_id)
    assert [(s["name"], s["action"]) for s in planned["stages"]] == [
        ("build", "keep"), ("provision", "keep"), ("configure", "run")]
    assert planned["stages"][2]["changes"] == ["jump-01: automation_server : Write the automation server's "
                                               "configuration"]
    assert "automation_server : Write the automation server's configuration" in out
    markdown = (deployed.state / "plans" / f"{plan_id}.md").read_text()
    assert f"proxpipe plan `{plan_id}`" in markdown and "| `configure` | run |" in markdown
    assert len(markdown.splitlines()) < 40  # short enough for a pull-request comment
    deployed.ok("approve", "--plan", plan_id, "--by", "reviewer")
    deployed.reset_calls()
    result = deployed.ok("apply", "--plan", plan_id)
    assert tools_called(deployed) == ["ansible-playbook"]
    assert "--check" not in next(c for c in deployed.tool_calls() if c.startswith("ansible-playbook"))
    assert stages_run(result) == ["configure"]
    assert "\nhtop\n" in (deployed.state / "vms" / "201" / "root" / "etc" / "automation.conf").read_text()
    last = [e for e in deployed.history() if e["stage"] == "configure"][-1]
    assert last["plan_id"] == plan_id and last["approved_by"] == "reviewer"
    deployed.reset_calls()
    assert deployed.ok("deploy") and deployed.tool_calls() == []  # the plan left it up to date


def test_a_new_template_is_planned_in_two_steps(deployed):
    plan_id, _ = plan(deployed, "--refresh")  # nothing stale: a refresh finds no drift either
    assert [s["action"] for s in record(deployed, plan_id)["stages"]] == ["keep", "keep", "keep"]
    deployed.append("lab/packer/lab-golden.pkr.hcl", "\n# a new golden image\n")
    first, _ = plan(deployed)
    assert [s["action"] for s in record(deployed, first)["stages"]] == ["run", "later", "later"]
    deployed.reset_calls()
    deployed.ok("apply", "--plan", first)
    assert sorted(set(tools_called(deployed))) == ["packer"]
    second, _ = plan(deployed)
    stages = record(deployed, second)["stages"]
    assert [s["action"] for s in stages] == ["keep", "run", "later"]
    assert any(change.startswith("-/+ null_resource.vm") for change in stages[1]["changes"])
    saved = deployed.state / "plan-files" / f"{second}.provision"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # it holds variable values
    deployed.ok("apply", "--plan", second)
    assert not saved.exists() and not list(deployed.state.rglob("*.tfplan"))
    third, _ = plan(deployed)
    assert [s["action"] for s in record(deployed, third)["stages"]] == ["keep", "keep", "run"]
    deployed.ok("apply", "--plan", third)
    assert deployed.ok("status") and "stale" not in deployed.ok("status").stdout


def test_a_plan_is_stale_after_an_edit(deployed):
    deployed.edit("lab/ansible/roles/automation_server/defaults/main.yml", "- htop", "- tmux")
    plan_id, _ = plan(deployed)
    deployed.edit("lab/ansible/site.yml", "gather_facts: false", "gather_facts: false\n  # edited after planning")
    deployed.reset_calls()
    result = deployed.doit("apply", "--plan", plan_id)
    assert result.returncode == 1 and deployed.tool_calls() == []
    assert f"plan {plan_id} is stale: lab/ansible/site.yml changed" in result.stderr
    deployed.ok("deploy")


def test_a_plan_is_stale_after_another_deploy(deployed):
    deployed.env["stages"]["provision"]["vars"]["vms"]["jump-02"] = {
        "vm_id": 202, "address": f"{deployed.block}.12"}
    deployed.write_config()
    plan_id, _ = plan(deployed)
    assert record(deployed, plan_id)["stages"][1]["action"] == "run"
    deployed.ok("deploy")  # someone deploys in between: the Terraform state moves on
    result = deployed.doit("apply", "--plan", plan_id)
    assert result.returncode == 1
    assert f"plan {plan_id} is stale: the Terraform state of provision changed since the plan (serial" in result.stderr
    del deployed.env["stages"]["provision"]["vars"]["vms"]["jump-02"]
    deployed.write_config()
    deployed.ok("deploy")


def test_a_plan_is_stale_when_its_template_is_deleted_on_the_cluster(deployed):
    deployed.edit("lab/ansible/roles/automation_server/defaults/main.yml", "- tmux", "- mtr")
    plan_id, _ = plan(deployed)
    template = int(deployed.handoff("template_id.txt"))
    deployed.admin("vm", {"vmid": template, "delete": True})
    result = deployed.doit("apply", "--plan", plan_id)
    assert result.returncode == 1
    assert f"plan {plan_id} is stale: template {template} does not exist on the cluster" in result.stderr
    deployed.ok("deploy")  # a new template, and the VMs cloned from it


def test_approval_required_and_by_someone_else(deployed):
    deployed.env["approval"] = "second-person"
    deployed.write_config()
    try:
        refused = deployed.doit("deploy")
        assert refused.returncode == 1 and "requires an approved plan" in refused.stderr
        deployed.edit("lab/ansible/roles/automation_server/defaults/main.yml", "- mtr", "- strace")
        plan_id, _ = plan(deployed)
        result = deployed.doit("apply", "--plan", plan_id)
        assert result.returncode == 1 and f"plan {plan_id} is not approved" in result.stderr
        own = deployed.doit("approve", "--plan", plan_id)
        assert own.returncode == 1 and "needs another person's approval" in own.stderr
        deployed.ok("approve", "--plan", plan_id, "--by", "second-reviewer")
        deployed.ok("apply", "--plan", plan_id)
    finally:
        del deployed.env["approval"]
        deployed.write_config()
    deployed.ok("deploy")
