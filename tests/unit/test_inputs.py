"""A stage's inputs are what its tool reads, not what it writes (issue 18): what git ignores (git is asked, once
for every stage, and never outside a git work tree), what the tool's own configuration names (ansible.cfg's
fact cache, retry files, log and temp directory), and the requirements files always stay inputs."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from proxpipe.domain import inputs
from proxpipe.engine.pipeline import Pipeline
from tests.labproject import REPO


@pytest.fixture(autouse=True)
def fresh_git_answers(monkeypatch):
    """Each test asks git anew (the answers are kept for the life of a process)."""
    monkeypatch.setattr(inputs, "_GIT", inputs._Git())


@pytest.fixture
def git_calls(monkeypatch):
    """The git commands the inputs module starts."""
    calls = []
    real = subprocess.run

    def run(argv, *args, **kwargs):
        calls.append(argv)
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(inputs.subprocess, "run", run)
    return calls


def project(root: Path, git: bool = True) -> Pipeline:
    """A copy of the lab's three stage directories and pipeline.yaml, in a git work tree or not."""
    shutil.copytree(REPO / "lab", root / "lab", ignore=shutil.ignore_patterns(
        "*.py", "__pycache__", ".terraform", "*.tfstate*", "manifest.json", ".ansible-cache"))
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    del config["environments"]["production"]
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if git:
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return Pipeline.load(root / "pipeline.yaml", "lab")


def names(stage) -> list[str]:
    return [path.relative_to(stage.dir).as_posix() for path in stage.inputs()]


def left_out(stage) -> dict[str, str]:
    return dict(stage.input_scan().excluded)


def test_a_gitignored_file_or_folder_is_not_an_input(tmp_path, git_calls):
    pipeline = project(tmp_path)
    configure = pipeline.stage("configure")
    (tmp_path / ".gitignore").write_text("*.log\nscratch/\n")
    (configure.dir / "notes.log").write_text("x")
    (configure.dir / "scratch").mkdir()
    (configure.dir / "scratch" / "a.yml").write_text("x")
    (configure.dir / "kept.yml").write_text("x")
    assert "notes.log" not in names(configure) and "scratch/a.yml" not in names(configure)
    assert "kept.yml" in names(configure) and "site.yml" in names(configure)
    assert left_out(configure)["notes.log"] == inputs.GIT_IGNORES
    assert left_out(configure)["scratch/"] == inputs.GIT_IGNORES
    assert inputs.explain_ignored(configure.dir, ["notes.log", "scratch/"]) == {
        "notes.log": ".gitignore:1: *.log", "scratch/": ".gitignore:2: scratch/"}


