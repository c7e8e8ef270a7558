"""Terraform's state beside the pipeline's: a Terraform project that declares `backend "pg" {}` keeps its state and
its lock in the database of the environment's shared state, in a schema of its own.

Terraform 1.0's pg backend takes the connection only as `conn_str` (PG_CONN_STR came in 1.5), and writes whatever
`init` was given into its data directory and into every saved plan. So conn_str holds host, port, database, user and
sslmode, in a backend configuration file readable by the owner only and removed once `init` has read it; the
password reaches Terraform, and the lib/pq driver inside it, as PGPASSWORD in its environment, and is written nowhere.
"""

import json
from pathlib import Path
from typing import NamedTuple

from proxpipe.api import hcl
from proxpipe.base.addresses import is_loopback

# lib/pq knows no "prefer" or "allow", and takes an unset sslmode for "require".
_LIB_PQ_SSLMODES = ("disable", "require", "verify-ca", "verify-full")
_CONN_KEYS = {"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user", "PGSSLMODE": "sslmode",
              "PGSSLROOTCERT": "sslrootcert", "PGSSLCERT": "sslcert", "PGSSLKEY": "sslkey",
              "PGCONNECT_TIMEOUT": "connect_timeout"}


class PgBackend(NamedTuple):
    config: str  # the backend configuration file's text: conn_str (no password) and schema_name
    environ: dict[str, str]  # for every Terraform step: PGPASSWORD
    where: str  # host:port/dbname (schema), for messages


def backend_type(directory: Path, cache: Path | None = None) -> str | None:
    """The backend the Terraform project declares (`terraform { backend "TYPE" {} }`), or None."""
    return hcl.facts(directory, hcl.TERRAFORM, cache)["backend"]


def pg_backend(directory: Path, store, tool: str, cache: Path | None = None) -> PgBackend | None:
    """The connection for a project that declares the pg backend, when the environment's state is in a database;
    None otherwise (a project's own backend settings, in init_args or its environment, then apply as they are)."""
    database = store.tool_database(tool)  # first: local state never needs the project parsed
    if database is None or backend_type(directory, cache) != "pg":
        return None
    environ = dict(database.environ)
    environ["PGSSLMODE"] = _sslmode(environ)
    conn = " ".join(f"{key}='{_escape(environ[name])}'" for name, key in _CONN_KEYS.items() if environ.get(name))
    config = f"conn_str    = {_hcl_string(conn)}\nschema_name = {_hcl_string(database.schema)}\n"
    secret = {"PGPASSWORD": environ["PGPASSWORD"]} if environ.get("PGPASSWORD") else {}
    return PgBackend(config, secret, f"{database.where} (schema {database.schema})")


def _sslmode(environ: dict[str, str]) -> str:
    """The URL's sslmode where lib/pq knows it; else none on the machine itself, and required across a network."""
    mode = environ.get("PGSSLMODE", "")
    if mode in _LIB_PQ_SSLMODES:
        return mode
    host = environ.get("PGHOST", "localhost").split(",")[0]
    return "disable" if host in ("", "localhost") or host.startswith("/") or is_loopback(host) else "require"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _hcl_string(value: str) -> str:
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
