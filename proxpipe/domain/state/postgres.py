"""The shared state store: an environment's state in PostgreSQL, through psycopg 3 (no ORM).

    proxpipe.environments     one row per project and environment: its schema, and the key of its lock
    proxpipe.template_ids     template ids reserved by builds in progress, per cluster
    <schema>.environment      one row: the serial, moved on by every write
    <schema>.handoffs, .logs, .stages, .documents, .lock_holder

Every write is one transaction that first moves the environment's serial on from the value this process last saw
(compare and set); when another writer moved it meanwhile, nothing is written. The lock is a session advisory lock
on the connection this process holds for its life, so it goes with the process, even one killed by SIGKILL. Its key
is the environment's row in proxpipe.environments, taken in the two-integer key space (Terraform's pg backend locks
in the one-integer space of the same database). A connection that fails is not opened again: the rest of the run
fails with one line naming the database, and what the database holds stays as the last complete write left it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from proxpipe.base import extras, secrets
from proxpipe.base.errors import ConfigError, StateError
from proxpipe.base.fsutil import atomic_write
from proxpipe.domain import lock
from proxpipe.domain.state.settings import StateConfig
from proxpipe.domain.state.store import Snapshot, StateStore, ToolDatabase
from proxpipe.domain.state.urls import address, libpq_environ

LOCK_CLASS = 0x70787070  # "pxpp": the first key of every proxpipe advisory lock
_SETUP_KEY = 0  # second key while tables are created; environments' keys start at 1
_CONNECT_TIMEOUT = 10

_COMMON_DDL = (
    "CREATE SCHEMA IF NOT EXISTS proxpipe",
    "CREATE TABLE IF NOT EXISTS proxpipe.environments (key serial PRIMARY KEY, project text NOT NULL, "
    "environment text NOT NULL, schema text NOT NULL UNIQUE, created timestamptz NOT NULL DEFAULT now(), "
    "UNIQUE (project, environment))",
    "CREATE TABLE IF NOT EXISTS proxpipe.template_ids (scope text NOT NULL, vmid integer NOT NULL, "
    "holder text NOT NULL, backend_pid integer NOT NULL, backend_start timestamptz, "
    "reserved timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (scope, vmid))",
)
# The template registry is the project's, not one environment's: channels are shared by its environments. Made on
# first use (a database set up before it has none).
_REGISTRY_DDL = ("CREATE TABLE IF NOT EXISTS proxpipe.registry (project text PRIMARY KEY, data text NOT NULL, "
                 "updated timestamptz NOT NULL DEFAULT now())")
_ENVIRONMENT_DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "CREATE TABLE IF NOT EXISTS {s}.environment (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), "
    "serial bigint NOT NULL DEFAULT 0, updated timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO {s}.environment (id) VALUES (1) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS {s}.handoffs (name text PRIMARY KEY, text text NOT NULL, serial bigint NOT NULL, "
    "updated timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS {s}.logs (seq bigserial PRIMARY KEY, log text NOT NULL, line text NOT NULL, "
    "serial bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS logs_by_log ON {s}.logs (log, seq)",
    "CREATE TABLE IF NOT EXISTS {s}.stages (stage text PRIMARY KEY, record text NOT NULL, serial bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {s}.documents (kind text NOT NULL, name text NOT NULL, data bytea NOT NULL, "
    "seq bigserial, serial bigint NOT NULL, PRIMARY KEY (kind, name))",
    "CREATE TABLE IF NOT EXISTS {s}.lock_holder (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), "
    "holder text NOT NULL, backend_pid integer NOT NULL)",
)


class PostgresStore(StateStore):
    """One environment's state in a PostgreSQL schema. Connects on first use (asking `endpoint`, the plugins'
    state_endpoint hook, for the settings to use), and keeps that connection for the process's life."""

    def __init__(self, cache_dir: Path, environment: str, settings: StateConfig,
                 endpoint: Callable[[StateConfig], StateConfig] | None = None):
        self.cache_dir = Path(cache_dir)
        self.environment = environment
        self.settings = settings
        self._endpoint = endpoint
        self._conn: Any = None
        self._key = 0
        self._serial = 0
        self._locked = False
        self._lost: str | None = None

    @property
    def where(self) -> str:
        return f"database {self.address} (schema {self.settings.schema})"

    @property
    def address(self) -> str:
        """host:port/dbname, never the user or the password."""
        return address(self.settings.url.reveal()) if self.settings.url.is_set else "(state.url not set)"

    # ------------------------------------------------------------------ the connection

    def _connection(self) -> Any:
        if self._lost:
            raise StateError(self._lost)
        if self._conn is None:
            self._connect()
        return self._conn

    def _connect(self) -> None:
        if self._endpoint is not None:
            self.settings = self._endpoint(self.settings)
        url = self.settings.url.reveal()
        environ = libpq_environ(url, self.settings.where)
        secrets.register(environ.get("PGPASSWORD"))  # the whole URL is masked already; the password alone too
        extras.require("postgres", f"{self.settings.where}: shared state")
        import psycopg
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT,
                                         application_name=f"proxpipe {self.environment}", keepalives=1,
                                         keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        except psycopg.Error as exc:
            self._lost = f"cannot reach {self.where}: {_reason(exc)}"  # once: the rest of the run fails as fast
            raise StateError(self._lost) from None
        atexit.register(self.close)
        try:
            with self._errors():
                self._key = self._setup()
                self._serial = self._current_serial(self._conn)
        except StateError as exc:
            self._lost = self._lost or str(exc)
            raise

    def _setup(self) -> int:
        """The environment's lock key; its schema and tables made on first use."""
        import psycopg
        from psycopg import sql

        project, schema = self.settings.project, self.settings.schema
        try:
            row = self._conn.execute("SELECT key, schema FROM proxpipe.environments WHERE project = %s AND "
                                     "environment = %s", (project, self.environment)).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if row is not None and row[1] == schema:
            return row[0]
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, _SETUP_KEY))
            for statement in _COMMON_DDL:
                self._conn.execute(statement)
            self._conn.execute("INSERT INTO proxpipe.environments (project, environment, schema) VALUES (%s, %s, %s) "
                               "ON CONFLICT DO NOTHING", (project, self.environment, schema))
            key, *owner = self._conn.execute("SELECT key, project, environment FROM proxpipe.environments "
                                             "WHERE schema = %s", (schema,)).fetchone()
            if owner != [project, self.environment]:
                raise StateError(f"{self.where}: the schema belongs to project {owner[0]}, environment {owner[1]}; "
                                 "give this project another name (project: in pipeline.yaml)")
            for statement in _ENVIRONMENT_DDL:
                self._conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))
        return key

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg's errors as one line naming the database; a broken connection is given up for the run."""
        import psycopg

        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self._conn is not None and not self._conn.closed and not self._conn.broken:
                raise StateError(f"{self.where}: {_reason(exc)}") from None
            self._lost = (f"lost the connection to {self.where}: {_reason(exc)}; what it holds is as the last "
                          "complete write left it; run again once it is back")
            raise StateError(self._lost) from None
        except psycopg.Error as exc:
            raise StateError(f"{self.where}: {_reason(exc)}") from None

    def _execute(self, statement: str, params: tuple = ()) -> Any:
        """One statement ({s} is the environment's schema), outside any write's transaction; its cursor."""
        from psycopg import sql

        conn = self._connection()
        with self._errors():
            return conn.execute(sql.SQL(statement).format(s=sql.Identifier(self.settings.schema)), params)

    def _query(self, statement: str, params: tuple = ()) -> list[tuple]:
        cursor = self._execute(statement, params)
        with self._errors():
            return cursor.fetchall()

    @contextlib.contextmanager
    def _write(self) -> Iterator[tuple[Callable[..., Any], int]]:
        """A transaction that first moves the serial on from the one this process last saw (compare and set);
        yields (execute, the new serial) for the statements of the write."""
        from psycopg import sql

        conn = self._connection()
        schema = sql.Identifier(self.settings.schema)
        with self._errors(), conn.transaction():
            moved = conn.execute(sql.SQL("UPDATE {s}.environment SET serial = serial + 1, updated = now() "
                                         "WHERE id = 1 AND serial = %s RETURNING serial").format(s=schema),
                                 (self._serial,)).fetchone()
            if moved is None:
                raise StateError(f"the state of environment {self.environment} in {self.where} was changed by "
                                 f"another run since this one read it (serial {self._current_serial(conn)}, this "
                                 f"run had {self._serial}); nothing was written; run the command again")
            yield (lambda statement, params=(): conn.execute(sql.SQL(statement).format(s=schema), params)), moved[0]
        self._serial = moved[0]

    def _current_serial(self, conn: Any) -> int:
        from psycopg import sql

        return conn.execute(sql.SQL("SELECT serial FROM {s}.environment WHERE id = 1")
                            .format(s=sql.Identifier(self.settings.schema))).fetchone()[0]

    def close(self) -> None:
        self.release()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ handoffs

    def read_handoff(self, name: str) -> str | None:
        rows = self._query("SELECT text FROM {s}.handoffs WHERE name = %s", (name,))
        return rows[0][0] if rows else None

    def write_handoff(self, name: str, text: str) -> bool:
        if self.read_handoff(name) == text:
            return False
        with self._write() as (execute, serial):
            execute("INSERT INTO {s}.handoffs (name, text, serial) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                    "SET text = EXCLUDED.text, serial = EXCLUDED.serial, updated = now()", (name, text, serial))
        self._copy(name, text)
        return True

    def delete_handoff(self, name: str) -> None:
        with self._write() as (execute, _serial):
            execute("DELETE FROM {s}.handoffs WHERE name = %s", (name,))
        self._copy(name, None)

    def handoff_file(self, name: str) -> Path:
        """A copy in the cache directory, refreshed from the database. When the database cannot be read, the last
        copy is left as it is: it names the handoff in messages, and the next read of the handoff fails anyway."""
        with contextlib.suppress(StateError):
            self._copy(name, self.read_handoff(name))
        return self.cache_dir / name

    def _copy(self, name: str, text: str | None) -> None:
        path = self.cache_dir / name
        if text is None:
            path.unlink(missing_ok=True)
            return
        try:
            if path.read_text() == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write(path, text, 0o600, durable=False)  # a copy: the database holds the handoff

    # ------------------------------------------------------------------ logs

    def append(self, log: str, line: str) -> None:
        with self._write() as (execute, serial):
            execute("INSERT INTO {s}.logs (log, line, serial) VALUES (%s, %s, %s)", (log, line, serial))

    def lines(self, log: str) -> list[str]:
        return [row[0] for row in self._query("SELECT line FROM {s}.logs WHERE log = %s ORDER BY seq", (log,))]

    # ------------------------------------------------------------------ stage records

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        rows = self._query("SELECT record FROM {s}.stages WHERE stage = %s", (stage,))
        return json.loads(rows[0][0]) if rows else None

    def save_stage_record(self, stage: str, record: dict[str, Any]) -> None:
        with self._write() as (execute, serial):
            execute("INSERT INTO {s}.stages (stage, record, serial) VALUES (%s, %s, %s) ON CONFLICT (stage) DO UPDATE "
                    "SET record = EXCLUDED.record, serial = EXCLUDED.serial", (stage, json.dumps(record), serial))

    def forget_stages(self, stages: list[str]) -> None:
        if self._query("SELECT 1 FROM {s}.stages WHERE stage = ANY(%s)", (list(stages),)):
            with self._write() as (execute, _serial):
                execute("DELETE FROM {s}.stages WHERE stage = ANY(%s)", (list(stages),))

    # ------------------------------------------------------------------ template ids

    def allocate_template_id(self, scope: str, low: int, high: int, used: Callable[[], set[int]]) -> int | None:
        conn = self._connection()
        with self._errors(), conn.transaction():
            # One allocation at a time across every runner, each seeing the others' reservations and the cluster as
            # it is now; a reservation whose session is gone (its build was killed) no longer counts.
            conn.execute("LOCK TABLE proxpipe.template_ids IN EXCLUSIVE MODE")
            conn.execute("DELETE FROM proxpipe.template_ids t WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
                         "WHERE a.pid = t.backend_pid AND (a.backend_start IS NULL OR "
                         "a.backend_start = t.backend_start))")
            reserved = {row[0] for row in conn.execute("SELECT vmid FROM proxpipe.template_ids WHERE scope = %s",
                                                       (scope,))}
            taken = used() | reserved
            chosen = next((vmid for vmid in range(low, high + 1) if vmid not in taken), None)
            if chosen is not None:
                conn.execute("INSERT INTO proxpipe.template_ids (scope, vmid, holder, backend_pid, backend_start) "
                             "SELECT %s, %s, %s, pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                             (scope, chosen, json.dumps(lock.holder_info("build"))))
            return chosen

    def release_template_id(self, scope: str, vmid: int) -> None:
        conn = self._connection()
        with self._errors():
            conn.execute("DELETE FROM proxpipe.template_ids WHERE scope = %s AND vmid = %s AND "
                         "backend_pid = pg_backend_pid()", (scope, vmid))

    # ------------------------------------------------------------------ lock

    def acquire(self, command: str, wait: float = 0.0) -> None:
        if self._locked:
            return
        conn = self._connection()

        def try_once() -> bool:
            with self._errors():
                return conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self._key)).fetchone()[0]

        if not lock.retrying(try_once, wait):
            raise lock.locked_error(self.environment, self._holder(), local=False)
        self._locked = True
        previous = self._query("SELECT holder FROM {s}.lock_holder")
        if previous:
            lock.warn_taken_over(self.environment, json.loads(previous[0][0]))  # its session died without releasing
        self._execute("INSERT INTO {s}.lock_holder (holder, backend_pid) VALUES (%s, pg_backend_pid()) ON CONFLICT "
                      "(id) DO UPDATE SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid",
                      (json.dumps(lock.holder_info(command)),))
        with self._errors():
            self._serial = self._current_serial(conn)  # what the previous holder wrote is this run's start

    def _holder(self) -> dict | None:
        """Who holds the lock: the holder row, when its session is the one that holds the advisory lock."""
        rows = self._query("SELECT h.holder FROM {s}.lock_holder h JOIN pg_locks l ON l.locktype = 'advisory' AND "
                           "l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2 AND l.granted AND "
                           "l.pid = h.backend_pid", (LOCK_CLASS, self._key))
        return json.loads(rows[0][0]) if rows else None

    def release(self) -> None:
        if not self._locked:
            return
        self._locked = False
        with contextlib.suppress(Exception):  # a connection that is gone took its lock with it
            self._execute("DELETE FROM {s}.lock_holder WHERE backend_pid = pg_backend_pid()")
            self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, self._key))

    # ------------------------------------------------------------------ documents

    def put_document(self, kind: str, name: str, data: bytes) -> None:
        with self._write() as (execute, serial):
            execute("INSERT INTO {s}.documents (kind, name, data, serial) VALUES (%s, %s, %s, %s) ON CONFLICT "
                    "(kind, name) DO UPDATE SET data = EXCLUDED.data, serial = EXCLUDED.serial, seq = DEFAULT",
                    (kind, name, bytes(data), serial))

    def get_document(self, kind: str, name: str) -> bytes | None:
        rows = self._query("SELECT data FROM {s}.documents WHERE kind = %s AND name = %s", (kind, name))
        return bytes(rows[0][0]) if rows else None

    def delete_document(self, kind: str, name: str) -> None:
        with self._write() as (execute, _serial):
            execute("DELETE FROM {s}.documents WHERE kind = %s AND name = %s", (kind, name))

    def document_names(self, kind: str) -> list[str]:
        return [row[0] for row in self._query("SELECT name FROM {s}.documents WHERE kind = %s ORDER BY seq", (kind,))]

    def document_kinds(self) -> list[str]:
        return [row[0] for row in self._query("SELECT DISTINCT kind FROM {s}.documents ORDER BY kind")]

    # ------------------------------------------------------------------ the template registry: the project's

    def read_registry(self) -> str | None:
        with self._registry() as (conn, project):
            row = conn.execute("SELECT data FROM proxpipe.registry WHERE project = %s", (project,)).fetchone()
        return row[0] if row else None

    def update_registry(self, change: Callable[[str | None], str]) -> None:
        """In one transaction, under the project registry's lock: every environment's writes wait for it."""
        with self._registry() as (conn, project):
            row = conn.execute("SELECT data FROM proxpipe.registry WHERE project = %s", (project,)).fetchone()
            conn.execute("INSERT INTO proxpipe.registry (project, data) VALUES (%s, %s) ON CONFLICT (project) DO "
                         "UPDATE SET data = EXCLUDED.data, updated = now()", (project, change(row[0] if row else None)))

    @contextlib.contextmanager
    def _registry(self) -> Iterator[tuple[Any, str]]:
        conn, project = self._connection(), self.settings.project
        with self._errors(), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"proxpipe.registry:{project}",))
            conn.execute(_REGISTRY_DDL)
            yield conn, project

    # ------------------------------------------------------------------ copying

    def import_state(self, snapshot: Snapshot, handoffs: list[str]) -> None:
        with self._write() as (execute, serial):
            for table in ("handoffs", "logs", "stages", "documents"):
                execute(f"DELETE FROM {{s}}.{table}")
            for name, text in snapshot.handoffs.items():
                execute("INSERT INTO {s}.handoffs (name, text, serial) VALUES (%s, %s, %s)", (name, text, serial))
            for log, lines in snapshot.logs.items():
                for line in lines:
                    execute("INSERT INTO {s}.logs (log, line, serial) VALUES (%s, %s, %s)", (log, line, serial))
            for stage, record in snapshot.stages.items():
                execute("INSERT INTO {s}.stages (stage, record, serial) VALUES (%s, %s, %s)",
                        (stage, json.dumps(record), serial))
            for (kind, name), data in snapshot.documents.items():
                execute("INSERT INTO {s}.documents (kind, name, data, serial) VALUES (%s, %s, %s, %s)",
                        (kind, name, bytes(data), serial))
        for name in handoffs:
            self._copy(name, snapshot.handoffs.get(name))

    # ------------------------------------------------------------------ tools

    def tool_database(self, tool: str) -> ToolDatabase:
        self._connection()  # the endpoint settles the settings (the lab starts its server) before a tool connects
        name = f"{self.settings.schema}_{tool}".replace("-", "_")
        if len(name) > 63:
            raise ConfigError(f"{self.settings.where}: the schema {name} for {tool} is longer than PostgreSQL's 63 "
                              "characters; shorten the project, environment or stage name")
        return ToolDatabase(libpq_environ(self.settings.url.reveal(), self.settings.where), name, self.address)


def _reason(exc: Exception) -> str:
    """The first line of a database error, without psycopg's "connection failed:" prefix, secrets masked."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("connection failed: ", "consuming input failed: "):
        text = text.removeprefix(prefix)
    return secrets.mask(text.strip() or type(exc).__name__)
