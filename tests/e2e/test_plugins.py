"""Plugins end to end (issue 3): the example third-party plugin, installed through its entry point, adds a
stage kind that runs between two built-in stages; the run log and the webhook work in a lab deploy."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.labproject import REPO, stages_run
from tests.unit.test_webhook import Endpoint

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The example plugin, pip-installed into a scratch directory that goes on PYTHONPATH."""
    site = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("source") / "proxpipe-command-stage"
    shutil.copytree(REPO / "examples" / "plugins" / "proxpipe-command-stage", source)  # the build writes there
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--target", str(site), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert list(site.glob("proxpipe_command_stage-*.dist-info/entry_points.txt"))
    return site


FILTER = """\
import json, os
inventory = json.load(open(os.environ["PIPELINE_INPUT"]))
inventory["all"]["children"]["jump_hosts"].setdefault("vars", {})["automation_user"] = "USER"
json.dump(inventory, open(os.environ["PIPELINE_OUTPUT"], "w"))
"""


def with_enrich(project, user: str = "from-plugin", **options) -> None:
    """The project's pipeline with the example plugin's `enrich` stage between provision and configure."""
    (project.root / "filters").mkdir(exist_ok=True)
    (project.root / "filters" / "add_vars.py").write_text(FILTER.replace("USER", user))
    stages = project.env["stages"]
    project.env["stages"] = {"build": stages["build"], "provision": stages["provision"],
                             "enrich": {"kind": "command", "dir": "filters", "handoff": "enriched_inventory.json",
                                        "command": ["python3", "add_vars.py"], **options},
                             "configure": stages["configure"]}
    project.config["plugins"] = {"command-stage": {"announce": True}}
    project.write_config()


def login(project) -> str:
    return (project.state / "vms" / "201" / "root" / "etc" / "automation.conf").read_text()


def test_a_third_party_stage_kind_between_two_built_in_stages(lab_project, plugin_site):
    project = lab_project()
    with_enrich(project)
    env = {"PYTHONPATH": str(plugin_site)}

    listed = project.ok("list", env=env).stdout
    assert "enrich" in listed and "command: transform the inventory with a command" in listed
    result = project.ok("deploy", env=env)
    assert stages_run(result) == ["build", "provision", "enrich", "configure"]
    assert "[command-stage] enrich handed off 1 host (jump-01) in" in result.stdout
    enriched = json.loads(project.handoff("enriched_inventory.json"))
    assert enriched["all"]["children"]["jump_hosts"]["vars"]["automation_user"] == "from-plugin"
    assert "login = from-plugin" in login(project)  # configure read the plugin's handoff
    assert json.loads(project.handoff("configure.json"))["inventory"].endswith("enriched_inventory.json")

    # it is a stage like the others: editing its command reruns it, and configure only if its output changed
    project.append("filters/add_vars.py", "# a comment\n")
    result = project.ok("deploy", env=env)
    assert stages_run(result) == ["enrich"]

    # without the plugin installed the configuration is refused with one line
    result = project.doit("status")
    assert result.returncode == 3
    assert "unknown plugin" in result.stderr or "unknown stage kind 'command'" in result.stderr


def test_a_third_party_stage_kind_is_rolled_back_restored_and_destroyed(lab_project, plugin_site):
    project = lab_project()
    with_enrich(project, destroy_command=["sh", "-c", "cp \"$PIPELINE_INPUT\" deregistered.json"])
    env = {"PYTHONPATH": str(plugin_site)}
    project.ok("deploy", env=env)
    first = project.handoff("enriched_inventory.json")
    (project.root / "filters" / "add_vars.py").write_text(FILTER.replace("USER", "second"))
    assert stages_run(project.ok("deploy", env=env)) == ["enrich", "configure"]
    assert "login = second" in login(project)

    # rollback: the kind's own verb hands off the inventory before, and the engine runs configure again
    result = project.ok("rollback", "--stage", "enrich", env=env)
    assert "↶ enrich: handed off the inventory before the last" in result.stdout
    assert stages_run(result) == ["configure"]
    assert project.handoff("enriched_inventory.json") == first and "login = from-plugin" in login(project)
    assert [e["action"] for e in project.history() if e["stage"] == "enrich"][-1] == "rollback"

    # restore: a damaged handoff written back from what the kind kept, nothing else run
    (project.state / "enriched_inventory.json").write_text("garbage\n")
    refused = project.doit("deploy", env=env)
    assert refused.returncode == 1 and "restore it with `doit rollback --stage enrich --mode restore`" in refused.stderr
    project.reset_calls()
    result = project.ok("rollback", "--stage", "enrich", "--mode", "restore", env=env)
    assert project.handoff("enriched_inventory.json") == first and stages_run(result) == []
    assert project.tool_calls() == []
    assert stages_run(project.ok("deploy", env=env)) == []

    # destroy: the last stage that tears down first, so enrich's destroy_command saw its handoff
    result = project.ok("destroy", env=env)
    assert result.stdout.index("↻ enrich") < result.stdout.index("↻ provision")
    assert (project.root / "filters" / "deregistered.json").read_text() == first
    assert not (project.state / "enriched_inventory.json").exists()
    assert not (project.state / "ansible_inventory.json").exists()  # provision was torn down too


def test_the_run_log_and_the_webhook_in_a_lab_deploy(lab_project):
    server = Endpoint("accept")
    try:
        project = lab_project(extra={"plugins": {"webhook": {"url": "${HOOK_URL}"}}})
        project.ok("deploy", env={"HOOK_URL": server.url})
        project.ok("deploy", env={"HOOK_URL": server.url})
    finally:
        server.close()
    runs = [json.loads(line) for line in (project.state / "runs.jsonl").read_text().splitlines()]
    first, second = runs
    assert [(s["name"], s["status"]) for s in first["stages"]] == [("build", "ran"), ("provision", "ran"),
                                                                    ("configure", "ran")]
    assert all(s["duration"] > 0 for s in first["stages"])
    versions = {k: v for s in first["stages"] for k, v in s.get("tool_versions", {}).items()}
    assert versions == {"packer": "1.6.6", "terraform": "1.0.3", "ansible": versions["ansible"]}
    assert [s["status"] for s in second["stages"]] == ["skipped"] * 3
    (body,) = server.bodies  # the second deploy changed nothing: no notification
    assert body["ok"] and body["stages_run"] == ["build", "provision", "configure"]
    assert body["text"].startswith("✅ deploy on lab succeeded")
    report = project.ok("report").stdout
    assert first["run"] in report and second["run"] in report
