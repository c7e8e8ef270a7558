"""The lab's PostgreSQL server, for a lab environment whose shared state it serves (`lab: {postgres: true}`).

A cluster of Debian's postgresql under the lab's directory (postgres/data), listening on the loopback address,
port, user, password and database of the environment's `state.url`, with password logins over TCP only (no Unix
socket). PostgreSQL refuses to run as root, so when proxpipe runs as root the cluster is made and run by the
unprivileged user `postgres` that Debian's package creates. The lab's Proxmox stand-in stops it when it stops
(`doit lab-stop`, or when idle), so it never outlives the lab.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from proxpipe.base import secrets
from proxpipe.base.addresses import is_loopback
from proxpipe.base.errors import ConfigError, PipelineError
from proxpipe.base.fsutil import atomic_write, pid_alive
from proxpipe.domain.state.urls import parse

RUN_AS = "postgres"  # the unprivileged user of Debian's package, when we are root
TIMEOUT = 60


class Endpoint(NamedTuple):
    address: str
    port: int
    user: str
    password: str
    dbname: str


def endpoint(url: str, where: str) -> Endpoint:
    """What the lab's server must offer: the address, port, user, password and database of a state URL."""
    keywords = parse(url, f"{where}.url")
    host = keywords.get("host", "")
    address = "127.0.0.1" if host == "localhost" else host
    if not is_loopback(address):
        raise ConfigError(f"{where}.url: the lab's PostgreSQL listens on a loopback address only; name one as the "
                          f"host (127.x.y.z), not {host or 'a Unix socket'}")
    if not keywords.get("user") or not keywords.get("password"):
        raise ConfigError(f"{where}.url: the lab's PostgreSQL needs a user and a password in the URL")
    port = keywords.get("port") or "5432"
    if not port.isdigit():
        raise ConfigError(f"{where}.url: port {port!r} is not a number")
    return Endpoint(address, int(port), keywords["user"], keywords["password"],
                    keywords.get("dbname") or keywords["user"])


def program(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/VERSION/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: [int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()], reverse=True)
    return candidates[0] if candidates else name


def cluster(home: Path) -> Path:
    return Path(home) / "postgres"


