"""`proxpipe init` in an existing repository: what it finds, what it guesses and why, and that it never overwrites a
file. The repository is laid out like the original task's (examples/proxmox)."""

import shutil
import subprocess
import textwrap

import pytest
import yaml

from proxpipe.engine.pipeline import load_config
from tests.labproject import REPO
from tests.unit.test_plugins import PROXPIPE

EXAMPLE = REPO / "examples" / "proxmox"


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "infra"
    shutil.copytree(EXAMPLE / "packer", root / "packer")
    shutil.copytree(EXAMPLE / "infrastructure", root / "infrastructure")
    shutil.copytree(EXAMPLE / "ansible_collections", root / "ansible_collections")
    return root


def init(root, *args):
    return subprocess.run([PROXPIPE, "init", *args], cwd=root, capture_output=True, text=True, timeout=120)


def test_it_finds_the_three_projects_and_writes_a_pipeline_that_loads(repo):
    result = init(repo)
    assert result.returncode == 0, result.stderr
    assert "a source block sets vm_id = var.template_id" in result.stdout
    assert "output ansible_inventory is jsonencode() of an object with all" in result.stdout
    stages = yaml.safe_load((repo / "pipeline.yaml").read_text())["environments"]["production"]["stages"]
    assert stages["build"]["template"] == "ubuntu-server-minimal.pkr.hcl" and stages["build"]["dir"] == "packer"
    assert stages["provision"]["dir"] == "infrastructure/environments/production"
    assert stages["provision"]["template_id_var"] == "template_id"
    assert stages["configure"] == {"kind": "ansible", "dir": "ansible_collections/basher83/automation_server",
                                   "playbook": "playbooks/site.yml"}
    assert (repo / "dodo.py").read_text().count("\n") <= 3
    config = load_config(repo / "pipeline.yaml", environ={})  # valid as written, without any secret set
    assert [s.name for s in config.environment().stages] == ["build", "provision", "configure"]


def test_an_ambiguous_guess_lists_the_other_candidates_as_comments(repo):
    shutil.copy(repo / "packer" / "ubuntu-server-minimal.pkr.hcl", repo / "packer" / "debian.pkr.hcl")
    (repo / "infrastructure" / "environments" / "production" / "variables.tf").write_text(
        (repo / "infrastructure" / "environments" / "production" / "variables.tf").read_text())
    assert init(repo).returncode == 0
    text = (repo / "pipeline.yaml").read_text()
    assert "# other candidates: packer/" in text


def test_a_template_id_variable_is_guessed_by_its_name_when_no_clone_block_uses_one(tmp_path):
    root = tmp_path / "repo"
    (root / "tf").mkdir(parents=True)
    (root / "tf" / "main.tf").write_text(textwrap.dedent("""\
        provider "proxmox" {}
        variable "vm_clone_vm_id" { type = number }
        variable "vm_name" { type = string }
        output "inventory" { value = { all = { hosts = { a = { ansible_host = "10.0.0.1" } } } } }
        """))
    assert init(root).returncode == 0
    provision = yaml.safe_load((root / "pipeline.yaml").read_text())["environments"]["production"]["stages"]
    assert provision["provision"]["template_id_var"] == "vm_clone_vm_id"
    assert provision["provision"]["output"] == "inventory"


def test_it_never_overwrites_a_file_and_a_dry_run_writes_nothing(repo):
    dry = init(repo, "--dry-run")
    assert dry.returncode == 0 and "would write pipeline.yaml" in dry.stdout and not (repo / "pipeline.yaml").exists()
    (repo / "dodo.py").write_text("# mine\n")
    refused = init(repo)
    assert refused.returncode == 1 and "dodo.py already exists" in refused.stderr
    assert (repo / "dodo.py").read_text() == "# mine\n" and not (repo / "pipeline.yaml").exists()


def test_a_folder_with_nothing_to_run_says_so_in_one_line(tmp_path):
    result = init(tmp_path)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "proxpipe init --example lab" in result.stderr
