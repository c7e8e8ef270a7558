"""libpq connection strings taken apart without libpq: for messages (host:port/dbname, never the user or password)
and for tools that read libpq's environment variables (Terraform's pg backend)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

from proxpipe.base.errors import ConfigError

# libpq's keywords and the environment variables that stand for them (also read by Go's lib/pq).
ENVIRONMENT = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE",
               "user": "PGUSER", "password": "PGPASSWORD", "sslmode": "PGSSLMODE", "sslcert": "PGSSLCERT",
               "sslkey": "PGSSLKEY", "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL",
               "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS", "application_name": "PGAPPNAME",
               "target_session_attrs": "PGTARGETSESSIONATTRS", "service": "PGSERVICE"}
_KEYWORD = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")
_KEYWORDS = re.compile(rf"(?:{_KEYWORD.pattern})+\s*")


def parse(url: str, where: str = "state.url") -> dict[str, str]:
    """libpq's keywords of a postgresql:// URL or a "key=value ..." string; ConfigError (without the value) when it
    is neither."""
    if url.startswith(("postgresql://", "postgres://")):
        return _parse_url(url.split("://", 1)[1])
    if _KEYWORDS.fullmatch(url):
        return {key: _unquote(value) for key, value in _KEYWORD.findall(url)}
    raise ConfigError(f"{where}: not a PostgreSQL connection string; expected "
                      "postgresql://USER:PASSWORD@HOST:PORT/DBNAME")


def _parse_url(rest: str) -> dict[str, str]:
    rest, _, query = rest.partition("?")
    netloc, _, dbname = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    out: dict[str, str] = {}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if user:
            out["user"] = unquote(user)
        if colon:
            out["password"] = unquote(password)
    names, ports = [], []
    for part in filter(None, hosts.split(",")):
        if part.startswith("["):  # [::1]:5432
            host, _, port = part[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = part.partition(":")
        names.append(unquote(host))
        ports.append(port)
    if any(names):
        out["host"] = ",".join(names)
    if any(ports):
        out["port"] = ",".join(ports)
    if dbname:
        out["dbname"] = unquote(dbname)
    out.update(parse_qsl(query))
    return out


def _unquote(value: str) -> str:
    if value.startswith("'") and value.endswith("'"):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def address(url: str) -> str:
    """host:port/dbname of a connection string, for messages; never the user or the password."""
    try:
        keywords = parse(url)
    except ConfigError:
        return "(not a PostgreSQL connection string)"
    host = keywords.get("host") or keywords.get("hostaddr") or "localhost"
    return f"{host}:{keywords.get('port') or 5432}/{keywords.get('dbname') or keywords.get('user') or '?'}"


def libpq_environ(url: str, where: str = "state") -> dict[str, str]:
    """The connection as libpq's environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...)."""
    return {ENVIRONMENT[key]: value for key, value in parse(url, f"{where}.url").items() if key in ENVIRONMENT}
