"""examples/ci/: a GitHub Actions workflow and a GitLab CI file that validate on every push and deploy from the main
branch against the shared state, and publish the JUnit report; linted by actionlint and GitLab's own schema."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.labproject import REPO, VENV_BIN

GITHUB = REPO / "examples" / "ci" / "github-actions.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"


def actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "actionlint"), "-no-color", str(path)], capture_output=True, text=True,
                          timeout=60)


def gitlab_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("lint, path", [(actionlint, GITHUB), (gitlab_schema, GITLAB)])
def test_the_examples_pass_their_linters_and_the_linters_catch_mistakes(tmp_path, lint, path):
    result = lint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / path.name
    broken.write_text(path.read_text().replace("runs-on:", "runs_on:").replace("  script:", "  scripts:"))
    assert lint(broken).returncode != 0


def test_github_validates_every_push_and_deploys_main_against_the_shared_state():
    workflow = yaml.safe_load(GITHUB.read_text())
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as True
    assert workflow["env"]["PROXPIPE_STATE_URL"] == "${{ secrets.PROXPIPE_STATE_URL }}"
    validate, deploy = workflow["jobs"]["validate"], workflow["jobs"]["deploy"]
    assert "if" not in validate and deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    runs = [step.get("run", "") for step in validate["steps"]]
    assert "proxpipe validate" in runs
    assert "proxpipe deploy --wait-lock 900" in [step.get("run", "") for step in deploy["steps"]]
    reports = [step["with"]["report_paths"] for job in (validate, deploy) for step in job["steps"]
               if step.get("uses", "").startswith("mikepenz/action-junit-report")]
    assert reports == [".pipeline/production/validate.xml"] * 2


def test_gitlab_validates_every_push_and_deploys_the_default_branch_publishing_junit():
    ci = yaml.safe_load(GITLAB.read_text())
    assert ci["validate"]["script"] == ["proxpipe validate"] and "rules" not in ci["validate"]
    assert ci["deploy"]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    assert ci["deploy"]["script"][0] == "proxpipe deploy --wait-lock 900"
    assert ci[".proxpipe"]["artifacts"]["reports"]["junit"] == ".pipeline/production/validate.xml"
    assert "PROXPIPE_STATE_URL" not in GITLAB.read_text().split("variables:", 1)[1]  # a masked CI/CD variable
