"""The `state:` section of an environment in pipeline.yaml, and the database schema its state lives in.

An environment's schema is named from the top-level `project:` and the environment's name, never from the checkout's
folder, so every checkout of the project (a laptop, a CI runner) finds the same one.
"""

import re
from typing import Any, NamedTuple

from proxpipe.base import schema
from proxpipe.base.errors import ConfigError
from proxpipe.base.schema import Field
from proxpipe.base.secrets import Secret, written_out
from proxpipe.domain.state import urls

PREFIX = "proxpipe_"
# PostgreSQL cuts names at 63 bytes; the rest is left for the schemas of tools that share the database (Terraform's).
MAX_SCHEMA = 40
_PROJECT = re.compile(r"^[a-z][a-z0-9_-]*$")


def literal_password(text: str) -> str | None:
    """The problem with a state URL whose password is written out (in the URL, ?password= or password=), or None:
    a URL without a password (~/.pgpass, PGPASSWORD, a certificate) or with a ${VAR} one is fine."""
    try:
        password = urls.parse(written_out(text, "\0")).get("password", "")
    except ConfigError:
        return None  # not a connection string as written (a ${VAR} for all of it): checked when it is used
    if not password.replace("\0", ""):
        return None
    return ("its password is written out, and a literal secret is refused: write it as a reference "
            "(postgresql://USER:${DB_PASSWORD}@HOST:PORT/DBNAME), or the whole URL as one (${PROXPIPE_STATE_URL}), "
            "and set that environment variable")


STATE_FIELDS = {
    "url": Field(schema.SECRET, "The PostgreSQL database, as a libpq URL "
                                "(postgresql://USER:PASSWORD@HOST:PORT/DBNAME, ?sslmode=... and other libpq "
                                "parameters allowed); a ${ENV_VAR} reference, or its password one, since it holds a "
                                "password.", required=True, as_written=literal_password),
}


def project_problem(value: str) -> str | None:
    return None if _PROJECT.match(value) else f"{value!r}: use lower-case letters, digits, - and _"


class StateConfig(NamedTuple):
    url: Secret
    project: str
    schema: str  # the environment's own schema, e.g. proxpipe_infra_production
    where: str  # "pipeline.yaml: environments.NAME.state", for messages


def schema_name(project: str, environment: str) -> str:
    return PREFIX + f"{project}_{environment}".replace("-", "_")


def state_config(data: dict | None, project: str | None, environment: str, where: str,
                 ctx: schema.Context) -> StateConfig | None:
    """The environment's `state:` settings, checked; None when its state is in local files."""
    if data is None:
        return None
    if project is None:
        raise ctx.error(where, "shared state needs the top-level key `project` (a name every checkout of this "
                               "project shares; the database schema is named from it and the environment)")
    name = schema_name(project, environment)
    if len(name) > MAX_SCHEMA:
        raise ctx.error(where, f"its database schema would be {name}, longer than {MAX_SCHEMA} characters; "
                               "shorten the project or the environment name")
    return StateConfig(data["url"], project, name, f"{ctx.file}: {where}")


def check_distinct(environments: dict[str, Any], ctx: schema.Context) -> None:
    """Two environments must not share a schema (lab-shared and lab_shared would)."""
    seen: dict[str, str] = {}
    for name, env in environments.items():
        if env.state is None:
            continue
        if env.state.schema in seen:
            raise ctx.error(f"environments.{name}.state", f"environments {seen[env.state.schema]} and {name} would "
                                                          f"share the database schema {env.state.schema}; rename one")
        seen[env.state.schema] = name
