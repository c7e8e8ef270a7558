"""The state store's settings and parts that need no server: pipeline.yaml's `state:` and `project:`, connection
strings taken apart for messages and tools, Terraform's pg backend settings, copying the local store, and psycopg left
unimported when the state is local. The store on a real server: tests/e2e/test_shared_state.py."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from proxpipe.base.errors import ConfigError
from proxpipe.base.secrets import Secret
from proxpipe.domain.state import LocalStore
from proxpipe.domain.state.store import Snapshot, ToolDatabase
from proxpipe.domain.state.urls import address, libpq_environ, parse
from proxpipe.engine.pipeline import load_config
from proxpipe.stages.tfbackend import backend_type, pg_backend
from tests.labproject import REPO

URL = "postgresql://ci%40team:p%40ss-w0rd@db.example.com:6432/infra?sslmode=verify-full&sslrootcert=/etc/ca.pem"


# ----------------------------------------------------------------------------- connection strings


def test_a_url_is_taken_apart_like_libpq_does():
    assert parse(URL) == {"user": "ci@team", "password": "p@ss-w0rd", "host": "db.example.com", "port": "6432",
                          "dbname": "infra", "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}
    assert parse("host=/run/postgresql dbname='my db' password='it\\'s'") == {
        "host": "/run/postgresql", "dbname": "my db", "password": "it's"}
    assert parse("postgresql://[::1]:5433/x")["host"] == "::1"


def test_messages_name_host_port_and_database_never_the_user_or_password():
    assert address(URL) == "db.example.com:6432/infra"
    assert address("postgresql://u:secret@h") == "h:5432/u"
    with pytest.raises(ConfigError) as bad:
        parse("mysql://u:secret@h/x", "pipeline.yaml: environments.ci.state")
    assert str(bad.value) == ("pipeline.yaml: environments.ci.state: not a PostgreSQL connection string; expected "
                              "postgresql://USER:PASSWORD@HOST:PORT/DBNAME")


def test_tools_get_the_connection_as_libpq_variables():
    assert libpq_environ(URL) == {"PGUSER": "ci@team", "PGPASSWORD": "p@ss-w0rd", "PGHOST": "db.example.com",
                                  "PGPORT": "6432", "PGDATABASE": "infra", "PGSSLMODE": "verify-full",
                                  "PGSSLROOTCERT": "/etc/ca.pem"}


# ----------------------------------------------------------------------------- pipeline.yaml


def write(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "work").mkdir(exist_ok=True)
    (tmp_path / "work" / "site.yml").write_text("- hosts: all\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def project(name: str | None = "infra", **envs) -> dict:
    stage = {"configure": {"kind": "ansible", "dir": "work", "playbook": "site.yml"}}
    return {**({"project": name} if name else {}),
            "environments": {env: {"stages": stage, **extra} for env, extra in envs.items()}}


def test_state_is_read_with_its_schema_and_its_url_stays_a_secret(tmp_path):
    path = write(tmp_path, project(ci={"state": {"url": "${STATE_URL}"}}, lab={}))
    config = load_config(path, environ={"STATE_URL": URL})
    state = config.environment("ci").state
    assert state.schema == "proxpipe_infra_ci" and state.project == "infra" and isinstance(state.url, Secret)
    assert "p@ss-w0rd" not in repr(state) and config.environment("lab").state is None


@pytest.mark.parametrize("config, message", [
    (project(None, ci={"state": {"url": "${STATE_URL}"}}),
     "pipeline.yaml: environments.ci.state: shared state needs the top-level key `project`"),
    (project("Infra", ci={}), "pipeline.yaml: project: 'Infra': use lower-case letters, digits, - and _"),
    (project("a-very-long-project-name-indeed", production={"state": {"url": "x"}}),
     "pipeline.yaml: environments.production.state: its database schema would be "
     "proxpipe_a_very_long_project_name_indeed_production, longer than 40 characters"),
    (project(**{"lab-shared": {"state": {"url": "x"}}, "lab_shared": {"state": {"url": "x"}}}),
     "pipeline.yaml: environments.lab_shared.state: environments lab-shared and lab_shared would share the database "
     "schema proxpipe_infra_lab_shared; rename one"),
    (project(ci={"state": {}}), "pipeline.yaml: environments.ci.state.url: missing"),
])
def test_bad_state_settings_are_one_line_errors(tmp_path, config, message):
    with pytest.raises(ConfigError) as bad:
        load_config(write(tmp_path, config), environ={})
    assert str(bad.value).startswith(message)


def test_an_unset_url_variable_is_named_when_the_state_is_first_needed(tmp_path):
    from proxpipe.engine.pipeline import Pipeline

    pipeline = Pipeline.load(write(tmp_path, project(ci={"state": {"url": "${STATE_URL}"}})), "ci", environ={})
    with pytest.raises(ConfigError) as unset:
        pipeline.store.read_handoff("configure.json")
    assert str(unset.value) == ("pipeline.yaml: environments.ci.state.url: environment variable STATE_URL is not set "
                                "(use ${STATE_URL:-default} for a default)")


def test_psycopg_is_not_imported_when_the_state_is_local(tmp_path):
    path = write(tmp_path, project(lab={}))
    code = (f"import sys\nfrom proxpipe.engine.pipeline import Pipeline\np = Pipeline.load({str(path)!r}, 'lab')\n"
            "p.store.read_handoff('configure.json'); p.store.lines('history')\n"
            "assert 'psycopg' not in sys.modules, 'psycopg was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- Terraform's pg backend


class FakeStore:
    def __init__(self, url: str | None):
        self.url = url

    def tool_database(self, tool):
        if self.url is None:
            return None
        return ToolDatabase(libpq_environ(self.url), f"proxpipe_infra_ci_{tool}", address(self.url))


def terraform(tmp_path: Path, backend: str | None) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "main.tf").write_text('resource "null_resource" "x" {}\n')
    if backend:
        (tmp_path / "backend.tf").write_text(f'terraform {{\n  backend "{backend}" {{}}\n}}\n')
    return tmp_path


def test_the_pg_backend_gets_the_connection_without_its_password_and_a_schema(tmp_path):
    backend = pg_backend(terraform(tmp_path, "pg"), FakeStore(URL), "provision")
    assert backend.config == (
        "conn_str    = \"host='db.example.com' port='6432' dbname='infra' user='ci@team' sslmode='verify-full' "
        "sslrootcert='/etc/ca.pem'\"\nschema_name = \"proxpipe_infra_ci_provision\"\n")
    assert backend.environ == {"PGPASSWORD": "p@ss-w0rd"} and "p@ss-w0rd" not in backend.where


@pytest.mark.parametrize("url, mode", [
    ("postgresql://u:p@127.0.11.1:5433/x", "disable"),  # no TLS on the machine itself
    ("postgresql://u:p@localhost/x?sslmode=prefer", "disable"),
    ("postgresql://u:p@db.example.com/x", "require"),  # lib/pq knows no "prefer": never plain text by default
    ("postgresql://u:p@db.example.com/x?sslmode=disable", "disable"),
])
def test_the_sslmode_is_one_lib_pq_knows(tmp_path, url, mode):
    assert f"sslmode='{mode}'" in pg_backend(terraform(tmp_path, "pg"), FakeStore(url), "provision").config


def test_other_backends_and_local_state_are_left_alone(tmp_path):
    assert pg_backend(terraform(tmp_path / "s3", "s3"), FakeStore(URL), "provision") is None
    assert pg_backend(terraform(tmp_path / "pg", "pg"), FakeStore(None), "provision") is None
    assert backend_type(terraform(tmp_path / "none", None)) is None
    assert backend_type(REPO / "lab" / "terraform-shared") == "pg" and backend_type(REPO / "lab" / "terraform") is None


# ----------------------------------------------------------------------------- copying the local store


def test_the_local_store_exports_and_imports_its_state_byte_for_byte(tmp_path):
    source = LocalStore(tmp_path / "a", "lab")
    source.write_handoff("template_id.txt", "9101\n")
    source.append("history", '{"action": "build", "template_id": 9101}')
    source.append("runs", '{"run": "r1"}')
    source.save_stage_record("build", {"inputs": {"a.pkr.hcl": "00"}, "time": 1732700000.123456})
    source.put_document("plans", "p1.json", b"{}\n")
    snapshot = source.export_state(["template_id.txt", "ansible_inventory.json"], ["build", "provision"])
    assert snapshot.handoffs == {"template_id.txt": "9101\n"} and list(snapshot.documents) == [("plans", "p1.json")]

    target = LocalStore(tmp_path / "b", "lab")
    target.write_handoff("ansible_inventory.json", "{}")  # not in the snapshot: removed
    target.import_state(snapshot, ["template_id.txt", "ansible_inventory.json"])
    files = sorted(p.relative_to(source.cache_dir) for p in source.cache_dir.rglob("*")
                   if p.is_file() and not p.name.startswith(".") and p.suffix != ".lock")
    assert files == sorted(p.relative_to(target.cache_dir) for p in target.cache_dir.rglob("*")
                           if p.is_file() and not p.name.startswith(".") and p.suffix != ".lock")
    for name in files:
        assert (target.cache_dir / name).read_bytes() == (source.cache_dir / name).read_bytes(), name
    assert target.document_kinds() == ["plans"] and Snapshot({}, {}, {}, {}).is_empty()
