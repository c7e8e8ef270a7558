"""Drift end to end in the lab (issue 26): in sync after a deploy; a template changed through the API, a file the
playbook manages edited on a VM and a VM stopped through the API are each reported, exit 2, and the webhook gets
the summary; --fix puts it back; with the API down, exit 1 in one line. (The lab's null provider cannot drift:
Terraform's refresh-only plan is read in tests/unit/test_drift_terraform.py from output as real providers write it.)
"""

import json

import pytest

from tests.labproject import LabProject
from tests.unit.test_webhook import Endpoint

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    endpoint = Endpoint("accept")
    project = LabProject(tmp_path_factory.mktemp("drift") / "project", vms=2,
                         extra={"plugins": {"webhook": {"url": "${HOOK_URL}", "on": ["drift"]}}})
    project.extra_env["HOOK_URL"] = endpoint.url
    project.ok("deploy")
    project.endpoint = endpoint
    yield project
    project.stop()
    endpoint.close()


def summary_of(result) -> dict[str, str]:
    return {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in result.stdout.splitlines()
            if line.startswith("  ") and ": " in line and not line.startswith("    ")}


def test_after_a_deploy_everything_is_in_sync_and_no_build_starts(lab):
    lab.reset_calls()
    result = lab.doit("drift", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "in sync" and [s["status"] for s in report["stages"]] == ["in sync"] * 3
    calls = lab.tool_calls()
    assert not [c for c in calls if c.startswith("packer")] and any("plan -refresh-only" in c for c in calls)
    assert any("--check --diff" in c for c in calls) and not any(" apply" in c for c in calls)


def test_changes_made_outside_the_pipeline_are_each_reported_and_notified(lab, tmp_path):
    template = int(lab.handoff("template_id.txt"))
    lab.admin("vm", {"vmid": template, "config": {"memory": 4096}})
    config = lab.state / "vms" / "201" / "root" / "etc" / "automation.conf"
    config.write_text(config.read_text() + "# edited by hand\n")
    lab.admin("vm", {"vmid": 202, "set": {"status": "stopped"}})
    result = lab.doit("drift", "--output", str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    summary = summary_of(result)
    assert summary["build"] == "drifted: 1 field" and summary["provision"] == "drifted: 1 host"
    assert summary["configure"] == "drifted: 1 host"
    assert "memory: 1024 -> 4096" in result.stdout and "jump-02: VM 202 is stopped" in result.stdout
    assert "jump-01: automation_server : Write the automation server's configuration" in result.stdout
    assert "+# edited by hand" in result.stdout or "-# edited by hand" in result.stdout  # the diff
    assert json.loads((tmp_path / "drift.json").read_text())["exit_code"] == 2
    assert "provision" in (tmp_path / "drift.md").read_text()
    (body,) = [b for b in lab.endpoint.bodies if b.get("event") == "drift"]
    assert body["status"] == "drifted" and body["drifted_stages"] == ["build", "provision", "configure"]
    assert "• configure: drifted: 1 host" in body["text"]
    found = [e for e in lab.history() if e["action"] == "drift"][-3:]
    assert [(e["stage"], e["outcome"]) for e in found] == [("build", "drifted"), ("provision", "drifted"),
                                                          ("configure", "drifted")]
    assert "drift" in lab.ok("history").stdout and "drifted" in lab.ok("report").stdout


def test_fix_runs_the_drifted_stages_again_and_then_all_is_in_sync(lab):
    result = lab.doit("drift", "--fix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drift --fix: running build, provision, configure again" in result.stdout
    again = lab.doit("drift")
    assert again.returncode == 0 and "all 3 stages in sync" in again.stdout, again.stdout + again.stderr


def test_fix_is_refused_where_a_plan_must_be_approved(lab):
    config = lab.state / "vms" / "201" / "root" / "etc" / "automation.conf"
    config.write_text(config.read_text() + "# edited again\n")
    lab.env["approval"] = "required"
    lab.write_config()
    try:
        result = lab.doit("drift", "--fix")
    finally:
        lab.env.pop("approval")
        lab.write_config()
    assert result.returncode == 1 and "requires an approved plan" in result.stderr
    assert "# edited again" in config.read_text()
    lab.ok("configure", "--force")


def test_with_the_api_down_it_cannot_tell_exit_1_in_one_line(lab):
    lab.env["proxmox"]["retry"] = {"attempts": 1, "max_seconds": 1}
    lab.write_config()
    lab.admin("call", {"method": "fail", "args": ["GET", "/version"], "kwargs": {"status": 500,
                                                                               "message": "proxy down"}})
    try:
        result = lab.doit("drift")
    finally:
        lab.admin("settings", {"clear_faults": True})
        lab.env["proxmox"].pop("retry")
        lab.write_config()
    assert result.returncode == 1, result.stdout + result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith("error: drift: cannot tell, the Proxmox API does not answer"), said
