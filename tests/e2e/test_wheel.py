"""proxpipe as users get it: a real wheel, installed into a fresh virtual environment outside the repository, used
in a scratch infrastructure repository laid out like the original task's, and on the lab's demo project."""
# ruff: noqa: F811 - the fixtures of tests.wheelenv, imported by name, are the tests' arguments

import shutil
import zipfile

import pytest

from tests.labproject import REPO, next_block
from tests.wheelenv import environ, run, venv, wheel  # noqa: F401

pytestmark = pytest.mark.e2e


def test_the_wheel_holds_one_top_level_name_and_everything_a_user_needs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"proxpipe"}
    for needed in ("proxpipe/templates/pipeline-handoffs.md.j2", "proxpipe/lab/packer/lab-golden.pkr.hcl",
                   "proxpipe/lab/terraform/main.tf", "proxpipe/lab/ansible/site.yml", "proxpipe/api/__init__.py",
                   "proxpipe/stages/packer.py", "proxpipe/plugins/webhook.py", "proxpipe/lab/example.pipeline.yaml"):
        assert needed in names, needed


def test_an_installed_copy_adopts_a_repository_laid_out_like_the_original_task(venv, tmp_path):
    repo = tmp_path / "infra"
    example = REPO / "examples" / "proxmox"
    shutil.copytree(example / "packer", repo / "packer", ignore=shutil.ignore_patterns("*.example"))
    shutil.copytree(example / "infrastructure", repo / "infrastructure")
    shutil.copytree(example / "ansible_collections", repo / "ansible_collections")
    assert run(["git", "init", "-q"], cwd=repo).returncode == 0
    installed = run([venv / "bin" / "python", "-c", "import importlib.metadata as m; "
                     "print(sorted({f.parts[0] for f in m.distribution('proxpipe').files if f.parts[0] != '..'}))"],
                    cwd=tmp_path)
    assert installed.stdout.strip() == "['proxpipe', 'proxpipe-0.1.0.dist-info']", installed.stdout + installed.stderr
    env = environ(venv)
    proxpipe = venv / "bin" / "proxpipe"
    result = run([proxpipe, "init"], cwd=repo, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    config = (repo / "pipeline.yaml").read_text()
    assert "dir: infrastructure/environments/production" in config and "output: ansible_inventory" in config
    assert "playbook: playbooks/site.yml" in config and "template: ubuntu-server-minimal.pkr.hcl" in config
    for args in (["status"], ["docs"], ["validate", "--list"], ["doctor"], ["list"]):
        result = run([proxpipe, *args], cwd=repo, env=env)
        assert "Traceback" not in result.stdout + result.stderr, (args, result.stderr)
        assert result.returncode in ((0, 1) if args == ["doctor"] else (0,)), (args, result.stdout, result.stderr)
    for guide in ("pipeline-handoffs.md", "pipeline-operation.md", "pipeline-rollback.md"):
        assert "# " in (repo / "docs" / "deployment" / guide).read_text()
    again = run([proxpipe, "init"], cwd=repo, env=env)
    assert again.returncode == 1 and "never overwrites a file" in again.stderr
    empty = run([proxpipe, "provision", "--template-id", ""], cwd=repo, env=env)
    assert empty.returncode == 3 and len(empty.stderr.strip().splitlines()) == 1, empty.stderr


def test_an_installed_copy_deploys_the_lab_demo(venv, tmp_path):
    project = tmp_path / "demo"
    project.mkdir()
    env = environ(venv, PROXPIPE_TOOLS_CACHE=str(REPO / ".tools"))
    proxpipe = venv / "bin" / "proxpipe"
    result = run([proxpipe, "init", "--example", "lab"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    config = project / "pipeline.yaml"
    block = next_block()  # the lab's own addresses, apart from any other lab on this machine
    config.write_text(config.read_text().replace("127.0.10.", f"{block}."))
    try:
        deployed = run([proxpipe, "deploy"], cwd=project, env=env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "deploy done" in deployed.stdout and "configure" in deployed.stdout
        again = run([proxpipe, "deploy"], cwd=project, env=env)
        assert "· configure  up to date" in again.stdout, again.stdout
    finally:
        run([proxpipe, "lab-stop"], cwd=project, env=env, timeout=60)
