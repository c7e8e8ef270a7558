"""The drift CI examples (examples/ci/github-drift.yml, gitlab-drift.yml) do what their README says: scheduled, they
keep drift.md and drift.json, open or update ONE issue while drifted (exit 2), close it once back in sync (exit 0),
and fail the job when drift could not be determined (exit 1).

Their shell steps run here as the runners run them (bash -eo pipefail), with a `proxpipe` on PATH that writes the
drift files and exits with the code under test (the command itself is tested with the pipeline). GitHub's `gh`
cannot be reached from here: a stand-in records its arguments and answers `issue list`. GitLab's Issues API is
served on loopback by a small server that keeps issues as GitLab does (iid, labels, state, description, notes).
"""

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.driftreports import drifted_report
from tests.labproject import REPO

GITHUB = yaml.safe_load((REPO / "examples" / "ci" / "github-drift.yml").read_text())
GITLAB = yaml.safe_load((REPO / "examples" / "ci" / "gitlab-drift.yml").read_text())
MARKDOWN = drifted_report().to_markdown()


def fake_proxpipe(bin_dir: Path, code: int) -> None:
    """`proxpipe drift --output DIR`: writes DIR/drift.md and DIR/drift.json (not when it could not even start)."""
    script = bin_dir / "proxpipe"
    script.write_text(f"""#!/bin/sh
[ "$1" = drift ] && [ "$2" = --output ] || {{ echo "unexpected: $*" >&2; exit 9; }}
mkdir -p "$3"
cat > "$3/drift.md" <<'EOF'
{MARKDOWN}EOF
echo '{{}}' > "$3/drift.json"
exit {code}
""")
    script.chmod(0o755)


def bash(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          env={**os.environ, **env, "PATH": f"{cwd / 'bin'}:{os.environ['PATH']}"},
                          capture_output=True, text=True, timeout=60)


# ----------------------------------------------------------------------------- GitHub


def test_github_runs_on_a_schedule_with_the_permission_to_handle_issues():
    assert set(GITHUB[True]) == {"schedule", "workflow_dispatch"}  # YAML 1.1 reads the key `on` as True
    assert GITHUB["permissions"] == {"contents": "read", "issues": "write"}
    steps = GITHUB["jobs"]["drift"]["steps"]
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "${{ !cancelled() }}" and upload["with"]["path"].split() == ["drift/drift.md",
                                                                                        "drift/drift.json"]
    act = steps[-1]
    assert act["env"]["CODE"] == "${{ steps.drift.outputs.code }}" and act["env"]["GH_TOKEN"] == "${{ github.token }}"


