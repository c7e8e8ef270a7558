"""Every hook fires as documented, through real doit runs of a pipeline of shell stages (tests/plugins/recorder.py).

tests/unit/test_docs.py checks that each hook has a test here named test_hook_<hook>.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxpipe.engine.pipeline import load_config as load
from tests.labproject import REPO

DOIT = str(Path(sys.executable).parent / "doit")
PROXPIPE = str(Path(sys.executable).parent / "proxpipe")


class ShellProject:
    def __init__(self, root: Path, plugins: dict | None = None, stages: dict | None = None):
        self.root = root
        self.events_file = root / "events.jsonl"
        (root / "work").mkdir(parents=True)
        shutil.copy(REPO / "dodo.py", root / "dodo.py")
        self.config = {"plugins": {"recorder": {"label": "L"}, **(plugins or {})}, "environments": {"local": {
            "stages": stages or {
                "make": {"kind": "shell-source", "dir": "work", "handoff": "make.txt",
                         "command": "echo hello > $PIPELINE_OUTPUT"},
                "upper": {"kind": "shell", "dir": "work", "handoff": "upper.txt",
                          "command": "tr a-z A-Z < $PIPELINE_INPUT > $PIPELINE_OUTPUT"}}}}}
        self.write()

    def write(self):
        (self.root / "pipeline.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def doit(self, *args, env=None, proxpipe=False):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
        environ.update({"PROXPIPE_PLUGINS": "recorder", "PYTHONPATH": str(REPO / "tests" / "plugins"),
                        "NO_COLOR": "1", "RECORDER_FILE": str(self.events_file), **(env or {})})
        return subprocess.run([PROXPIPE if proxpipe else DOIT, *args], cwd=self.root, env=environ,
                              capture_output=True, text=True, timeout=60)

    def events(self, hook=None):
        if not self.events_file.exists():
            return []
        events = [json.loads(line) for line in self.events_file.read_text().splitlines()]
        self.events_file.unlink()
        return [e for e in events if hook is None or e["hook"] == hook]


@pytest.fixture
def shell(tmp_path):
    return ShellProject(tmp_path)


def test_hook_register_stage_kinds(shell):
    result = shell.doit("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (shell.root / ".pipeline" / "local" / "upper.txt").read_text() == "HELLO\n"


def test_hook_run_started(shell):
    shell.doit("deploy")
    (event,) = shell.events("run_started")
    assert event == {"hook": "run_started", "command": "deploy", "environment": "local", "label": "L"}


def test_hook_stage_started(shell):
    shell.doit("deploy")
    assert [e["stage"] for e in shell.events("stage_started")] == ["make", "upper"]


def test_hook_handoff_written(shell):
    shell.doit("deploy")
    written = shell.events("handoff_written")
    assert [(Path(e["path"]).name, e["value"]) for e in written] == [("make.txt", "6 bytes"), ("upper.txt", "6 bytes")]
    shell.doit("deploy", "--force")  # same content again: not a new handoff
    assert shell.events("handoff_written") == []


def test_hook_stage_finished(shell):
    shell.doit("deploy")
    finished = shell.events("stage_finished")
    assert [e["stage"] for e in finished] == ["make", "upper"] and all(e["duration"] >= 0 for e in finished)


def test_hook_stage_skipped(shell):
    shell.doit("deploy")
    shell.events()
    result = shell.doit("deploy")
    assert [e["stage"] for e in shell.events("stage_skipped")] == ["make", "upper"]
    assert "· make  up to date" in result.stdout


def test_hook_stage_failed(shell):
    shell.config["environments"]["local"]["stages"]["upper"]["command"] = "echo broken >&2; exit 3"
    shell.write()
    result = shell.doit("deploy")
    assert result.returncode == 1
    (event,) = shell.events("stage_failed")
    assert event["stage"] == "upper" and "exit 3" in event["message"]
    assert "│ broken" in result.stdout and "full log: .pipeline/local/logs/" in result.stdout


def test_hook_run_finished(shell):
    shell.doit("deploy")
    (event,) = shell.events("run_finished")
    assert event["ok"] is True and event["outcomes"] == [["make", "ran"], ["upper", "ran"]]
    shell.config["environments"]["local"]["stages"]["upper"]["command"] = "exit 1"
    shell.write()
    shell.doit("deploy")
    (event,) = shell.events("run_finished")
    assert event["ok"] is False and event["outcomes"] == [["make", "skipped"], ["upper", "failed"]]


def test_hook_register_checks(shell):
    result = shell.doit("validate", "--check", "rec-ok", "--check", "rec-skip", "--check", "rec-explodes",
                        "--check", "rec-bad")
    assert result.returncode == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("rec-")}
    assert " ok " in rows["rec-ok"] and " skip " in rows["rec-skip"] and "does not apply here" in rows["rec-skip"]
    assert " FAIL " in rows["rec-bad"]
    assert "the check raised ZeroDivisionError: division by zero" in rows["rec-explodes"]
    report = json.loads((shell.root / ".pipeline" / "local" / "validate.json").read_text())
    assert report["counts"] == {"passed": 1, "failed": 2, "skipped": 1}
    assert shell.doit("validate", "--check", "rec-ok").returncode == 0


@contextlib.contextmanager
def recorder_loaded():
    os.environ["PROXPIPE_PLUGINS"] = "recorder"
    sys.path.insert(0, str(REPO / "tests" / "plugins"))
    try:
        yield
    finally:
        del os.environ["PROXPIPE_PLUGINS"]
        sys.path.remove(str(REPO / "tests" / "plugins"))


def test_hook_docs_context(shell):
    with recorder_loaded():
        cfg = load(shell.root / "pipeline.yaml", environ={})
        assert cfg.plugins.docs_context(cfg.environment("local")) == {"recorder": "docs for local"}


def test_hook_drift_detected(shell, monkeypatch, capfd):
    from tests.driftreports import drift_run, drifted_report

    monkeypatch.setenv("RECORDER_FILE", str(shell.events_file))
    with recorder_loaded():
        cfg = load(shell.root / "pipeline.yaml", environ={})
        run = drift_run(shell.root / ".pipeline" / "local", cfg.plugins.options)
        cfg.plugins.drift_detected(run, drifted_report())
        assert shell.events("drift_detected") == [{
            "hook": "drift_detected", "command": "drift", "environment": "production", "status": "drifted",
            "summary": ["build: drifted: 1 field", "provision: drifted: 2 resources, 1 file",
                        "configure: drifted: 1 host"], "drifted": ["build", "provision", "configure"]}]
        monkeypatch.setenv("RECORDER_RAISE", "drift_detected")  # an event hook: a plugin's exception only warns
        cfg.plugins.drift_detected(run, drifted_report())
    assert "plugin recorder failed in drift_detected: RuntimeError: boom in drift_detected" in capfd.readouterr().err


def test_hook_register_commands(shell):
    assert "rec-hello" in shell.doit("list").stdout
    result = shell.doit("rec-hello", "--name", "you")
    assert result.returncode == 0, result.stdout + result.stderr
    assert shell.events("rec-hello") == [{"hook": "rec-hello", "name": "you", "environment": "local"}]


def test_hook_register_examples(shell, tmp_path):
    target = tmp_path / "demo"
    target.mkdir()
    result = shell.doit("init", "--example", "rec-demo", "--dir", str(target), proxpipe=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "work" / "hello.txt").read_text() == "hello\n" and (target / "dodo.py").exists()
    assert "prepared demo" in result.stdout


def test_hook_environment_fields(shell):
    shell.config["environments"]["local"]["recorded"] = "hello"
    shell.write()
    with recorder_loaded():
        assert load(shell.root / "pipeline.yaml", environ={}).environment("local").extras["recorded"] == "hello"
    shell.config["environments"]["local"]["recorded"] = ["not", "a", "string"]
    shell.write()
    result = shell.doit("list")
    assert result.returncode == 3 and "environments.local.recorded: expected a string" in result.stderr


def test_hook_proxmox_endpoint(shell):
    shell.config["environments"]["local"].update(recorded="r", proxmox={
        "url": "https://127.0.0.1:1", "node": "pve", "token_id": "a@pam!b", "token_secret": "${NO_SUCH_VAR:-x}",
        "retry": {"attempts": 1}})
    shell.write()
    result = shell.doit("doctor")
    assert result.returncode == 1 and "Proxmox API: https://127.0.0.1:1" in result.stdout
    assert shell.events("proxmox_endpoint") == [{"hook": "proxmox_endpoint", "environment": "local",
                                                 "recorded": "r"}]


def test_hook_state_endpoint(shell):
    shell.config["project"] = "rec"
    shell.config["environments"]["local"]["state"] = {
        "url": "postgresql://someone:${REC_DB_PASSWORD}@127.0.0.1:1/nowhere?connect_timeout=5"}
    shell.write()
    result = shell.doit("status", env={"REC_DB_PASSWORD": "s3cret-pa55word"})
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert ("cannot reach database 127.0.0.1:1/nowhere (schema proxpipe_rec_local): connection to server at "
            '"127.0.0.1", port 1 failed: Connection refused') in result.stderr
    assert "s3cret-pa55word" not in result.stdout + result.stderr and "someone" not in result.stderr
    assert shell.events("state_endpoint") == [{"hook": "state_endpoint", "environment": "local",
                                               "schema": "proxpipe_rec_local"}]


def test_hook_doctor_tools(shell):
    result = shell.doit("doctor")
    row = next(line for line in result.stdout.splitlines() if line.startswith("sh "))
    assert "the recorder" in row and "/sh" in row


def test_hooks_are_called_through_pluggy_with_its_ordering_and_wrappers(tmp_path):
    (tmp_path / "ordered.py").write_text(
        "from proxpipe.api import hookimpl\nCALLS = []\n\n"
        "@hookimpl(tryfirst=True)\ndef run_started(run):\n    CALLS.append('first')\n\n"
        "@hookimpl(wrapper=True)\ndef run_finished(run, ok, outcomes):\n    CALLS.append('before')\n"
        "    yield\n    CALLS.append('after')\n")
    sys.path.insert(0, str(tmp_path))
    os.environ["PROXPIPE_PLUGINS"] = "recorder,ordered"
    sys.path.insert(0, str(REPO / "tests" / "plugins"))
    try:
        import ordered

        plugins = load(ShellProject(tmp_path / "p").root / "pipeline.yaml", environ={}).plugins
        traced = []
        plugins.pm.add_hookcall_monitoring(lambda name, impls, kwargs: traced.append(name), lambda *args: None)
        plugins.run_started(run=None)
        plugins.run_finished(run=None, ok=True, outcomes=[])
        assert ordered.CALLS == ["first", "before", "after"] and traced == ["run_started", "run_finished"]
    finally:
        del os.environ["PROXPIPE_PLUGINS"]
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(REPO / "tests" / "plugins"))


def test_an_event_hook_that_raises_only_warns_by_default(shell):
    result = shell.doit("deploy", env={"RECORDER_RAISE": "stage_started"})
    assert result.returncode == 0
    assert "warning: plugin recorder failed in stage_started: RuntimeError: boom in stage_started" in result.stderr


def test_an_event_hook_that_raises_fails_the_run_when_configured(shell):
    shell.config["plugins"]["recorder"]["on_error"] = "fail"
    shell.write()
    result = shell.doit("deploy", env={"RECORDER_RAISE": "stage_started"})
    assert result.returncode == 1
    assert "plugin recorder failed in stage_started: RuntimeError: boom in stage_started" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_hook_implementation_that_matches_no_hook_is_an_error_at_start_up(tmp_path):
    (tmp_path / "badplugin.py").write_text(
        "from proxpipe.api import hookimpl\n\n@hookimpl\ndef stage_finnished(run):\n    pass\n")
    project = ShellProject(tmp_path / "p")
    result = project.doit("list", env={"PROXPIPE_PLUGINS": "recorder,badplugin",
                                       "PYTHONPATH": f"{REPO / 'tests' / 'plugins'}:{tmp_path}"})
    assert result.returncode == 3
    assert result.stderr.startswith("ERROR: plugin badplugin: unknown hook 'stage_finnished'")


def test_unknown_plugin_options_and_names_are_errors(shell):
    shell.config["plugins"]["recorder"]["colour"] = "red"
    shell.write()
    result = shell.doit("list")
    assert result.returncode == 3 and "plugins.recorder.colour: unknown key" in result.stderr
    shell.config["plugins"] = {"recordr": {}}
    shell.write()
    result = shell.doit("list")
    assert result.returncode == 3 and "plugins.recordr: unknown plugin (installed: " in result.stderr


def test_a_stage_kind_registered_twice_is_an_error(tmp_path):
    (tmp_path / "twice.py").write_text(
        "from proxpipe.api import hookimpl\nfrom proxpipe.stages.packer import PackerStage\n\n"
        "@hookimpl\ndef register_stage_kinds(register):\n    register('packer', PackerStage)\n")
    project = ShellProject(tmp_path / "p")
    result = project.doit("list", env={"PROXPIPE_PLUGINS": "recorder,twice",
                                       "PYTHONPATH": f"{REPO / 'tests' / 'plugins'}:{tmp_path}"})
    assert result.returncode == 3
    assert "stage kind 'packer' is registered twice: by plugin stages and by plugin twice" in result.stderr


def test_built_in_plugins_can_be_disabled(shell):
    shell.config["plugins"]["runlog"] = {"enabled": False}
    shell.write()
    shell.doit("deploy")
    assert not (shell.root / ".pipeline" / "local" / "runs.jsonl").exists()
    result = shell.doit("report")  # the command comes from the runlog plugin
    assert result.returncode == 3 and '"report"' in result.stderr


def test_the_built_in_stage_kinds_come_through_the_hook():
    os.environ.pop("PROXPIPE_PLUGINS", None)
    cfg = load(REPO / "pipeline.yaml", environ={})
    kinds = cfg.plugins.stage_kinds()
    assert {k: cfg.plugins.providers[("stage kind", k)] for k in kinds} == {
        "packer": "stages", "terraform": "stages", "tofu": "stages", "ansible": "stages"}


def test_the_run_log_records_every_run(shell):
    shell.doit("deploy")
    shell.doit("deploy")
    runs = [json.loads(line) for line in (shell.root / ".pipeline" / "local" / "runs.jsonl").read_text().splitlines()]
    assert [[s["status"] for s in r["stages"]] for r in runs] == [["ran", "ran"], ["skipped", "skipped"]]
    assert all(r["run"] and r["started"] and r["ok"] for r in runs)
    result = shell.doit("report")
    assert result.returncode == 0 and runs[0]["run"] in result.stdout and "make skipped" in result.stdout


def test_the_installed_plugins_list_is_rescanned_only_when_a_distribution_folder_changes(tmp_path, monkeypatch):
    from proxpipe.engine import plugin_manager as plugins

    site, project = tmp_path / "site", tmp_path / "project"
    (site / "example-1.0.dist-info").mkdir(parents=True)
    project.mkdir()
    cache = tmp_path / "entry-points.json"
    scans = []
    monkeypatch.setattr("importlib.metadata.entry_points", lambda group: scans.append(group) or [])
    monkeypatch.setattr(sys, "path", [str(site), str(project)])

    plugins._entry_points(cache)
    (project / "notes.txt").write_text("an edited project file")  # changes the project folder's mtime
    monkeypatch.setattr(sys, "path", [str(project), str(site), str(site)])  # plain doit adds the project first
    plugins._entry_points(cache)
    assert len(scans) == 1
    (site / "another-2.0.dist-info").mkdir()  # a distribution installed
    plugins._entry_points(cache)
    assert len(scans) == 2
