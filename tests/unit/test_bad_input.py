"""Bad input of every kind (issue 7): one line naming the problem, a non-zero exit, no traceback, no handoff changed.

For every key of pipeline.yaml a wrong value; every kind of corrupted handoff; a missing tool; a directory
that is not a Packer, Terraform or Ansible project.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxpipe.base import schema
from proxpipe.base.errors import ConfigError
from proxpipe.domain import config as cfg
from proxpipe.engine import plugin_manager as manager
from proxpipe.engine.pipeline import load_config as load
from proxpipe.lab.settings import LAB_FIELDS
from proxpipe.plugins import webhook
from proxpipe.stages.ansible import AnsibleStage
from proxpipe.stages.packer import PackerStage
from proxpipe.stages.terraform import TerraformStage
from tests.labproject import REPO, next_block

DOIT = str(Path(sys.executable).parent / "doit")
WRONG = {schema.STR: ["a", "list"], schema.INT: "many", schema.NUMBER: "fast", schema.BOOL: "maybe",
         schema.LIST: 5, schema.MAP: "text", schema.DIR: "no/such/dir", schema.FILE: "no-such-file.yml",
         schema.PATH: 42, schema.SECRET: 42, schema.COMMAND: 42, schema.RANGE: [9, 1], schema.RAW: "text",
         schema.VARS: ["not", "a", "mapping"]}


def _keys():
    """(key path as a list, field) of every key pipeline.yaml can have."""
    env, stages = ["environments", "lab"], ["environments", "lab", "stages"]
    groups = [([], cfg.TOP_FIELDS), (env, cfg.ENVIRONMENT_FIELDS), (env + ["proxmox"], cfg.PROXMOX_FIELDS),
              (env + ["proxmox", "retry"], cfg.PROXMOX_FIELDS["retry"].fields), (env + ["lab"], LAB_FIELDS),
              (env + ["lab", "base_template"], LAB_FIELDS["base_template"].fields),
              (env + ["validate"], cfg.VALIDATE_FIELDS), (stages + ["build"], cfg.STAGE_FIELDS),
              (stages + ["build", "retry"], cfg.RETRY_FIELDS), (stages + ["build"], PackerStage.OPTIONS),
              (stages + ["provision"], TerraformStage.OPTIONS), (stages + ["configure"], AnsibleStage.OPTIONS),
              (stages + ["configure", "ssh_wait"], AnsibleStage.OPTIONS["ssh_wait"].fields),
              (["plugins", "webhook"], {**manager.COMMON_OPTIONS, **webhook.OPTIONS})]
    for prefix, fields in groups:
        for name, field in fields.items():
            if name in ("token_id", "token_secret", "user", "password"):
                continue  # covered by test_config: they go in pairs
            yield prefix + [name], field


KEYS = list(_keys())


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    shutil.copytree(REPO / "lab", root / "lab", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    del config["environments"]["production"]
    return root, config


def _set(config, path, value):
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


@pytest.mark.parametrize("path, field", KEYS, ids=[".".join(p) for p, _ in KEYS])
def test_a_wrong_value_for_every_key(project, path, field):
    root, base = project
    config = yaml.safe_load(yaml.safe_dump(base, sort_keys=False))
    wrong = WRONG[field.kind] if not field.choices else "none-of-these"
    if path[-1] == "kind":
        wrong = "vagrant"
    _set(config, path, wrong)
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load(root / "pipeline.yaml", environ={})
    message = str(caught.value)
    assert "\n" not in message and message.startswith("pipeline.yaml: ")
    shown = ".".join(path) if path != ["environments"] else "environments"
    assert shown in message or (path[-1] in ("environments", "stages") and "expected a mapping" in message), message


def _state(root):
    return {p.name: p.read_bytes() for p in (root / ".pipeline" / "lab").glob("*") if p.is_file()}


@pytest.fixture
def handoffs(tmp_path):
    """A project with handoffs from an earlier run (its lab, if a command started one, is stopped after)."""
    yield from _handoffs(tmp_path)
    doit(tmp_path, "lab-stop")


def _handoffs(tmp_path):
    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copy(REPO / "dodo.py", tmp_path / "dodo.py")
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    del config["environments"]["production"]
    address = f"{next_block()}.1"  # never the user's own lab
    config["environments"]["lab"]["lab"]["address"] = address
    config["environments"]["lab"]["lab"]["idle_minutes"] = 5
    config["environments"]["lab"]["proxmox"]["url"] = f"https://{address}:8006"
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    state = tmp_path / ".pipeline" / "lab"
    state.mkdir(parents=True)
    (state / "template_id.txt").write_text("9100\n")
    (state / "ansible_inventory.json").write_text(json.dumps(
        {"all": {"hosts": {"jump-01": {"ansible_host": "127.0.10.11"}}}}))
    yield tmp_path, config


def doit(root, *args):
    return subprocess.run([DOIT, *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(root)})


def one_line_failure(result, code=1):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line.strip() for line in (result.stdout + result.stderr).splitlines()
              if line.startswith(("error:", "ERROR:")) or line.strip().startswith("✗")]
    assert len(errors) == 1, result.stdout + result.stderr
    return errors[0]


def test_config_errors_on_the_command_line_change_nothing(handoffs):
    root, config = handoffs
    before = _state(root)
    config["environments"]["lab"]["stages"]["build"]["template_id_range"] = [9199, 9100]
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for command in (["deploy"], ["build"], ["status"], ["validate"]):
        line = one_line_failure(doit(root, *command), code=3)
        assert line == ("ERROR: pipeline.yaml: environments.lab.stages.build.template_id_range: empty range "
                        "[9199, 9100] (low > high)")
    assert _state(root) == before


@pytest.mark.parametrize("content, problem", [
    ("abc\n", "'abc' is not a Proxmox VMID"),
    ("", "'' is not a Proxmox VMID"),
    ("42\n", "42 is outside the Proxmox VMID range"),
    ("9100\n9101\n", "is not a Proxmox VMID"),
])
def test_a_corrupted_template_id_handoff(handoffs, content, problem):
    root, _ = handoffs
    (root / ".pipeline" / "lab" / "template_id.txt").write_text(content)
    before = _state(root)
    line = one_line_failure(doit(root, "provision"))
    assert "template_id.txt is damaged: " in line and problem in line
    assert ("the history of environment lab has no valid template_id.txt; replace it with `doit build --rebuild`, "
            "or pass a template id with --template-id; nothing was run") in line
    assert {k: _state(root)[k] for k in before} == before and "history.jsonl" not in _state(root)


@pytest.mark.parametrize("content, problem", [
    ('"a string"', "a JSON string that does not hold JSON"),
    (json.dumps(json.dumps({"all": {}})), "the inventory has no hosts"),
    ("[1, 2]", "expected an inventory object, got list"),
    ("{broken", "invalid JSON at line 1"),
    ("{}", "the inventory has no hosts"),
    ('{"all": {"hosts": {"web": {}}}}', "host web has no address"),
])
def test_a_corrupted_inventory_handoff(handoffs, content, problem):
    root, _ = handoffs
    (root / ".pipeline" / "lab" / "ansible_inventory.json").write_text(content)
    before = _state(root)
    line = one_line_failure(doit(root, "configure"))
    assert "ansible_inventory.json is damaged: " in line and problem in line
    assert ("restore it with `doit rollback --stage provision --mode restore`, or replace it with "
            "`doit provision --force`, or pass an inventory with --inventory; nothing was run") in line
    assert {k: _state(root)[k] for k in before} == before and "history.jsonl" not in _state(root)


def test_a_corrupted_configure_handoff_shows_in_status(handoffs):
    root, _ = handoffs
    (root / ".pipeline" / "lab" / "configure.json").write_text('{"playbook": "site.yml"}')
    result = doit(root, "status")
    assert result.returncode == 0
    assert "configure.json: INVALID (missing field 'recap')" in result.stdout


def test_a_history_line_cut_short_by_a_crash_is_skipped(handoffs):
    root, _ = handoffs
    history = root / ".pipeline" / "lab" / "history.jsonl"
    history.write_text('{"time": "2026-01-01T00:00:00", "stage": "build", "action": "build", "outcome": "ok", '
                       '"template_id": 9100}\n{"time": "2026-01-01T00:01:00", "sta')
    result = doit(root, "history")
    assert result.returncode == 0 and "9100" in result.stdout
    assert "warning: .pipeline/lab/history.jsonl: line 2 is cut short, by a crash or a full disk; skipped" \
        in result.stderr


def test_a_run_log_line_cut_short_by_a_crash_is_skipped(handoffs):
    root, _ = handoffs
    runs = root / ".pipeline" / "lab" / "runs.jsonl"
    runs.write_text('{"run": "20260101-000000-abcd", "command": "deploy", "ok": true, "duration": 1.5, '
                    '"stages": []}\nnot json\n{"run": "20260101-0001')
    result = doit(root, "report")
    assert result.returncode == 0 and "20260101-000000-abcd" in result.stdout and "Traceback" not in result.stderr
    assert "runs.jsonl: line 2 is not a JSON object; skipped" in result.stderr
    assert "runs.jsonl: line 3 is cut short, by a crash or a full disk; skipped" in result.stderr


def test_a_missing_tool(handoffs):
    root, config = handoffs
    config["environments"]["lab"]["stages"]["build"]["binary"] = "no-such-packer"
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = _state(root)
    line = one_line_failure(doit(root, "build", "--rebuild"))
    assert ("no-such-packer not found: install packer (apt-get install packer) or set pipeline.yaml: "
            "environments.lab.stages.build.binary") in line
    assert {k: _state(root)[k] for k in before} == before


@pytest.mark.parametrize("stage, key, setup, problem", [
    ("build", "template", lambda d: (d / "notes.txt").write_text("hello"), "notes.txt is not a Packer template"),
    ("provision", "dir", lambda d: None, "is not a Terraform project: it has no .tf files"),
    ("configure", "playbook", lambda d: (d / "vars.yml").write_text("key: value\n"),
     "vars.yml is not an Ansible playbook (a YAML list of plays)"),
])
def test_a_directory_that_is_not_a_project(handoffs, stage, key, setup, problem):
    root, config = handoffs
    empty = root / "not-a-project"
    empty.mkdir()
    setup(empty)
    spec = config["environments"]["lab"]["stages"][stage]
    spec["dir"] = "not-a-project"
    if key != "dir":
        spec[key] = {"template": "notes.txt", "playbook": "vars.yml"}[key]
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = _state(root)
    line = one_line_failure(doit(root, "deploy"), code=3)
    assert f"environments.lab.stages.{stage}." in line and problem in line
    assert _state(root) == before