def server_pid(home: Path) -> int | None:
    try:
        pid = int((cluster(home) / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def ensure(home: Path, wanted: Endpoint) -> None:
    """The lab's PostgreSQL runs, accepts wanted's user and password, and has its database."""
    folder = cluster(home)
    _prepare(folder)
    secrets.register(wanted.password)
    with open(folder / "start.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        data = folder / "data"
        fresh = not (data / "PG_VERSION").exists()
        if fresh:
            _initdb(folder, wanted)
        same = secrets.same_credentials(folder / "credentials", wanted.user, wanted.password)
        if not same and not fresh:
            stop(home)
            _single_user(folder, _set_credentials_sql(wanted))
        if _configure(data, wanted) and server_pid(home) is not None:
            stop(home)  # it listens elsewhere now
        if server_pid(home) is None:
            _run(["pg_ctl", "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", str(TIMEOUT), "start"],
                 folder, f"the lab's PostgreSQL did not start on {wanted.address}:{wanted.port}")
        _create_database(folder, wanted)
        if not same or fresh:
            atomic_write(folder / "credentials", secrets.credentials_digest(wanted.user, wanted.password), 0o600)


def stop(home: Path) -> bool:
    """Stop the lab's PostgreSQL; True if it was running."""
    if server_pid(home) is None:
        return False
    folder = cluster(home)
    _run(["pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "-t", str(TIMEOUT), "stop"], folder,
         "the lab's PostgreSQL did not stop")
    return True


# ----------------------------------------------------------------------------- setting it up


def _as_user() -> list[str]:
    return ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []


def _run(argv: list[str], folder: Path, failure: str, stdin: str | None = None) -> str:
    command = [*_as_user(), program(argv[0]), *argv[1:]]
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TIMEOUT + 30,
                              cwd=folder, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PipelineError(f"{failure}: {argv[0]}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        log = folder / "server.log"
        raise PipelineError(secrets.mask(f"{failure}: {(lines or ['no output'])[-1].strip()}"
                                         + (f" (see {log})" if log.exists() else "")))
    return done.stdout


def _prepare(folder: Path) -> None:
    """The cluster's folder, owned by the user that runs the server, who must reach it."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o700)
        return
    if shutil.which("runuser") is None:
        raise PipelineError("runuser not found (util-linux): the lab's PostgreSQL must run as an unprivileged user")
    shutil.chown(folder, RUN_AS, RUN_AS)
    folder.chmod(0o700)
    reach = subprocess.run([*_as_user(), "test", "-w", str(folder)], capture_output=True, timeout=30)
    if reach.returncode != 0:
        raise PipelineError(f"the lab's PostgreSQL runs as user {RUN_AS}, who cannot reach {folder}; give the "
                            "environment a lab.dir that every user can traverse, such as one under /var/tmp")


def _initdb(folder: Path, wanted: Endpoint) -> None:
    secret = folder / "initdb.pw"
    atomic_write(secret, wanted.password + "\n", 0o600, durable=False)
    if os.geteuid() == 0:
        shutil.chown(secret, RUN_AS, RUN_AS)
    try:
        _run(["initdb", "-D", str(folder / "data"), "-U", wanted.user, f"--pwfile={secret}", "--auth=scram-sha-256",
              "--encoding=UTF8", "--no-locale", "--no-instructions"], folder, "the lab's PostgreSQL: initdb failed")
    finally:
        secret.unlink(missing_ok=True)


def _configure(data: Path, wanted: Endpoint) -> bool:
    """Where it listens, and who may log in: password logins over loopback TCP only. True when that changed."""
    settings = {"proxpipe.conf": (f"listen_addresses = '{wanted.address}'\nport = {wanted.port}\n"
                                  "unix_socket_directories = ''\n"),
                "pg_hba.conf": "# proxpipe's lab: password logins over loopback TCP, nothing else\n"
                               "host all all 127.0.0.0/8 scram-sha-256\n"}
    conf = (data / "postgresql.conf").read_text()
    if "include_if_exists = 'proxpipe.conf'" not in conf:
        settings["postgresql.conf"] = conf + "\ninclude_if_exists = 'proxpipe.conf'\n"
    changed = False
    for name, text in settings.items():
        if not (data / name).exists() or (data / name).read_text() != text:
            atomic_write(data / name, text, 0o600, durable=False)
            if os.geteuid() == 0:
                shutil.chown(data / name, RUN_AS, RUN_AS)
            changed = True
    return changed


def _single_user(folder: Path, sql: str) -> None:
    """Run SQL in single-user mode (the server stopped): the way in when the password is not known."""
    _run(["postgres", "--single", "-D", str(folder / "data"), "postgres"], folder,
         "the lab's PostgreSQL: setting its user and password failed", stdin=sql)


def _set_credentials_sql(wanted: Endpoint) -> str:
    user, password = _identifier(wanted.user), wanted.password.replace("'", "''")
    literal = wanted.user.replace("'", "''")
    return (f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{literal}') THEN "
            f"CREATE ROLE {user} LOGIN SUPERUSER; END IF; END $$;\n"
            f"ALTER ROLE {user} PASSWORD '{password}';\n")


def _create_database(folder: Path, wanted: Endpoint) -> None:
    """CREATE DATABASE unless it exists, logged in over TCP like the pipeline (the password in the environment)."""
    script = ("SELECT 'CREATE DATABASE ' || quote_ident(:'db') WHERE NOT EXISTS "
              "(SELECT FROM pg_database WHERE datname = :'db') \\gexec\n")
    env = {**os.environ, "PGPASSWORD": wanted.password, "PGCONNECT_TIMEOUT": "10"}
    try:
        done = subprocess.run([program("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"db={wanted.dbname}",
                               "-h", wanted.address, "-p", str(wanted.port), "-U", wanted.user, "-d", "postgres"],
                              input=script, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=folder)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PipelineError(f"the lab's PostgreSQL: psql: {exc}") from None
    if done.returncode != 0:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or ["no output"])[-1]
        raise PipelineError(secrets.mask(f"the lab's PostgreSQL: creating database {wanted.dbname} failed: {last}"))


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

