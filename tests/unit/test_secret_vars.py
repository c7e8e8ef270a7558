"""What counts as a secret among a stage's vars and env, how each reaches its tool (environment or private file,
never the command line), the lazy failure of an unset one, and the owner-only files the pipeline keeps."""

import json
import os
import shutil
import stat

import pytest
import yaml

from proxpipe.base import secrets
from proxpipe.base.errors import ConfigError, ToolError
from proxpipe.base.fsutil import atomic_write, make_private, private_file
from proxpipe.engine.pipeline import Pipeline
from proxpipe.engine.pipeline import load_config as load
from tests.labproject import REPO
from tests.unit.test_tools import runner

ENVIRON = {"NOTE_TOKEN": "n0te-t0ken-value-4821", "COPY": "n0te-t0ken-value-4821", "PLAIN": "plain-value",
           "LAB_VM_SALT": "vm-s4lt-value-7741", "DB_PASSWORD": "db-passw0rd-value-3390"}


def make_pipeline(root, stages=None, environ=ENVIRON):
    if not (root / "lab").exists():
        shutil.copytree(REPO / "lab", root / "lab", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    del config["environments"]["production"]
    for section in ("lab", "proxmox"):  # no API: nothing here may start a lab
        del config["environments"]["lab"][section]
    for name, options in (stages or {}).items():
        config["environments"]["lab"]["stages"][name].update(options)
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    loaded = load(root / "pipeline.yaml", environ=environ)
    return Pipeline(loaded, loaded.environment("lab"))


@pytest.mark.parametrize("name, secret", [
    ("PVE_TOKEN_SECRET", True), ("db_password", True), ("api_key", True), ("WEBHOOK_TOKEN", True),
    ("ssh_private", True), ("aws_credentials", True), ("PROXMOX_TOKEN_ID", False), ("ssh_key_file", False),
    ("KEY_PATH", False), ("region", False), ("template_id", False), ("LAB_VM_SALT", False)])
def test_names_that_look_like_secrets(name, secret):
    assert secrets.looks_secret(name) is secret


def test_which_vars_are_secrets(tmp_path):
    pipeline = make_pipeline(tmp_path, {"provision": {"vars": {
        "vm_salt": "${LAB_VM_SALT}",  # declared sensitive in lab/terraform/main.tf
        "api_key": "literal-api-key-0001",  # its key looks like a secret
        "note": "${NOTE_TOKEN}",  # its variable's name looks like a secret
        "dsn": "postgres://app:${DB_PASSWORD}@db/app",  # holds one
        "copy": "${COPY}",  # holds another secret's value
        "region": "eu", "plain": "${PLAIN}", "vms": {"jump-01": {"vm_id": 201, "address": "127.0.10.11"}}}}})
    plain, secret = pipeline.stage("provision").tool_vars()
    assert set(plain) == {"region", "plain", "vms"} and plain["plain"] == "plain-value"
    assert secret == {"vm_salt": ENVIRON["LAB_VM_SALT"], "api_key": "literal-api-key-0001",
                      "note": ENVIRON["NOTE_TOKEN"], "dsn": f"postgres://app:{ENVIRON['DB_PASSWORD']}@db/app",
                      "copy": ENVIRON["COPY"]}
    for value in secret.values():
        assert secrets.mask(f"[{value}]") == "[***]"


def test_an_unset_variable_fails_only_when_a_command_needs_it(tmp_path):
    pipeline = make_pipeline(tmp_path, {"build": {"vars": {"build_salt": "${UNSET_SALT}"},
                                                  "env": {"PACKER_NOTE": "${UNSET_NOTE}"}}}, environ={})
    build = pipeline.stage("build")
    build.config_digest()  # what `doit status` needs
    with pytest.raises(ConfigError) as caught:
        build.tool_vars()
    assert str(caught.value) == ("pipeline.yaml: environments.lab.stages.build.vars.build_salt: environment variable "
                                 "UNSET_SALT is not set (use ${UNSET_SALT:-default} for a default)")
    from proxpipe.engine.execute import stage_job

    pipeline.start_run("test")
    with pytest.raises(ConfigError, match="stages.build.env.PACKER_NOTE: environment variable UNSET_NOTE is not"):
        stage_job(pipeline, build, "build")


def test_a_secrets_value_is_not_in_the_fingerprint(tmp_path):
    digests = set()
    for value in ("first-secret-value", "second-secret-value"):
        build = make_pipeline(tmp_path, {"build": {"env": {"PKR_NOTE": "${NOTE_TOKEN}"}}},
                              environ={"NOTE_TOKEN": value}).stage("build")
        assert value not in json.dumps(build.fingerprint(), default=str)
        digests.add(build.config_digest())
    assert len(digests) == 1


def test_packer_gets_secrets_in_its_environment_or_a_private_var_file(tmp_path):
    build = make_pipeline(tmp_path, {"build": {"vars": {"build_salt": "${NOTE_TOKEN}", "region": "eu"}}}).stage("build")
    plain, secret = build.tool_vars()
    assert "-var" in build._var_args(plain, 9100) and "eu" in " ".join(build._var_args(plain, 9100))
    with build._secret_inputs(secret) as (args, env):
        assert args == [] and env == {"PKR_VAR_build_salt": ENVIRON["NOTE_TOKEN"]}
    (tmp_path / "lab" / "packer" / "old.json").write_text(json.dumps({"variables": {"build_salt": ""},
                                                                      "sensitive-variables": ["build_salt"]}))
    legacy = make_pipeline(tmp_path, {"build": {"template": "old.json", "vars": {"build_salt": "${SALT}"}}},
                           environ={"SALT": "legacy-s4lt-5521"}).stage("build")
    _, secret = legacy.tool_vars()
    assert secret == {"build_salt": "legacy-s4lt-5521"}  # declared in "sensitive-variables"
    with legacy._secret_inputs(secret) as (args, env):
        path = args[0].removeprefix("-var-file=")
        assert env == {} and json.loads(open(path).read()) == secret
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not os.path.exists(path)


def test_terraform_gets_secrets_in_tf_var_never_in_its_tfvars_file(tmp_path):
    provision = make_pipeline(tmp_path, {"provision": {"vars": {
        "vm_salt": "${LAB_VM_SALT}", "db_credentials": {"user": "app", "password": "${DB_PASSWORD}"},
        "vms": {"jump-01": {"vm_id": 201, "address": "127.0.10.11"}}, "lab_dir": "/tmp/lab", "ssh_user": "me"}}}
    ).stage("provision")
    provision.write_vars(9100)
    written = provision.vars_file.read_text()
    assert "vm_salt" not in written and "db_credentials" not in written and '"template_id": 9100' in written
    assert stat.S_IMODE(provision.vars_file.stat().st_mode) == 0o600
    env = provision.secret_env()
    assert env == {"TF_VAR_vm_salt": ENVIRON["LAB_VM_SALT"],
                   "TF_VAR_db_credentials": json.dumps({"user": "app", "password": ENVIRON["DB_PASSWORD"]})}


def test_ansible_gets_secret_extra_vars_from_a_private_file(tmp_path):
    configure = make_pipeline(tmp_path, {"configure": {"vars": {"app_token": "${NOTE_TOKEN}", "port": 8080}}})
    configure = configure.stage("configure")
    with configure._extra_vars() as args:
        assert args[:2] == ["-e", '{"port": 8080}'] and args[2] == "-e" and args[3].startswith("@")
        path = args[3][1:]
        assert json.loads(open(path).read()) == {"app_token": ENVIRON["NOTE_TOKEN"]}
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and not secrets.holds_secret(" ".join(args))
    assert not os.path.exists(path)


def test_unreadable_sources_make_every_var_a_secret(tmp_path, capsys):
    pipeline = make_pipeline(tmp_path, {"provision": {"vars": {"region": "eu"}}})
    (tmp_path / "lab" / "terraform" / "broken.tf").write_text('variable "x" {\n  type = \n}\n')
    assert pipeline.stage("provision").secret_var_names() == {"region"}
    assert "broken.tf: line 2, column 10: cannot parse its HCL" in capsys.readouterr().err


def test_a_command_line_holding_a_secret_is_never_started(tmp_path):
    secrets.register("argv-s3cret-never-shown")
    marker = tmp_path / "started"
    with pytest.raises(ToolError) as caught:
        runner(tmp_path).run(["touch", str(marker), "argv-s3cret-never-shown"], "packer build")
    assert str(caught.value).startswith("packer build: not started: its command line would hold a secret")
    log = (tmp_path / "logs" / "stage.log").read_text()
    assert not marker.exists() and "argv-s3cret" not in log and "started *** " in log
    secrets.register("zq9x")  # too short to tell from a piece of a path: masked, but no reason to refuse
    assert runner(tmp_path).run(["touch", str(tmp_path / "zq9x-file")], "packer build").returncode == 0


def test_files_are_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "state" / "handoff.txt", "1\n")
        atomic_write(tmp_path / "docs" / "guide.md", "# guide\n", mode=0o644)
        assert stat.S_IMODE((tmp_path / "state" / "handoff.txt").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "docs" / "guide.md").stat().st_mode) == 0o644
        with pytest.raises(RuntimeError), private_file(tmp_path / "state" / "vars.json", "{}") as path:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            raise RuntimeError("the tool failed")
        assert not path.exists()
    finally:
        os.umask(old)


def test_an_old_state_directory_is_made_private(tmp_path):
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "run.log").write_text("x")
    (state / "tool").write_text("#!/bin/sh\n")
    os.chmod(state / "tool", 0o755)
    os.symlink("/usr/bin/env", state / "link")
    for path in (state, state / "logs"):
        os.chmod(path, 0o755)
    make_private(state)
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in [state, *state.rglob("*")] if not p.is_symlink()}
    assert modes == {"state": 0o700, "logs": 0o700, "run.log": 0o600, "tool": 0o700}
    assert stat.S_IMODE(os.stat("/usr/bin/env").st_mode) == 0o755  # a link's target is left alone
