"""No secret ever leaves the process (issue 7): distinctive values for the Proxmox token, the Proxmox password
and the webhook URL go through deploy, validate, docs and a failing run, and through tool output that echoes
them; then every file under .pipeline/ and docs/, and everything printed, is searched for them."""

import pytest

from tests.unit.test_webhook import Endpoint

pytestmark = pytest.mark.e2e

TOKEN = "tok3n-d1stinct1ve-7a1c5e"
PASSWORD = "passw0rd-d1stinct1ve-91b2"
HOOK_TOKEN = "T0K3N-distinctive-webhook-secret"


def echo_secrets(project):
    """Make Packer's provisioner and Terraform's local-exec print the credentials they are given."""
    project.edit("lab/packer/lab-golden.pkr.hcl", 'inline = [',
                 'inline = [\n      "echo token is $PROXMOX_TOKEN and $PROXMOX_VE_API_TOKEN",')
    project.edit("lab/terraform/main.tf", 'command = "pipeline-lab vm-create',
                 'command = "echo api token $PROXMOX_VE_API_TOKEN; pipeline-lab vm-create')


def run_all(project, env, commands):
    """Each command, then a failing deploy; returns everything they printed."""
    outputs = []
    for command in commands:
        result = project.doit(command, env=env)
        outputs += [result.stdout, result.stderr]
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    project.edit("lab/ansible/site.yml", "hosts: jump_hosts", "hosts: jump_hosts\n  tasks: [{fail: {msg: x}}]")
    failing = project.doit("deploy", env=env)
    assert failing.returncode == 1
    return outputs + [failing.stdout, failing.stderr]


def search(project, outputs, values):
    hits = []
    for folder in (project.state, project.root / "docs", project.root / "lab" / "terraform"):
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                data = path.read_bytes()
                hits += [f"{path}: {v}" for v in values if v.encode() in data]
    hits += [f"output: {v}" for v in values for text in outputs if v in text]
    return hits


def test_token_and_webhook_url_never_appear(lab_project):
    server = Endpoint("accept")
    project = lab_project(extra={"plugins": {"webhook": {"url": "${HOOK_URL}"}}})
    echo_secrets(project)
    try:
        outputs = run_all(project, {"LAB_PVE_TOKEN_SECRET": TOKEN, "HOOK_URL": server.url},
                          ["deploy", "validate", "docs", "status", "history", "report", "doctor"])
    finally:
        server.close()
    assert len(server.bodies) == 2  # the successful deploy and the failed one were both posted
    logs = "".join(p.read_text() for p in project.state.glob("logs/*/*.log"))
    assert "token is ***" in logs and "api token root@pam!pipeline=***" in logs  # echoed, and masked
    assert search(project, outputs, [TOKEN, HOOK_TOKEN]) == []


def test_a_password_never_appears(lab_project):
    project = lab_project(extra={"environments": {"lab": {"proxmox": {"user": "root@pam",
                                                                     "password": "${LAB_PVE_PASSWORD}"}}}})
    for key in ("token_id", "token_secret"):
        project.env["proxmox"].pop(key)
    project.write_config()
    project.edit("lab/packer/lab-golden.pkr.hcl", 'inline = [', 'inline = [\n      "echo password $PROXMOX_PASSWORD",')
    outputs = run_all(project, {"LAB_PVE_PASSWORD": PASSWORD}, ["deploy", "validate", "docs", "doctor"])
    logs = "".join(p.read_text() for p in project.state.glob("logs/*/*.log"))
    assert "password ***" in logs
    assert search(project, outputs, [PASSWORD]) == []
