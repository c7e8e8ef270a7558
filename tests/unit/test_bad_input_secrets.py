"""Issue 27, rule 3: every field documented as a secret refuses a literal value, in one line that says how to pass it
(a ${VAR} reference; ${VAR:-default} is one too) and never shows the value: proxmox.token_secret and password, the
webhook's url, and the state URL's password."""

import copy

import pytest
import yaml

from proxpipe.base import schema
from proxpipe.commands import configref
from proxpipe.domain import config, yamlfile
from proxpipe.domain.state import settings
from proxpipe.engine import plugin_manager as plugins
from proxpipe.engine.pipeline import load_config
from proxpipe.lab.settings import LAB_FIELDS
from proxpipe.plugins import webhook
from proxpipe.stages.ansible import AnsibleStage
from proxpipe.stages.packer import PackerStage
from proxpipe.stages.terraform import TerraformStage
from tests.badinput import SeededProject, one_line
from tests.labproject import REPO

TOKEN = "0e5a1c7f-8c1d-4b57-a0c3-1d2e3f4a5b6c"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return SeededProject(tmp_path_factory.mktemp("secrets") / "project")


def _token(config):
    env = config["environments"]["lab"]
    env["proxmox"]["token_secret"] = TOKEN
    return "environments.lab.proxmox.token_secret", "${PROXMOX_TOKEN_SECRET}"


def _token_around_a_reference(config):
    env = config["environments"]["lab"]
    env["proxmox"]["token_secret"] = TOKEN[:8] + "${LAB_TOKEN_TAIL}"
    return "environments.lab.proxmox.token_secret", "${PROXMOX_TOKEN_SECRET}"


def _password(config):
    env = config["environments"]["lab"]
    proxmox = env["proxmox"]
    del proxmox["token_id"], proxmox["token_secret"]
    proxmox.update(user="root@pam", password=TOKEN)
    return "environments.lab.proxmox.password", "${PROXMOX_PASSWORD}"


def _webhook(config):
    config["plugins"] = {"webhook": {"url": f"https://hooks.example.com/services/{TOKEN}"}}
    return "plugins.webhook.url", "${WEBHOOK_URL}"


def _state_password(config):
    env = config["environments"]["lab"]
    env["state"] = {"url": f"postgresql://proxpipe:{TOKEN}@127.0.0.1:5433/proxpipe"}
    return "environments.lab.state.url", "postgresql://USER:${DB_PASSWORD}@HOST:PORT/DBNAME"


def _state_password_parameter(config):
    env = config["environments"]["lab"]
    env["state"] = {"url": f"postgresql://proxpipe@127.0.0.1:5433/proxpipe?sslmode=require&password={TOKEN}"}
    return "environments.lab.state.url", "${PROXPIPE_STATE_URL}"


def _state_keywords(config):
    env = config["environments"]["lab"]
    env["state"] = {"url": f"host=127.0.0.1 dbname=proxpipe user=proxpipe password={TOKEN}"}
    return "environments.lab.state.url", "${PROXPIPE_STATE_URL}"


CASES = [_token, _token_around_a_reference, _password, _webhook, _state_password, _state_password_parameter,
         _state_keywords]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_a_literal_secret_is_refused_in_one_line_that_says_how(project, case):
    original = copy.deepcopy(project.config)
    try:
        key, how = case(project.config)
        project.write_config()
        for command in ("deploy", "status", "docs"):
            result = project.doit(command, env={"LAB_TOKEN_TAIL": "tail"})
            assert result.returncode == 3, result.stdout + result.stderr
            line = one_line(result)
            assert line.startswith(f"ERROR: pipeline.yaml: {key}: ") and "a literal secret is refused" in line, line
            assert how in line and "set that environment variable" in line
            assert TOKEN not in result.stdout + result.stderr and TOKEN[:8] not in result.stderr
        project.unchanged()
    finally:
        project.config = original
        project.write_config()


@pytest.mark.parametrize("value", ["${LAB_PVE_TOKEN_SECRET}", "${LAB_PVE_TOKEN_SECRET:-lab-only-token}",
                                   "${A}${B:-}"])
def test_a_reference_is_fine(project, value):
    config_ = copy.deepcopy(project.config)
    config_["environments"]["lab"]["proxmox"]["token_secret"] = value
    config_["plugins"] = {"webhook": {"url": value}}
    (project.root / "pipeline.yaml").write_text(yaml.safe_dump(config_, sort_keys=False))
    try:
        loaded = load_config(project.root / "pipeline.yaml", environ={"LAB_PVE_TOKEN_SECRET": "s", "A": "a"})
        assert loaded.environment("lab").proxmox.token_secret.is_set
    finally:
        project.write_config()


@pytest.mark.parametrize("url", ["${PROXPIPE_STATE_URL}", "postgresql://proxpipe:${PG_PASSWORD}@127.0.0.1:5433/db",
                                 "postgresql://proxpipe:${PG_PASSWORD:-lab-only}@127.0.0.1/db",
                                 "postgresql://proxpipe@127.0.0.1/db?sslmode=verify-full",  # ~/.pgpass, PGPASSWORD
                                 "host=127.0.0.1 user=proxpipe password='${PG_PASSWORD}'"])
def test_a_state_url_without_a_literal_password_is_fine(url):
    assert settings.literal_password(url) is None


def test_the_repositorys_pipelines_and_examples_still_load():
    environ = {"PROXPIPE_STATE_URL": "postgresql://u:p@127.0.0.1/db"}
    loaded = load_config(REPO / "pipeline.yaml", environ=environ)
    assert loaded.environment("lab-shared").state.url.is_set
    assert not loaded.environment("production").proxmox.token_secret.is_set  # ${PROXMOX_TOKEN_SECRET}: unset here
    example = REPO / "lab" / "example.pipeline.yaml"
    assert yamlfile.load(example.name, example.read_bytes())["environments"]


def _secret_fields():
    groups = [config.PROXMOX_FIELDS, settings.STATE_FIELDS, webhook.OPTIONS, plugins.COMMON_OPTIONS,
              config.TOP_FIELDS, config.ENVIRONMENT_FIELDS, config.STAGE_FIELDS, LAB_FIELDS,
              *(kind.OPTIONS for kind in (AnsibleStage, PackerStage, TerraformStage))]
    return [(name, field) for fields in groups for name, field in fields.items() if field.kind == schema.SECRET]


def test_every_secret_field_refuses_a_literal_and_the_reference_says_so():
    secret_fields = _secret_fields()
    assert {name for name, _ in secret_fields} == {"token_secret", "password", "url"} and len(secret_fields) == 4
    ctx = schema.Context("pipeline.yaml", REPO, {})
    rendered = configref.render()
    for name, field in secret_fields:
        literal = f"postgresql://u:{TOKEN}@h/db" if field.as_written else TOKEN
        with pytest.raises(schema.ConfigError, match="a literal secret is refused"):
            schema.convert(literal, field, name, ctx)
        row = next(line for line in rendered.splitlines() if line.startswith("| `") and f"{name}` | secret" in line
                   and field.doc[:30] in line)
        assert "literal" in row and "is refused" in row, row
    assert (REPO / "docs" / "configuration.md").read_text() == rendered
