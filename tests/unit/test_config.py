"""pipeline.yaml is checked when it is loaded: one line naming the file, the key path and the problem."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxpipe.base.errors import ConfigError
from proxpipe.base.secrets import Secret
from proxpipe.engine.pipeline import load_config as load
from tests.labproject import REPO


@pytest.fixture
def project(tmp_path):
    shutil.copytree(REPO / "lab", tmp_path / "lab", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    config["environments"].pop("lab-graph")  # the graph has tests of its own (tests/unit/test_graph.py)
    return tmp_path, config


def write(root, config):
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def error_of(root, config, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(write(root, config), environ=environ if environ is not None else {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_repository_pipeline_yaml_loads(project):
    root, config = project
    loaded = load(write(root, config), environ={})
    assert [s.name for s in loaded.environment("lab").stages] == ["build", "provision", "configure"]
    assert loaded.environment("production").proxmox.node == "pve"
    assert loaded.default_environment == "lab"


def test_unknown_key(project):
    root, config = project
    config["environments"]["lab"]["stages"]["build"]["tempalte"] = "x.pkr.hcl"
    message = error_of(root, config)
    assert message.startswith("pipeline.yaml: environments.lab.stages.build.tempalte: unknown key")
    assert "template" in message  # the known keys are listed


def test_wrong_type(project):
    root, config = project
    config["environments"]["lab"]["stages"]["build"]["keep_templates"] = "three"
    assert error_of(root, config) == ("pipeline.yaml: environments.lab.stages.build.keep_templates: expected an "
                                      "integer, got 'three'")


def test_missing_directory(project):
    root, config = project
    config["environments"]["lab"]["stages"]["provision"]["dir"] = "lab/terrafrom"
    message = error_of(root, config)
    assert message == ("pipeline.yaml: environments.lab.stages.provision.dir: directory lab/terrafrom does not exist "
                       "(relative to the project)") or "lab/terrafrom does not exist" in message


def test_missing_file(project):
    root, config = project
    config["environments"]["lab"]["stages"]["configure"]["playbook"] = "missing.yml"
    message = error_of(root, config)
    assert "environments.lab.stages.configure.playbook: file missing.yml does not exist" in message


@pytest.mark.parametrize("bad, problem", [([9200, 9100], "empty range [9200, 9100] (low > high)"),
                                          ([9100], "expected a range [low, high]"),
                                          ([50, 60], "below the smallest VMID 100")])
def test_bad_id_range(project, bad, problem):
    root, config = project
    config["environments"]["lab"]["stages"]["build"]["template_id_range"] = bad
    message = error_of(root, config)
    assert message.startswith("pipeline.yaml: environments.lab.stages.build.template_id_range: ")
    assert problem in message


def test_unknown_stage_kind_and_bad_chain(project):
    root, config = project
    config["environments"]["lab"]["stages"]["build"]["kind"] = "vagrant"
    assert "unknown stage kind 'vagrant' (known: ansible, packer, terraform, tofu)" in error_of(root, config)
    config["environments"]["lab"]["stages"]["build"]["kind"] = "packer"
    stages = config["environments"]["lab"]["stages"]
    config["environments"]["lab"]["stages"] = {"build": stages["build"], "configure": stages["configure"]}
    message = error_of(root, config)
    assert "stages.configure: kind ansible takes an inventory, but the stage before it (build) hands off a " \
           "template id" in message


def test_invalid_yaml(project):
    root, _ = project
    (root / "pipeline.yaml").write_text("environments:\n  lab: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load(root / "pipeline.yaml", environ={})
    assert str(caught.value).startswith("pipeline.yaml: line ")


def test_unknown_environment(project):
    root, config = project
    loaded = load(write(root, config), environ={})
    with pytest.raises(ConfigError, match="no environment 'staging' \\(known: lab, lab-shared, production\\)"):
        loaded.environment("staging")


def test_secrets_are_lazy_and_never_shown(project):
    root, config = project
    loaded = load(write(root, config), environ={})
    secret = loaded.environment("production").proxmox.token_secret
    assert isinstance(secret, Secret) and not secret.is_set
    assert "PROXMOX_TOKEN_SECRET" in repr(secret)
    with pytest.raises(ConfigError, match="environment variable PROXMOX_TOKEN_SECRET is not set"):
        secret.reveal()
    loaded = load(write(root, config), environ={"PROXMOX_TOKEN_SECRET": "s3cr3t-value"})
    secret = loaded.environment("production").proxmox.token_secret
    assert secret.reveal() == "s3cr3t-value" and "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret)


def test_a_plain_value_needs_its_variable(project):
    root, config = project
    config["environments"]["lab"]["proxmox"]["node"] = "${NODE_NAME}"
    assert "environments.lab.proxmox.node: environment variable NODE_NAME is not set" in error_of(root, config)
    loaded = load(write(root, config), environ={"NODE_NAME": "pve7"})
    assert loaded.environment("lab").proxmox.node == "pve7"


def test_token_or_password(project):
    root, config = project
    config["environments"]["lab"]["proxmox"]["password"] = "${PW}"
    assert "give either token_id and token_secret, or user and password" in error_of(root, config)


def test_the_command_line_says_one_line_and_exits_3(project):
    root, config = project
    config["environments"]["lab"]["stages"]["build"]["keep_templates"] = 0
    write(root, config)
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    result = subprocess.run([str(Path(sys.executable).parent / "doit"), "status"], cwd=root, capture_output=True,
                            text=True)
    assert result.returncode == 3
    assert result.stderr.strip() == ("ERROR: pipeline.yaml: environments.lab.stages.build.keep_templates: 0 is "
                                     "below the minimum 1")
    assert "Traceback" not in result.stdout + result.stderr
