"""The webhook notifier against real HTTP servers on loopback: one that accepts, one that answers 500,
one that hangs past the timeout. None of them may break or hang the pipeline."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.unit.test_plugins import ShellProject, recorder_loaded


class Endpoint:
    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.bodies.append(body)
                endpoint.paths.append(self.path)
                if endpoint.behaviour == "hang":
                    endpoint.release.wait(30)
                    return
                self.send_response(200 if endpoint.behaviour == "accept" else 500)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0K3N-distinctive-webhook-secret"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(request):
    made = []

    def make(behaviour):
        made.append(Endpoint(behaviour))
        return made[-1]

    yield make
    for e in made:
        e.close()


def webhook_project(tmp_path, **options):
    return ShellProject(tmp_path, plugins={"webhook": {"url": "${HOOK_URL}", "timeout": 1, "retries": 1, **options}})


def test_a_successful_run_is_posted_with_text_and_fields(tmp_path, endpoint):
    server = endpoint("accept")
    project = webhook_project(tmp_path)
    result = project.doit("deploy", env={"HOOK_URL": server.url})
    assert result.returncode == 0
    (body,) = server.bodies
    assert body["text"].startswith("✅ deploy on local succeeded in ")
    assert body["ok"] is True and body["environment"] == "local" and body["stages_run"] == ["make", "upper"]
    assert [s["name"] for s in body["stages"]] == ["make", "upper"] and body["failed_stage"] is None
    assert server.paths == ["/hooks/T0K3N-distinctive-webhook-secret"]
    project.doit("deploy", env={"HOOK_URL": server.url})  # nothing ran: not posted by default
    assert len(server.bodies) == 1


def test_a_failed_run_names_the_stage_and_message(tmp_path, endpoint):
    server = endpoint("accept")
    project = webhook_project(tmp_path)
    project.config["environments"]["local"]["stages"]["upper"]["command"] = "exit 4"
    project.write()
    result = project.doit("deploy", env={"HOOK_URL": server.url})
    assert result.returncode == 1
    (body,) = server.bodies
    assert body["ok"] is False and body["failed_stage"] == "upper" and "exit 4" in body["message"]
    assert body["text"].startswith("❌ deploy on local failed at upper")


def test_an_endpoint_answering_500_is_retried_then_only_warns(tmp_path, endpoint):
    server = endpoint("500")
    project = webhook_project(tmp_path)
    result = project.doit("deploy", env={"HOOK_URL": server.url})
    assert result.returncode == 0
    assert len(server.bodies) == 2  # one try and one retry
    assert "webhook notification not delivered: HTTP 500 after 2 attempts" in result.stderr
    assert "T0K3N" not in result.stdout + result.stderr


def test_a_hanging_endpoint_times_out_and_never_hangs_the_run(tmp_path, endpoint):
    server = endpoint("hang")
    project = webhook_project(tmp_path, retries=0)
    result = project.doit("deploy", env={"HOOK_URL": server.url})  # doit() gives up after 60 s
    assert result.returncode == 0
    assert "webhook notification not delivered: timed out after 1 attempt" in result.stderr


def test_no_url_no_notification(tmp_path, endpoint):
    server = endpoint("accept")
    project = webhook_project(tmp_path)
    result = project.doit("deploy", env={"HOOK_URL": ""})
    assert result.returncode == 0 and server.bodies == [] and "webhook" not in result.stderr


def test_an_interrupted_run_is_posted_as_interrupted(tmp_path, endpoint):
    server = endpoint("accept")
    project = webhook_project(tmp_path)
    project.config["environments"]["local"]["stages"]["upper"]["command"] = "kill -INT $PPID; exec sleep 30"
    project.write()
    result = project.doit("deploy", env={"HOOK_URL": server.url})
    assert result.returncode == 130
    (body,) = server.bodies
    assert body["ok"] is False and body["interrupted"] == "SIGINT" and body["failed_stage"] == "upper"
    assert body["text"].startswith("⏹ deploy on local was interrupted (SIGINT) at upper after ")


def drift_plugins(tmp_path, url, **options):
    from proxpipe.engine.pipeline import load_config

    project = webhook_project(tmp_path, **options)
    with recorder_loaded():  # the project's stages are the recorder's
        return load_config(project.root / "pipeline.yaml", environ={"HOOK_URL": url}).plugins


def test_drift_is_posted_with_the_summary_line_of_each_stage_not_in_sync(tmp_path, endpoint):
    from proxpipe.domain.drift import DriftReport
    from tests.driftreports import drift_run, drifted_report, unknown_report

    server = endpoint("accept")
    plugins = drift_plugins(tmp_path, server.url)
    report = drifted_report(secret="T0K3N-distinctive-webhook-secret")  # the URL's token, in a diff line
    report = DriftReport(report.environment, [*report.stages, unknown_report().stages[0]], report.created, report.run)
    plugins.drift_detected(drift_run(tmp_path, plugins.options), report)
    (body,) = server.bodies
    assert body["text"].splitlines() == [
        "⚠️ drift on production: 3 drifted, 1 unknown of 4 stages", "• build: drifted: 1 field",
        "• provision: drifted: 2 resources, 1 file", "• configure: drifted: 1 host",
        "• build: unknown: Proxmox API https://127.0.0.1:1 GET /cluster/resources failed: connection refused"]
    assert body["event"] == "drift" and body["status"] == "unknown" and body["exit_code"] == 1
    assert body["drifted_stages"] == ["build", "provision", "configure"] and body["command"] == "drift"
    assert body["stages"][1] == {"name": "provision", "kind": "terraform", "status": "drifted",
                                 "summary": "drifted: 2 resources, 1 file", "reason": None,
                                 "counts": {"resource": 2, "file": 1}}
    assert "T0K3N" not in json.dumps(body) and server.paths == ["/hooks/T0K3N-distinctive-webhook-secret"]


def test_drift_is_not_posted_when_on_leaves_it_out_and_a_failing_endpoint_only_warns(tmp_path, endpoint, capfd):
    from tests.driftreports import drift_run, drifted_report

    server = endpoint("accept")
    plugins = drift_plugins(tmp_path / "a", server.url, on=["failed"])
    plugins.drift_detected(drift_run(tmp_path, plugins.options), drifted_report())
    assert server.bodies == []
    failing = endpoint("500")
    plugins = drift_plugins(tmp_path / "b", failing.url, retries=0)
    plugins.drift_detected(drift_run(tmp_path, plugins.options), drifted_report())
    assert len(failing.bodies) == 1
    assert "webhook notification not delivered: HTTP 500 after 1 attempt" in capfd.readouterr().err
