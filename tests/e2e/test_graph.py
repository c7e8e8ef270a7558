"""The stage graph end to end on the real tools (issue 22), in the lab-graph environment of pipeline.yaml: two
templates, two Terraform roots (one VM group each, from different templates), a base playbook for every host of
the merged inventory, then a playbook for the web hosts.

The tests share one project and run in order; each leaves the graph deployed and up to date.
"""

import json
import os
import re
import signal

import pytest
import yaml

from tests.e2e.test_failing_safely import processes_in, start_in_own_group
from tests.labproject import REPO, LabProject, next_block, stages_run, stages_skipped, wait_for

pytestmark = pytest.mark.e2e

BRANCH_WEB = ["build-web", "provision-web"]
BRANCH_DB = ["build-db", "provision-db"]
JOIN = ["configure-base", "configure-web"]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A lab project whose default environment is lab-graph, on loopback addresses of its own."""
    project = LabProject(tmp_path_factory.mktemp("graph") / "project")
    env = yaml.safe_load((REPO / "pipeline.yaml").read_text())["environments"]["lab-graph"]
    project.config["environments"]["lab-graph"] = env
    block = next_block()
    env["lab"].update(address=f"{block}.1", boot_seconds=0.2, idle_minutes=20)
    env["proxmox"].update(url=f"https://{block}.1:8006", check_cache=0)
    stages = env["stages"]
    for name, host, n in (("provision-web", "web-01", 11), ("provision-db", "db-01", 21)):
        stages[name]["binary"] = "terraform"  # through the tool shim
        stages[name]["vars"]["vms"][host]["address"] = f"{block}.{n}"
    project.config["default_environment"] = "lab-graph"
    project.write_config()
    project.graph_state = project.root / ".pipeline" / "lab-graph"
    project.graph_block = block
    yield project
    project.doit("lab-stop")


def root_of(project, vmid: int):
    return project.graph_state / "vms" / str(vmid) / "root"


def handoffs(project) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(project.graph_state.glob("*-*.*"))
            if path.suffix in (".txt", ".json")}


def test_a_fresh_deploy_runs_the_branches_at_once_then_the_plays_on_the_merged_inventory(graph):
    result = graph.ok("deploy")
    assert sorted(stages_run(result)) == sorted(BRANCH_WEB + BRANCH_DB + JOIN)
    ran = stages_run(result)
    assert ran.index("build-db") < ran.index("provision-web")  # the two builds started together
    assert ran[-2:] == JOIN
    assert re.search(r"^    \[build-(web|db)\] ", result.stdout, re.M)  # lines inside a stage say whose
    for vmid in (211, 221):  # the base play ran on both roots' hosts, the web play on the web host only
        assert (root_of(graph, vmid) / "banner").exists()
    assert (root_of(graph, 211) / "etc" / "automation.conf").exists()
    assert not (root_of(graph, 221) / "etc" / "automation.conf").exists()
    recap = json.loads((graph.graph_state / "configure-base-configure.json").read_text())["recap"]
    assert sorted(recap) == ["db-01", "web-01"]
    web_vm = json.loads((graph.graph_state / "provision-web-ansible_inventory.json").read_text())
    db_vm = json.loads((graph.graph_state / "provision-db-ansible_inventory.json").read_text())
    templates = {int(graph.graph_state.joinpath(f"{b}-template_id.txt").read_text()) for b in ("build-web", "build-db")}
    assert len(templates) == 2 and {h["template_id"] for inv in (web_vm, db_vm) for h in _hosts(inv)} == templates
    status = graph.ok("status").stdout
    assert "└─ provision-web" in status and "provision-web, provision-db" in status


def test_a_no_op_starts_no_tool(graph):
    graph.reset_calls()
    result = graph.ok("deploy")
    assert stages_run(result) == [] and sorted(stages_skipped(result)) == sorted(BRANCH_WEB + BRANCH_DB + JOIN)
    assert graph.tool_calls() == []


def test_editing_one_template_rebuilds_it_and_reruns_only_what_is_downstream_of_it(graph):
    graph.append("lab/packer-db/db.pkrvars.hcl", "# an edit\n")
    result = graph.ok("deploy")
    assert sorted(stages_run(result)) == sorted(BRANCH_DB + JOIN)
    assert sorted(stages_skipped(result)) == sorted(BRANCH_WEB)


def test_retention_of_one_build_never_deletes_the_template_of_another(graph):
    db_templates = [e["template_id"] for e in _history(graph) if e.get("stage") == "build-db"
                    and e.get("action") == "build" and e.get("outcome") == "ok"]
    assert len(set(db_templates)) == 2  # built, then rebuilt by the edit above: both kept (keep_templates: 2)
    built = []
    for _ in range(3):  # keep_templates: 2 of its own
        graph.ok("build-web", "--rebuild")
        built.append(int((graph.graph_state / "build-web-template_id.txt").read_text()))
    templates = {vm["vmid"] for vm in graph.admin("state", environment="lab-graph")["vms"] if vm["template"]}
    assert set(db_templates) <= templates and set(built[-2:]) <= templates and built[0] not in templates
    graph.ok("deploy")


def test_a_failing_branch_leaves_the_other_deployed_and_the_summary_right(graph):
    before = handoffs(graph)
    saved = json.dumps(graph.config)
    stages = graph.config["environments"]["lab-graph"]["stages"]
    stages["build-db"]["vars"]["base_template_id"] = "8999"  # no such base: the build fails
    stages["provision-web"]["vars"]["vms"]["web-01"]["sshd_delay"] = "0"  # a change: the web branch reruns
    graph.write_config()
    try:
        result = graph.doit("deploy")
    finally:
        graph.config = json.loads(saved)
        graph.write_config()
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "✗ build-db failed" in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("deploy failed in ") and "build-db failed" in summary
    assert "provision-db not run" in summary and "configure-base not run" in summary
    assert re.search(r"provision-web \d", summary)  # the web branch ran, and is deployed
    after = handoffs(graph)
    assert after["build-db-template_id.txt"] == before["build-db-template_id.txt"]
    assert after["provision-db-ansible_inventory.json"] == before["provision-db-ansible_inventory.json"]
    assert 211 in {vm["vmid"] for vm in graph.admin("state", environment="lab-graph")["vms"]}
    assert "the last run failed at" in graph.ok("status").stdout
    graph.ok("deploy")  # with the change undone, the graph is whole again


def test_a_plan_of_a_change_to_one_branch_is_approved_and_applied(graph):
    stages = graph.config["environments"]["lab-graph"]["stages"]
    stages["provision-web"]["vars"]["vms"]["web-02"] = {"vm_id": 212, "address": f"{graph.graph_block}.12"}
    graph.write_config()
    planned = graph.ok("plan").stdout
    rows = {line.split()[1]: line for line in planned.splitlines()  # "~ provision-web  terraform  run ..."
            if len(line.split()) > 1 and line.split()[1] in BRANCH_WEB + BRANCH_DB + JOIN}
    assert " run " in rows["provision-web"] and "+ null_resource.vm[\"web-02\"]" in planned
    assert all(" keep " in rows[name] for name in ["build-web", "build-db", "provision-db"])
    assert all(" later " in rows[name] for name in JOIN)
    plan_id = re.search(r"doit approve --plan ([^\s,]+)", planned).group(1)
    graph.ok("approve", "--plan", plan_id)
    result = graph.ok("apply", "--plan", plan_id)
    assert stages_run(result) == ["provision-web"]
    assert 212 in {vm["vmid"] for vm in graph.admin("state", environment="lab-graph")["vms"]}
    assert sorted(stages_run(graph.ok("deploy"))) == JOIN  # the next deploy configures the new host


def test_ctrl_c_while_two_stages_run_stops_both_and_says_so_once(graph):
    before = handoffs(graph)
    saved = json.dumps(graph.config)
    stages = graph.config["environments"]["lab-graph"]["stages"]
    for name in ("provision-web", "provision-db"):
        stages[name]["vars"]["apply_delay"] = 300  # a change (stale), and a slow apply: caught in the middle
    graph.admin("vm", {"vmid": 211, "delete": True}, environment="lab-graph")
    graph.admin("vm", {"vmid": 221, "delete": True}, environment="lab-graph")
    graph.write_config()
    victim = start_in_own_group(graph, "deploy")
    try:
        waiting = "(local-exec): waiting 300s first"
        wait_for(lambda: all(waiting in _log(graph, name) for name in ("provision-web", "provision-db"))
                 or victim.poll() is not None, "both applies to be in the middle", timeout=120)
        assert victim.poll() is None, victim.communicate()
        os.killpg(victim.pid, signal.SIGINT)
        out, err = victim.communicate(timeout=120)
    finally:
        if victim.poll() is None:
            victim.kill()
        graph.config = json.loads(saved)
        graph.write_config()
    assert victim.returncode == 130, out + err
    said = [line.strip() for line in (out + err).splitlines() if "interrupted" in line]
    assert len(said) == 1 and said[0].startswith("✗ provision-web, provision-db were interrupted by SIGINT"), said
    assert "Traceback" not in out + err and " done in " not in out + err
    assert handoffs(graph) == before
    for folder in ("lab/terraform-web", "lab/terraform-db"):
        assert processes_in(graph.root / folder) == []  # both tools stopped
    assert sorted(stages_run(graph.ok("deploy"))) == sorted(["provision-web", "provision-db"] + JOIN)


def test_destroy_tears_down_in_reverse_order_and_says_which_first(graph):
    result = graph.ok("destroy")
    assert "destroy: provision-db, then provision-web" in result.stdout
    assert result.stdout.index("↻ provision-db") < result.stdout.index("↻ provision-web")
    vms = {vm["vmid"] for vm in graph.admin("state", environment="lab-graph")["vms"]}
    assert not vms & {211, 212, 221}
    assert not list(graph.graph_state.glob("provision-*-ansible_inventory.json"))
    assert sorted(stages_run(graph.ok("deploy"))) == sorted(["provision-web", "provision-db"] + JOIN)


def _log(project, stage: str) -> str:
    logs = sorted(project.graph_state.glob(f"logs/*/{stage}.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text() if logs else ""


def _hosts(inventory: dict) -> list[dict]:
    found = []
    for group in inventory["all"]["children"].values():
        found += group["hosts"].values()
    return found


def _history(project) -> list[dict]:
    return [json.loads(line) for line in (project.graph_state / "history.jsonl").read_text().splitlines()]
