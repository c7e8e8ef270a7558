"""No secret ever reaches a command line, a log or a file (issues 7 and 12), whichever way it is passed.

Distinctive values for the Proxmox token, a Packer and a Terraform variable declared sensitive, a Terraform and an
Ansible variable named like secrets, a stage env entry and the webhook URL go through deploy, validate, docs, a
rollback and a failing run, with tools that echo credentials. Then: the command line of every program started
(strace), every file under .pipeline/ and docs/, and everything printed or posted, are searched for them; the
tools' digests of what they received are compared; and every file the state directory holds is owner-only.
"""

import hashlib
import os
import stat
from urllib.parse import quote

import pytest

from proxpipe.base.fsutil import pid_alive
from tests.unit.test_webhook import Endpoint

pytestmark = pytest.mark.e2e

TOKEN = "tok3n-d1stinct1ve-7a1c5e"
PASSWORD = "passw0rd-d1stinct1ve-91b2"
HOOK_TOKEN = "T0K3N-distinctive-webhook-secret"
# environment variable -> its distinctive value; pipeline.yaml refers to each without a default
STAGE_SECRETS = {
    "LAB_BUILD_SALT": "s4lt-packer-d1stinct1ve-51b0",  # build.vars.build_salt: declared sensitive
    "LAB_BUILD_NOTE_TOKEN": "n0te-env-d1stinct1ve-73aa",  # build.env.LAB_BUILD_NOTE
    "LAB_VM_SALT": "s4lt-terraform-d1stinct1ve-82c4",  # provision.vars.vm_salt: declared sensitive
    "LAB_API_KEY": "k3y-terraform-d1stinct1ve-0d9e",  # provision.vars.lab_api_key: named like a secret
    "LAB_AUTOMATION_API_KEY": "k3y-ansible-d1stinct1ve-5f21",  # configure.vars.automation_api_key: named so
}
# what the lab's Packer and Terraform record (.pipeline/lab/received/<name>.sha256) -> the value it must be
RECEIVED = {"packer.build_salt": "LAB_BUILD_SALT", "packer.env": "LAB_BUILD_NOTE_TOKEN",
            "terraform.vm_salt": "LAB_VM_SALT", "terraform.lab_api_key": "LAB_API_KEY"}


def echo_secrets(project):
    """Make Packer's provisioner and Terraform's local-exec print the credentials they are given."""
    echo = "echo token is $PROXMOX_TOKEN and $PROXMOX_VE_API_TOKEN with note $LAB_BUILD_NOTE"
    project.edit("lab/packer/lab-golden.pkr.hcl", 'inline = [', f'inline = [\n      "{echo}",')
    project.edit("lab/terraform/main.tf", 'command = "pipeline-lab vm-create',
                 'command = "echo api token $PROXMOX_VE_API_TOKEN; pipeline-lab vm-create')


def fail_the_play(project):
    project.edit("lab/ansible/site.yml", "hosts: jump_hosts", "hosts: jump_hosts\n  tasks: [{fail: {msg: x}}]")


def run_all(project, env, commands):
    """Each command, then a failing deploy; returns everything they printed."""
    outputs = []
    for command in commands:
        result = project.doit(command, env=env)
        outputs += [result.stdout, result.stderr]
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    fail_the_play(project)
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


def secret_config(project):
    """The lab's pipeline.yaml, with every stage secret a ${VAR} without default and the webhook on."""
    stages = project.env["stages"]
    stages["build"]["vars"]["build_salt"] = "${LAB_BUILD_SALT}"
    stages["build"]["env"] = {"LAB_BUILD_NOTE": "${LAB_BUILD_NOTE_TOKEN}"}
    stages["provision"]["vars"].update(vm_salt="${LAB_VM_SALT}", lab_api_key="${LAB_API_KEY}")
    stages["configure"]["vars"] = {"automation_api_key": "${LAB_AUTOMATION_API_KEY}"}
    project.config["plugins"] = {"webhook": {"url": "${HOOK_URL}"}}
    project.write_config()


def private_modes(root):
    """(paths that anyone but the owner may use, executables) under root; symbolic links are not looked at. Files
    are 0600 (0700: executables; 0400: read-only, like git's objects), directories 0700."""
    loose, executables = [], []
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                continue
            if stat.S_ISDIR(info.st_mode):
                ok = mode == 0o700
            else:
                ok = mode in (0o600, 0o700, 0o400)
                if mode == 0o700:
                    executables.append(path)
            if not ok:
                loose.append(f"{oct(mode)} {path}")
    return loose, executables


