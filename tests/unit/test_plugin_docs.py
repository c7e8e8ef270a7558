"""The minimal plugin of docs/plugins.md, taken from the page as it is, loaded into a pipeline: every verb of its stage
kind and its command run through doit."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.labproject import REPO

DOIT = str(Path(sys.executable).parent / "doit")


def documented_plugin() -> str:
    page = (REPO / "docs" / "plugins.md").read_text()
    return re.search(r"<!-- minimal-plugin -->\n\n```python\n(.*?)```", page, re.S).group(1)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "greeting_plugin.py").write_text(documented_plugin())
    (tmp_path / "work").mkdir()
    (tmp_path / "dodo.py").write_text((REPO / "dodo.py").read_text())
    config = {"environments": {"local": {"stages": {"hello": {"kind": "greeting", "dir": "work", "name": "you"}}}}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def doit(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROXPIPE_PLUGINS": "greeting_plugin", "PYTHONPATH": str(root / "plugin"), "NO_COLOR": "1"}
    return subprocess.run([DOIT, *args], cwd=root, env=env, capture_output=True, text=True, timeout=60)


def test_the_documented_minimal_plugin_runs_every_verb(project):
    handoff = project / ".pipeline" / "local" / "handoff.txt"
    deploy = doit(project, "deploy")
    assert deploy.returncode == 0 and handoff.read_text().strip() == "hello you", deploy.stdout + deploy.stderr
    plan = doit(project, "plan", "--refresh")
    assert plan.returncode == 0 and "would greet you" in plan.stdout, plan.stdout + plan.stderr
    rollback = doit(project, "rollback", "--stage", "hello")
    assert rollback.returncode == 0 and handoff.read_text() == "hello\n", rollback.stdout + rollback.stderr
    handoff.write_text("edited by hand\n")
    restore = doit(project, "rollback", "--stage", "hello", "--mode", "restore")
    assert restore.returncode == 0 and handoff.read_text() == "hello\n", restore.stdout + restore.stderr
    destroy = doit(project, "destroy")
    assert destroy.returncode == 0 and not handoff.exists(), destroy.stdout + destroy.stderr
    greet = doit(project, "greet", "--name", "reader")
    assert greet.returncode == 0 and "hello reader, from environment local" in greet.stdout


def test_its_preflight_refuses_before_anything_runs(project):
    config = yaml.safe_load((project / "pipeline.yaml").read_text())
    config["environments"]["local"]["stages"]["hello"]["name"] = " "
    (project / "pipeline.yaml").write_text(yaml.safe_dump(config))
    result = doit(project, "deploy")
    assert result.returncode == 1 and "stages.hello.name: empty; say whom to greet" in result.stdout
    assert not (project / ".pipeline" / "local" / "handoff.txt").exists()
