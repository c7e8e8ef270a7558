"""pipeline.yaml: loaded once, checked completely, turned into typed, read-only objects.

Any problem ends in one ConfigError line naming the file, the key path and the problem.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from proxpipe.base import schema
from proxpipe.base.errors import ConfigError
from proxpipe.base.schema import Field
from proxpipe.base.secrets import Secret
from proxpipe.domain.state import settings as state_settings

DEFAULT_FILE = "pipeline.yaml"
# Task names of the pipeline's own commands and of doit's; a stage may not take one.
RESERVED_NAMES = {"deploy", "status", "validate", "rollback", "destroy", "docs", "doctor", "history", "drift",
                  "report", "lab-stop", "plan", "approve", "apply", "init", "state-push", "state-pull", "run",
                  "list", "info", "clean", "forget", "ignore", "help",
                  "auto", "dumpdb", "strace", "reset-dep", "tabcompletion"}
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_CACHE_FORMAT = 2  # copies of older versions were written before the duplicate-key and size checks


def _regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


def _url(value: str) -> str | None:
    return None if re.match(r"^https?://[^/\s]+", value) else f"{value!r} is not an http(s) URL"


RETRY_FIELDS = {
    "attempts": Field(schema.INT, "Tries in all, the first included.", default=3, minimum=1, maximum=20),
    "max_seconds": Field(schema.NUMBER, "Give up retrying after this many seconds in all.", default=300,
                         minimum=0),
    "patterns": Field(schema.LIST, "Regular expressions; a failed step whose output matches one is retried. "
                                   "Default: the stage kind's.", items=Field(schema.STR, check=_regex)),
}

STAGE_FIELDS = {
    "kind": Field(schema.STR, "The stage kind: packer, terraform, tofu, ansible, or a plugin's.", required=True),
    "dir": Field(schema.DIR, "The tool's project directory, relative to pipeline.yaml.", required=True),
    "description": Field(schema.STR, "One line for status and the docs."),
    "handoff": Field(schema.STR, "File name of the handoff in the state directory. Default: the kind's.",
                     check=lambda v: None if "/" not in v else "a file name, not a path"),
    "env": Field(schema.VARS, "Extra environment variables for the tool; ${VAR} references are resolved, and "
                              "{state_dir}, {project} and {user} replaced. Values named like a secret, or taken "
                              "from a variable named like one, are secrets (see README).", values=Field(schema.STR)),
    "timeout": Field(schema.NUMBER, "Seconds one tool step may run before it is stopped.", default=3600,
                     minimum=1),
    "retry": Field(schema.MAP, "Retries of tool steps that fail with a retryable error.", fields=RETRY_FIELDS,
                   default={}),
    "stop_grace": Field(schema.NUMBER, "Seconds a tool may take to stop cleanly when the run is interrupted "
                                       "(Ctrl-C, SIGTERM): it gets SIGINT, then SIGKILL after this long or at a "
                                       "second interrupt.", default=30, minimum=0),
    "exclude": Field(schema.LIST, "Globs (relative to dir) that are not inputs, besides the kind's caches.",
                     items=Field(schema.STR)),
    "needs": Field(schema.LIST, "The stages this one runs after; it reads the handoffs of those that hand off what "
                                "its kind takes. Default: the stage before it ([]: none).", items=Field(schema.STR)),
    "group": Field(schema.STR, "A name for `limits:` of the environment, shared with other stages (e.g. the "
                               "builds on one node), besides the stage's kind."),
}

PROXMOX_FIELDS = {
    "url": Field(schema.STR, "The API address, e.g. https://pve.example.com:8006.", required=True, check=_url),
    "node": Field(schema.STR, "The node templates are built on and VMs cloned on.", required=True),
    "token_id": Field(schema.STR, "API token id, user@realm!name."),
    "token_secret": Field(schema.SECRET, "API token secret, as a ${ENV_VAR} reference."),
    "user": Field(schema.STR, "User for a password login (user@realm), when no token is given."),
    "password": Field(schema.SECRET, "Password, as a ${ENV_VAR} reference."),
    "ca_file": Field(schema.PATH, "CA certificate that signs the API's TLS certificate."),
    "verify_tls": Field(schema.BOOL, "Check the API's TLS certificate.", default=True),
    "timeout": Field(schema.NUMBER, "Seconds one API request may take.", default=10, minimum=0.1),
    "check_cache": Field(schema.NUMBER, "Seconds the up-to-date checks may reuse the cluster's list of VMs from an "
                                        "earlier command, so a repeated no-op asks the API nothing (0: always "
                                        "ask). Anything the pipeline itself runs starts afresh; `doit status` shows "
                                        "the age.", default=10, minimum=0),
    "retry": Field(schema.MAP, "Retries of API calls that fail for a passing reason.", default={}, fields={
        "attempts": Field(schema.INT, "Tries in all.", default=6, minimum=1, maximum=50),
        "max_seconds": Field(schema.NUMBER, "Give up after this many seconds in all.", default=60, minimum=0),
    }),
}

VALIDATE_FIELDS = {
    "group": Field(schema.STR, "Inventory group for the ansible-ping check.", default="all"),
    "ssh_timeout": Field(schema.NUMBER, "Seconds per host for the SSH check.", default=5, minimum=0.1),
    "skip": Field(schema.LIST, "Check ids not to run.", items=Field(schema.STR)),
}

ENVIRONMENT_FIELDS = {
    "description": Field(schema.STR, "One line for status and the docs."),
    "state_dir": Field(schema.PATH, "Where handoffs, history and logs go (with `state`, only logs and caches). "
                                    "Default: .pipeline/<environment>."),
    "state": Field(schema.MAP, "Keep the environment's state (handoffs, history, run log, template ids, lock, "
                               "up-to-date records) in PostgreSQL, shared by every checkout and CI runner. "
                               "Omitted: local files in state_dir.", fields=state_settings.STATE_FIELDS),
    "proxmox": Field(schema.MAP, "The Proxmox VE API.", fields=PROXMOX_FIELDS),
    "stages": Field(schema.MAP, "The stages in order: name -> settings.", required=True,
                    values=Field(schema.RAW)),
    "validate": Field(schema.MAP, "Settings of doit validate.", fields=VALIDATE_FIELDS, default={}),
    "jobs": Field(schema.INT, "Stages that may run at once (independent branches of the graph); also --jobs N on "
                              "deploy.", default=4, minimum=1),
    "limits": Field(schema.MAP, "At most this many stages at once of a kind or group, e.g. {packer: 1}.",
                    values=Field(schema.INT, minimum=1)),
    "approval": Field(schema.STR, "none: doit deploy plans and applies in one go. required: only an approved plan "
                                  "is applied (doit plan, doit approve, doit apply). second-person: approved by "
                                  "someone else than its author.", default="none",
                      choices=("none", "required", "second-person")),
}

TOP_FIELDS = {
    "project": Field(schema.STR, "The project's name, the same in every checkout; an environment with `state` keeps "
                                 "it in the database schema proxpipe_<project>_<environment>.",
                     check=state_settings.project_problem),
    "default_environment": Field(schema.STR, "The environment used when none is chosen."),
    "plugins": Field(schema.RAW, "Plugins: name -> {enabled, on_error, and the plugin's own options}."),
    "environments": Field(schema.MAP, "name -> environment.", required=True, values=Field(schema.RAW)),
}


class Retry(NamedTuple):
    attempts: int
    max_seconds: float
    patterns: tuple[str, ...] = ()


class ProxmoxConfig(NamedTuple):
    url: str
    node: str
    token_id: str | None
    token_secret: Secret | None
    user: str | None
    password: Secret | None
    ca_file: Path | None
    verify_tls: bool
    timeout: float
    retry: Retry
    check_cache: float = 0.0  # seconds an up-to-date check may reuse an earlier command's answer


class ValidateConfig(NamedTuple):
    group: str = "all"
    ssh_timeout: float = 5.0
    skip: tuple[str, ...] = ()


class StageConfig(NamedTuple):
    name: str
    kind: str
    dir: Path
    handoff: str
    description: str
    env: dict[str, str | Secret]  # Secret: a secret, or a value whose variable is not set
    timeout: float
    retry: Retry
    exclude: tuple[str, ...]
    options: dict[str, Any]  # the kind's own options, validated by its OPTIONS
    where: str  # key path in pipeline.yaml, for messages
    stop_grace: float = 30.0
    needs: tuple[str, ...] = ()  # the stages it runs after (see proxpipe.domain.graph)
    group: str | None = None  # shares `limits:` with other stages of the group


class Environment(NamedTuple):
    name: str
    root: Path
    file: str
    state_dir: Path
    description: str
    proxmox: ProxmoxConfig | None
    stages: tuple[StageConfig, ...]
    validate: ValidateConfig
    raw: Any = None  # the environment as written, ${VAR} references unresolved (for the docs)
    extras: dict[str, Any] = {}  # keys that plugins add (the environment_fields hook), validated; e.g. lab
    approval: str = "none"  # none, required or second-person
    state: state_settings.StateConfig | None = None  # None: local files in state_dir
    jobs: int = 4  # stages that may run at once
    limits: dict[str, int] = {}  # kind or group -> stages of it at once

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"{self.file}: environments.{self.name}.stages: no stage named {name!r} "
                          f"(stages: {', '.join(s.name for s in self.stages)})")


class PluginSource(Protocol):
    """What loading pipeline.yaml needs of the loaded plugins (the engine's plugin manager provides it)."""

    def stage_kinds(self) -> dict[str, type]: ...

    def environment_fields(self) -> dict[str, Field]: ...


class PipelineConfig(NamedTuple):
    path: Path
    root: Path
    default_environment: str | None
    environments: dict[str, Environment]
    plugins: PluginSource  # the loaded plugins (proxpipe.engine.plugin_manager.Plugins)
    raw_plugins: Any = None  # the plugins section as written

    def environment(self, name: str | None = None) -> Environment:
        """The environment by name, else PIPELINE_ENV, else default_environment, else the only one. An empty name
        (`env=`, or PIPELINE_ENV set to nothing) is an error, never the default: the default may be production."""
        known = ", ".join(self.environments)
        given, how, drop = ((name, "env= is", "leave env= out") if name is not None else
                            (os.environ.get("PIPELINE_ENV"), "PIPELINE_ENV is set but", "unset it"))
        if given is not None and not given.strip():
            default = f"the default, {self.default_environment}" if self.default_environment else "the default"
            raise ConfigError(f"{how} empty: name the environment (known: {known}), or {drop} for {default}")
        name = given or self.default_environment
        if not name and len(self.environments) == 1:
            name = next(iter(self.environments))
        if name not in self.environments:
            raise ConfigError(f"{self.path.name}: environments: no environment {name!r} (known: {known}); "
                              "choose one with env=NAME or PIPELINE_ENV")
        return self.environments[name]


def load(path: Path | str, environ: dict[str, str] | None, plugins: Callable[[Any, schema.Context], PluginSource],
         write_cache: bool = True) -> PipelineConfig:
    """Read and check pipeline.yaml with every environment in it. plugins(section, ctx) loads the plugins of the
    `plugins:` section (proxpipe.engine.plugin_manager.Plugins.load): their stage kinds and environment keys are part of
    what is checked. write_cache=False: no file is written (the help and the completion change nothing)."""
    path = Path(path).absolute()
    ctx = schema.Context(path.name, path.parent, environ if environ is not None else dict(os.environ))
    raw = _read_yaml(path, write_cache)
    top = schema.validate_map(raw, TOP_FIELDS, "", ctx)
    loaded = plugins(top["plugins"], ctx)
    kinds = loaded.stage_kinds()
    fields = {**loaded.environment_fields(), **ENVIRONMENT_FIELDS}
    if not top["environments"]:
        raise ctx.error("environments", "no environment defined")
    envs = {str(name): _environment(str(name), data, ctx, kinds, fields, top["project"])
            for name, data in top["environments"].items()}
    state_settings.check_distinct(envs, ctx)
    default = top["default_environment"]
    if default is not None and default not in envs:
        raise ctx.error("default_environment", f"{default!r} is not an environment (known: {', '.join(envs)})")
    return PipelineConfig(path, path.parent, default, envs, loaded, top["plugins"])


def _read_yaml(path: Path, write_cache: bool = True) -> Any:
    """The parsed file. A JSON copy next to the state (.pipeline/) spares the YAML parser, a tenth of a no-op
    run's start-up, as long as the file's bytes are the same. The copy is written only once the file passed
    yamlfile's checks (no duplicate key, within its bounds), so it never holds what they refuse."""
    import hashlib
    import json

    from proxpipe.domain import yamlfile

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: not found in {path.parent}; run from the project directory, "
                          "or create one with `proxpipe init`") from None
    except OSError as exc:
        raise ConfigError(f"{path.name}: cannot read: {exc.strerror}") from None
    digest = hashlib.sha256(raw).hexdigest()
    cache = path.parent / ".pipeline" / f".{path.name}.json"
    try:
        if cache.stat().st_size <= yamlfile.MAX_CHARS + 100:  # never a copy an older version let grow
            cached = json.loads(cache.read_text())
            if cached["sha256"] == digest and cached.get("format") == _CACHE_FORMAT:
                return cached["data"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = yamlfile.load(path.name, raw)
    if not write_cache:
        return data
    try:
        from proxpipe.base.fsutil import atomic_write

        atomic_write(cache, json.dumps({"sha256": digest, "format": _CACHE_FORMAT, "data": data}), durable=False)
    except (OSError, TypeError, ValueError):
        pass  # a read-only checkout, or YAML that JSON cannot hold (dates): just no cache
    return data


def _environment(name: str, data: Any, ctx: schema.Context, kinds: dict[str, type],
                 fields: dict[str, Field], project: str | None = None) -> Environment:
    where = f"environments.{name}"
    if not _NAME.match(name):
        raise ctx.error(where, "environment names use lower-case letters, digits, - and _")
    env = schema.validate_map(data, fields, where, ctx)
    state_dir = env["state_dir"] or ctx.base / ".pipeline" / name
    implicit = {str(n) for n, raw in (env["stages"] or {}).items() if isinstance(raw, dict) and "needs" not in raw}
    stages = _in_order(_stages(env["stages"], f"{where}.stages", ctx, kinds), kinds, f"{where}.stages", ctx, implicit)
    proxmox = _proxmox(env["proxmox"], f"{where}.proxmox", ctx) if env["proxmox"] else None
    validate = env["validate"]
    extras = {key: env[key] for key in fields if key not in ENVIRONMENT_FIELDS}
    return Environment(name, ctx.base, ctx.file, Path(state_dir), env["description"] or "", proxmox, stages,
                       ValidateConfig(validate["group"], validate["ssh_timeout"], tuple(validate["skip"] or ())),
                       data, extras, env["approval"],
                       state_settings.state_config(env["state"], project, name, f"{where}.state", ctx),
                       env["jobs"], dict(env["limits"] or {}))


def _stages(data: dict, where: str, ctx: schema.Context, kinds: dict[str, type]) -> tuple[StageConfig, ...]:
    if not data:
        raise ctx.error(where, "no stage defined")
    stages: list[StageConfig] = []
    for name, raw in data.items():
        name = str(name)
        here = f"{where}.{name}"
        if not _NAME.match(name) or name in RESERVED_NAMES:
            raise ctx.error(here, f"{name!r} cannot be a stage name (lower-case letters, digits, - and _; "
                                  f"not one of the commands {', '.join(sorted(RESERVED_NAMES))})")
        if not isinstance(raw, dict):
            raise ctx.error(here, f"expected a mapping, got {schema.describe(raw)}")
        common_raw = {k: v for k, v in raw.items() if k in STAGE_FIELDS}
        common = schema.validate_map(common_raw, STAGE_FIELDS, here, ctx)
        kind = kinds.get(common["kind"])
        if kind is None:
            raise ctx.error(f"{here}.kind", f"unknown stage kind {common['kind']!r} "
                                            f"(known: {', '.join(sorted(kinds))})")
        problem = kind.check_dir(common["dir"])
        if problem:
            raise ctx.error(f"{here}.dir", f"{raw['dir']} {problem}")
        own_raw = {k: v for k, v in raw.items() if k not in STAGE_FIELDS}
        stage_ctx = schema.Context(ctx.file, common["dir"], ctx.environ, project=ctx.base)
        options = schema.validate_map(own_raw, kind.OPTIONS, here, stage_ctx)
        retry = common["retry"]
        stages.append(StageConfig(
            name=name, kind=common["kind"], dir=common["dir"],
            handoff=common["handoff"] or _default_handoff(name, kind, data, kinds),
            description=common["description"] or kind.description,
            env=common["env"] or {}, timeout=common["timeout"],
            retry=Retry(retry["attempts"], retry["max_seconds"],
                        tuple(retry["patterns"] if retry["patterns"] is not None else kind.RETRY_PATTERNS)),
            exclude=tuple(common["exclude"] or ()), options=options, where=f"{ctx.file}: {here}",
            stop_grace=common["stop_grace"], group=common["group"],
            needs=tuple(common["needs"]) if common["needs"] is not None else tuple(s.name for s in stages[-1:])))
    return tuple(stages)


def _default_handoff(name: str, kind: type, stages: dict, kinds: dict[str, type]) -> str:
    """The kind's file name (template_id.txt, ...); prefixed with the stage's name when other stages hand off the same
    kind (build-web-template_id.txt), so that each stage has a handoff of its own."""
    same = [other for other, raw in stages.items() if isinstance(raw, dict) and raw.get("kind") in kinds
            and kinds[raw["kind"]].produces is kind.produces]
    return kind.produces.filename if len(same) <= 1 else f"{name}-{kind.produces.filename}"


def _in_order(stages: tuple[StageConfig, ...], kinds: dict[str, type], where: str, ctx: schema.Context,
              implicit: set[str]) -> tuple[StageConfig, ...]:
    """The stages with their graph checked (proxpipe.domain.graph), each after what it needs."""
    from proxpipe.domain.graph import Graph, check

    by_name = {stage.name: stage for stage in stages}
    graph = Graph({s.name: s.needs for s in stages}, {s.name: kinds[s.kind] for s in stages})
    check(graph, {s.name: s.handoff for s in stages},
          lambda name, sources: kinds[by_name[name].kind].check_sources(by_name[name].options, sources),
          lambda at, problem: ctx.error(f"{where}.{at}", problem), implicit)
    return tuple(by_name[name] for name in graph.order())


def _proxmox(data: dict, where: str, ctx: schema.Context) -> ProxmoxConfig:
    has_token = data["token_id"] is not None or data["token_secret"] is not None
    has_password = data["user"] is not None or data["password"] is not None
    if has_token == has_password:
        raise ctx.error(where, "give either token_id and token_secret, or user and password")
    if has_token and (data["token_id"] is None or data["token_secret"] is None):
        raise ctx.error(where, "token_id and token_secret go together")
    if has_password and (data["user"] is None or data["password"] is None):
        raise ctx.error(where, "user and password go together")
    retry = data["retry"]
    return ProxmoxConfig(data["url"].rstrip("/"), data["node"], data["token_id"], data["token_secret"],
                         data["user"], data["password"], data["ca_file"], data["verify_tls"], data["timeout"],
                         Retry(retry["attempts"], retry["max_seconds"]), data["check_cache"])