def test_secrets_never_reach_a_command_line_a_log_or_a_file(lab_project):
    server = Endpoint("accept")
    project = lab_project()
    secret_config(project)
    echo_secrets(project)
    env = {"LAB_PVE_TOKEN_SECRET": TOKEN, "HOOK_URL": server.url, **STAGE_SECRETS}
    values = [TOKEN, HOOK_TOKEN, *STAGE_SECRETS.values()]
    try:
        project.ok("doctor", env=env)  # starts the lab untraced (see LabProject.traced)
        server_pid = (project.state / "fake-pve" / "server.pid").read_text().strip()
        lab_server = open(f"/proc/{server_pid}/cmdline").read().replace("\0", " ")
        assert "lab.server" in lab_server and not [v for v in values if v in lab_server]
        outputs = []
        for command in (["deploy"], ["validate"], ["docs"], ["rollback", "--stage", "provision", "--mode", "replace"],
                        ["status"], ["history"], ["report"], ["doctor"]):
            result = project.traced(*command, env=env)
            outputs += [result.stdout, result.stderr]
            if result.returncode:
                print(result.stdout, result.stderr)  # pytest shows it whole; the assertion's repr is cut short
            assert result.returncode == 0, command
        fail_the_play(project)
        failing = project.traced("deploy", env=env)
        outputs += [failing.stdout, failing.stderr]
        assert failing.returncode == 1 and "✗ configure failed" in failing.stdout, failing.stdout
    finally:
        server.close()

    executed = project.executed()
    programs = " ".join(executed)
    for started in ('"build", "-machine-readable"', '"plan", "-input=false"', '"apply", "-input=false"',
                    "ansible-playbook", '"/bin/sh", "-c"', '"received"', '"ssh", "-o"'):
        assert started in programs, f"the trace shows no {started}: it does not see every program"
    assert any('"-e", "@' in line and "ansible-playbook" in line for line in executed)  # the private vars file
    leaks = [line for line in executed for value in values if value in line or quote(value, safe="") in line]
    assert leaks == [], "secrets on command lines:\n" + "\n".join(leaks)

    for name, variable in RECEIVED.items():  # the tools got the right values
        recorded = (project.state / "received" / f"{name}.sha256").read_text().strip()
        assert recorded == hashlib.sha256(STAGE_SECRETS[variable].encode()).hexdigest(), name
    conf = (project.state / "vms" / "201" / "root" / "etc" / "automation.conf").read_text()
    assert f"api_key_sha256 = {hashlib.sha256(STAGE_SECRETS['LAB_AUTOMATION_API_KEY'].encode()).hexdigest()}" in conf

    logs = "".join(p.read_text() for p in project.state.glob("logs/*/*.log"))
    assert "token is *** and root@pam!pipeline=*** with note ***" in logs  # echoed, and masked
    assert "api token root@pam!pipeline=***" in logs
    assert len(server.bodies) >= 3  # deploy, rollback, the failed deploy
    assert search(project, outputs + [repr(server.bodies)], values) == []
    assert not list(project.state.rglob("*.tfplan")) and not list(project.state.glob(".*-vars.json.tmp-*"))

    loose, executables = private_modes(project.state)
    assert loose == [], "not private:\n" + "\n".join(loose)
    if executables:
        print("note: executables under the state directory (0700):", *executables, sep="\n  ")


def test_commands_that_need_no_stage_secret_work_without_them(lab_project):
    project = lab_project()
    secret_config(project)
    project.ok("doctor")  # the lab runs
    pid = int((project.state / "fake-pve" / "server.pid").read_text())
    for command in ("lab-stop", "status", "history", "report", "docs", "doctor"):
        result = project.doit(command)  # none of STAGE_SECRETS is set
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        if command == "lab-stop":
            assert "stopped the lab" in result.stdout and not pid_alive(pid)
    guides = project.root / "docs" / "deployment"  # for all to read, unlike the state
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [guides.parent, guides, *guides.iterdir()]}
    assert len(modes) == 5 and all(mode == (0o755 if path.is_dir() else 0o644) for path, mode in modes.items())
    for command, key, variable in (("deploy", "build.vars.build_salt", "LAB_BUILD_SALT"),
                                   ("configure", "configure.vars.automation_api_key", "LAB_AUTOMATION_API_KEY")):
        failing = project.doit(command)  # needs them: fails before any stage runs
        assert failing.returncode == 3 and "▶" not in failing.stdout, failing.stdout + failing.stderr
        assert failing.stderr.strip() == (f"ERROR: pipeline.yaml: environments.lab.stages.{key}: environment "
                                          f"variable {variable} is not set (use ${{{variable}:-default}} for a "
                                          "default)")


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