def test_a_tracked_file_is_an_input_even_when_a_gitignore_pattern_matches_it(tmp_path):
    pipeline = project(tmp_path)
    configure = pipeline.stage("configure")
    (configure.dir / "vars.log").write_text("x")
    subprocess.run(["git", "add", "lab/ansible/vars.log"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("*.log\n")
    assert "vars.log" in names(configure)  # git ignores only what it does not track


def test_git_is_asked_once_for_every_stage(tmp_path, git_calls):
    pipeline = project(tmp_path)
    git_calls.clear()
    (tmp_path / ".gitignore").write_text("*.log\n")
    for stage in pipeline.stages:
        (stage.dir / "x.log").write_text("x")
    for _ in range(2):
        assert all("x.log" not in names(stage) for stage in pipeline.stages)
    assert len(git_calls) == 1
    assert git_calls[0][:2] == ["git", "ls-files"] and git_calls[0][-3:] == ["lab/packer", "lab/terraform",
                                                                             "lab/ansible"]


def test_a_directory_that_is_not_in_a_git_work_tree_costs_no_git_call(tmp_path, git_calls):
    assert inputs.work_tree(tmp_path) is None, "the test needs a temporary directory outside any git work tree"
    pipeline = project(tmp_path, git=False)
    configure = pipeline.stage("configure")
    (tmp_path / ".gitignore").write_text("*.log\n")  # not a git repository: this file means nothing
    (configure.dir / "notes.log").write_text("x")
    assert "notes.log" in names(configure)
    assert git_calls == [] and inputs.git_problem(configure.dir) is None


def test_paths_named_in_ansible_cfg_are_not_inputs(tmp_path):
    pipeline = project(tmp_path)
    configure = pipeline.stage("configure")
    cfg = configure.dir / "ansible.cfg"
    cfg.write_text(cfg.read_text().replace("[defaults]\n", "[defaults]\nretry_files_save_path = ./retries\n"
                                           "log_path = logs/ansible.log\nlocal_tmp = ./tmp ; Ansible's temp\n"))
    for name in (".ansible-cache/jump-01", "retries/site.retry", "logs/ansible.log", "logs/kept.yml",
                 "tmp/ansible-local-1/x"):
        (configure.dir / name).parent.mkdir(parents=True, exist_ok=True)
        (configure.dir / name).write_text("x")
    assert [n for n in names(configure) if n.split("/")[0] in (".ansible-cache", "retries", "tmp", "logs")] == [
        "logs/kept.yml"]
    why = left_out(configure)
    assert why[".ansible-cache/"] == "Ansible's fact cache (ansible.cfg fact_caching_connection)"
    assert why["retries/"] == "Ansible's retry files (ansible.cfg retry_files_save_path)"
    assert why["logs/ansible.log"] == "Ansible's log (ansible.cfg log_path)"
    assert why["tmp/"] == "Ansible's local temporary files (ansible.cfg local_tmp)"


def test_a_fact_cache_that_is_not_a_directory_excludes_nothing(tmp_path):
    pipeline = project(tmp_path)
    configure = pipeline.stage("configure")
    cfg = configure.dir / "ansible.cfg"
    cfg.write_text(cfg.read_text().replace("fact_caching = jsonfile", "fact_caching = redis")
                   .replace("./.ansible-cache", "localhost:6379:0"))
    (configure.dir / "localhost:6379:0").write_text("x")
    assert "localhost:6379:0" in names(configure)


def test_a_path_outside_the_directory_excludes_nothing_inside_it(tmp_path):
    pipeline = project(tmp_path)
    configure = pipeline.stage("configure")
    cfg = configure.dir / "ansible.cfg"
    cfg.write_text(cfg.read_text().replace("./.ansible-cache", "../cache"))
    assert configure.tool_writes() == []


def test_terraform_and_packer_outputs_are_not_inputs(tmp_path):
    pipeline = project(tmp_path)
    provision, build = pipeline.stage("provision"), pipeline.stage("build")
    (provision.dir / "backend.tf").write_text('terraform {\n  backend "local" {\n    path = "state/lab.tfstate"\n'
                                              '    workspace_dir = "state/workspaces"\n  }\n}\n')
    for name in ("state/lab.tfstate", "state/workspaces/a/terraform.tfstate", "terraform.tfstate.d/x/s",
                 ".terraform/providers/p"):
        (provision.dir / name).parent.mkdir(parents=True, exist_ok=True)
        (provision.dir / name).write_text("x")
    assert names(provision) == [".terraform.lock.hcl", "backend.tf", "main.tf"]
    assert left_out(provision)["state/workspaces/"] == 'Terraform\'s local state (backend "local")'
    (build.dir / "manifest.json").write_text("{}")
    (build.dir / "packer_cache").mkdir()
    assert names(build) == ["lab-golden.pkr.hcl"]
    assert left_out(build)["packer_cache/"] == "Packer's download cache (PACKER_CACHE_DIR)"


def test_requirements_files_stay_inputs_whatever_the_rules_say(tmp_path):
    pipeline = project(tmp_path)
    (tmp_path / ".gitignore").write_text("requirements.yml\nlab/ansible/roles/*\n")
    configure = pipeline.stage("configure")
    (configure.dir / "roles" / "requirements.yml").write_text("- src: x\n")
    found = names(configure)
    assert "requirements.yml" in found and "roles/requirements.yml" in found
    assert "roles/automation_server/tasks/main.yml" not in found  # ignored by git, as asked


def test_a_stage_directory_that_git_ignores_whole_keeps_its_inputs(tmp_path):
    pipeline = project(tmp_path)
    (tmp_path / ".gitignore").write_text("lab/\n")
    assert "site.yml" in names(pipeline.stage("configure"))


def test_when_git_fails_every_file_counts_and_status_says_why(tmp_path, monkeypatch):
    pipeline = project(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "git").write_text("#!/bin/sh\necho 'fatal: detected dubious ownership in repository' >&2\nexit 128\n")
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    (tmp_path / ".gitignore").write_text("*.log\n")
    configure = pipeline.stage("configure")
    (configure.dir / "notes.log").write_text("x")
    assert "notes.log" in names(configure)
    assert inputs.git_problem(configure.dir) == "git ls-files failed: fatal: detected dubious ownership in repository"