def github_job(tmp_path: Path, code: int, open_issue: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    """The drift step, then the issue step with the code the first wrote to $GITHUB_OUTPUT; and the gh calls."""
    (tmp_path / "bin").mkdir(parents=True)
    fake_proxpipe(tmp_path / "bin", code)
    calls = tmp_path / "gh-calls"
    (tmp_path / "bin" / "gh").write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {calls}
if [ "$1 $2" = "issue list" ]; then printf '%s' "$FAKE_OPEN_ISSUE"; fi
""")
    (tmp_path / "bin" / "gh").chmod(0o755)
    steps = {step.get("id", step.get("name")): step for step in GITHUB["jobs"]["drift"]["steps"]}
    env = {"GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
           **GITHUB["env"], "FAKE_OPEN_ISSUE": open_issue}
    first = bash(steps["drift"]["run"], tmp_path, env)
    assert first.returncode == 0, first.stdout + first.stderr  # the step records the code, the next acts on it
    output = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    act = steps["Open, update or close the drift issue"]
    done = bash(act["run"], tmp_path, {**env, "CODE": output["code"], "RUN_URL": "https://github.test/run/1"})
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_github_opens_one_issue_when_drifted(tmp_path):
    done, calls = github_job(tmp_path, 2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == ["issue list --label proxpipe-drift --state open --limit 1 --json number --jq "
                     ".[0].number // empty",
                     "label create proxpipe-drift --color D93F0B --description proxpipe drift found drift --force",
                     "issue create --title Drift in production --label proxpipe-drift --body-file drift/drift.md"]
    assert (tmp_path / "summary").read_text() == MARKDOWN  # and the run's summary shows it


def test_github_updates_the_open_issue_while_still_drifted(tmp_path):
    done, calls = github_job(tmp_path, 2, open_issue="17")
    assert done.returncode == 0 and calls[1:] == ["issue edit 17 --body-file drift/drift.md"]


def test_github_closes_the_issue_once_back_in_sync(tmp_path):
    done, calls = github_job(tmp_path, 0, open_issue="17")
    assert done.returncode == 0 and calls[1:] == ["issue close 17 --comment Back in sync: https://github.test/run/1"]
    done, calls = github_job(tmp_path / "none", 0)
    assert done.returncode == 0 and len(calls) == 1  # nothing open: nothing to close


def test_github_fails_the_job_when_drift_could_not_be_determined(tmp_path):
    done, calls = github_job(tmp_path, 1, open_issue="17")
    assert done.returncode == 1 and len(calls) == 1  # the issue is left as it is
    assert "::error::proxpipe drift could not tell whether production drifted (exit 1)" in done.stdout


# ----------------------------------------------------------------------------- GitLab


class IssuesApi:
    """GitLab's Issues API for one project, as much of it as the job uses, on loopback."""

    TOKEN = "glpat-drift-test-token"

    def __init__(self):
        self.issues: list[dict] = []
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.answer(api.get(*self.parsed()))

            def do_POST(self):
                self.answer(api.post(*self.parsed()))

            def do_PUT(self):
                self.answer(api.put(*self.parsed()))

            def parsed(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                url = urlsplit(self.path)
                api.requests.append(f"{self.command} {url.path}")
                if self.headers.get("PRIVATE-TOKEN") != api.TOKEN:
                    return None, {}, {}
                return url.path, {k: v[0] for k, v in parse_qs(url.query).items()}, form

            def answer(self, result):
                status, body = result
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v4"

    def get(self, path, query, form):
        if path != "/api/v4/projects/7/issues":
            return 401 if path is None else 404, {"message": "404 Not Found"}
        found = [i for i in self.issues if query.get("labels") in i["labels"] and i["state"] == query.get("state")]
        return 200, found[:int(query.get("per_page", 20))]

    def post(self, path, query, form):
        if path == "/api/v4/projects/7/issues":
            self.issues.append({"iid": len(self.issues) + 1, "title": form["title"], "state": "opened",
                                "labels": form["labels"].split(","), "description": form["description"], "notes": []})
            return 201, self.issues[-1]
        if path and path.endswith("/notes"):
            issue = self.issues[int(path.split("/")[-2]) - 1]
            issue["notes"].append(form["body"])
            return 201, {"body": form["body"]}
        return 401 if path is None else 404, {"message": "404 Not Found"}

    def put(self, path, query, form):
        if path is None:
            return 401, {"message": "401 Unauthorized"}
        issue = self.issues[int(path.rsplit("/", 1)[-1]) - 1]
        if "description" in form:
            issue["description"] = form["description"]
        if form.get("state_event") == "close":
            issue["state"] = "closed"
        return 200, issue

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gitlab(tmp_path):
    api = IssuesApi()
    (tmp_path / "bin").mkdir()

    def job(code: int, token: str = IssuesApi.TOKEN) -> subprocess.CompletedProcess:
        fake_proxpipe(tmp_path / "bin", code)
        env = {**GITLAB["variables"], "CI_API_V4_URL": api.url, "CI_PROJECT_ID": "7", "GITLAB_ISSUES_TOKEN": token,
               "CI_JOB_URL": "https://gitlab.test/jobs/1"}
        return bash("\n".join(GITLAB["drift"]["script"]), tmp_path, env)

    job.api = api
    yield job
    api.close()


def test_gitlab_runs_on_a_schedule_and_keeps_the_drift_files():
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in GITLAB["drift"]["rules"]
    assert GITLAB["drift"]["artifacts"] == {"when": "always", "paths": ["drift/drift.md", "drift/drift.json"]}
    assert "CI_JOB_TOKEN" not in "\n".join(GITLAB["drift"]["script"])  # it cannot reach the Issues API


def test_gitlab_opens_one_issue_updates_it_and_closes_it_once_back_in_sync(gitlab):
    done = gitlab(2)
    assert done.returncode == 0, done.stdout + done.stderr
    (issue,) = gitlab.api.issues
    assert issue["title"] == "Drift in production" and issue["labels"] == ["proxpipe-drift"]
    assert issue["description"] == MARKDOWN and issue["state"] == "opened"
    issue["description"] = "older"
    assert gitlab(2).returncode == 0 and len(gitlab.api.issues) == 1  # still drifted: the same issue, updated
    assert issue["description"] == MARKDOWN
    done = gitlab(0)
    assert done.returncode == 0 and issue["state"] == "closed" and issue["notes"] == [
        "Back in sync: https://gitlab.test/jobs/1"]
    gitlab.api.requests.clear()
    assert gitlab(0).returncode == 0 and gitlab.api.requests == ["GET /api/v4/projects/7/issues"]  # nothing open
    assert gitlab(2).returncode == 0 and len(gitlab.api.issues) == 2  # drifted again: a new one


def test_gitlab_fails_the_job_when_drift_could_not_be_determined(gitlab):
    gitlab(2)
    done = gitlab(1)
    assert done.returncode == 1 and gitlab.api.issues[0]["state"] == "opened"
    assert "proxpipe drift could not tell whether production drifted (exit 1); see the log above" in done.stdout


def test_gitlab_fails_the_job_when_the_token_is_refused(gitlab):
    done = gitlab(2, token="wrong")
    assert done.returncode != 0 and "401" in done.stderr and gitlab.api.issues == []
