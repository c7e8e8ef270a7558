"""examples/ci/: GitHub Actions workflows and GitLab CI files that validate on every push and deploy from the main
branch against the shared state, and publish the JUnit report; the same behind a review (plan on the pull
request, approval, apply of exactly that plan on merge); and drift detection on a schedule (tests/unit/test_drift_ci.py
runs its scripts). Linted by actionlint and GitLab's own schema."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.labproject import REPO, VENV_BIN

GITHUB = REPO / "examples" / "ci" / "github-actions.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"
GITHUB_REVIEW = REPO / "examples" / "ci" / "github-review.yml"
GITLAB_REVIEW = REPO / "examples" / "ci" / "gitlab-review.yml"
GITHUB_DRIFT = REPO / "examples" / "ci" / "github-drift.yml"
GITLAB_DRIFT = REPO / "examples" / "ci" / "gitlab-drift.yml"


def actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "actionlint"), "-no-color", str(path)], capture_output=True, text=True,
                          timeout=60)


def gitlab_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("lint, path", [(actionlint, GITHUB), (gitlab_schema, GITLAB), (actionlint, GITHUB_REVIEW),
                                        (gitlab_schema, GITLAB_REVIEW), (actionlint, GITHUB_DRIFT),
                                        (gitlab_schema, GITLAB_DRIFT)])
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


def test_github_review_plans_pull_requests_and_applies_the_approved_plan_on_merge():
    workflow = yaml.safe_load(GITHUB_REVIEW.read_text())
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    runs = "\n".join(step.get("run", "") for step in plan["steps"])
    assert "proxpipe plan --output plan" in runs and "gh pr comment" in runs  # the Markdown on the pull request
    assert apply["needs"] == "plan" and apply["environment"] == "production"  # the environment's reviewers gate it
    assert "github.event_name == 'push'" in apply["if"]
    steps = [step.get("run", "") for step in apply["steps"]]
    approve = next(i for i, run in enumerate(steps) if "proxpipe approve --plan" in run)
    assert steps[approve + 1] == 'proxpipe apply --plan "$PLAN" --wait-lock 900'  # exactly the approved plan
    assert all(step["env"]["PLAN"] == "${{ needs.plan.outputs.plan }}" for step in apply["steps"][approve:approve + 2])


def test_gitlab_review_plans_merge_requests_and_applies_by_hand_on_the_default_branch():
    ci = yaml.safe_load(GITLAB_REVIEW.read_text())
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in ci["plan"]["rules"]
    assert "merge_requests/$CI_MERGE_REQUEST_IID/notes" in "\n".join(ci["plan"]["script"])
    assert ci["plan"]["artifacts"]["reports"]["dotenv"] == "plan.env"
    assert ci["apply"]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", "when": "manual"}]
    assert ci["apply"]["script"][:2] == ['proxpipe approve --plan "$PLAN_ID" --by "$GITLAB_USER_LOGIN"',
                                         'proxpipe apply --plan "$PLAN_ID" --wait-lock 900']
