"""The stage contract: inputs, handoff, up-to-date checks, run() and rollback.

A stage kind is a Stage subclass registered through the ``register_stage_kinds`` hook (the built-in
packer, terraform, tofu and ansible kinds too). The core turns each configured stage into one
doit task: ``inputs()`` become its file_dep, its handoff file its target, ``fingerprint()`` and
``remote_check()`` its up-to-date checks, and ``run()`` its action.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pipeline import handoff, secrets
from pipeline.errors import HandoffError
from pipeline.fsutil import sha256_file
from pipeline.handoff import HandoffKind
from pipeline.schema import Field
from pipeline.secrets import Secret

if TYPE_CHECKING:
    from pipeline.config import StageConfig
    from pipeline.context import Pipeline
    from pipeline.events import RunInfo
    from pipeline.tools import ToolRunner

# Never inputs, whatever the kind.
COMMON_EXCLUDES = (".git", "__pycache__", "*.pyc", "*.swp", "*~", ".DS_Store", "*.retry", ".*.tmp-*")


class ToolSpec(NamedTuple):
    """A program a stage needs, for `doit doctor` and the tool versions in the run log."""

    program: str
    version_args: tuple[str, ...]
    version_pattern: str
    minimum: str
    install: str
    option: str = ""  # the stage option that names it, if any


@dataclass
class StageJob:
    """What run() gets besides the upstream value: the tool runner, the run, and a place for notes."""

    runner: ToolRunner
    run: RunInfo
    pipeline: Pipeline
    upstream_path: Path | None = None  # the file the upstream value was read from
    options: dict[str, Any] = field(default_factory=dict)  # the task's command-line parameters
    notes: dict[str, Any] = field(default_factory=dict)  # extra fields for the history entry
    tool_versions: dict[str, str] = field(default_factory=dict)


class Stage:
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    ACTION: ClassVar[str] = "run"  # what a successful run is called in the history: build, provision, ...
    consumes: ClassVar[HandoffKind | None] = None
    produces: ClassVar[HandoffKind] = handoff.FILE
    OPTIONS: ClassVar[dict[str, Field]] = {}
    RETRY_PATTERNS: ClassVar[tuple[str, ...]] = ()
    CACHE_GLOBS: ClassVar[tuple[str, ...]] = ()
    # Give the tool the Proxmox API address and credentials (PROXMOX_VE_*, PROXMOX_*) in its environment.
    WANTS_PROXMOX: ClassVar[bool] = False
    # The doit parameter that takes the upstream handoff by hand, e.g. --template-id.
    UPSTREAM_PARAM: ClassVar[dict | None] = None
    # More doit parameters of the stage's task (doit's param dicts); run() finds them in job.options.
    PARAMS: ClassVar[tuple[dict, ...]] = ()

    @classmethod
    def check_dir(cls, path: Path) -> str | None:
        """What is wrong with dir for this kind (e.g. no .tf files), checked when pipeline.yaml is loaded."""
        return None

    def __init__(self, config: StageConfig, pipeline: Pipeline):
        self.config = config
        self.pipeline = pipeline
        self.name = config.name
        self.dir = config.dir
        self.options = config.options
        self.handoff_path = pipeline.state_dir / config.handoff
        # Set by the up-to-date checks (pipeline.uptodate), for the console and `doit status`.
        self.stale_reasons: list[str] = []
        self.remote_ok: bool | None = None
        self.remote_reason = ""
        self._sensitive: set[str] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ------------------------------------------------------------------ inputs

    def excludes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(COMMON_EXCLUDES + self.CACHE_GLOBS + self.config.exclude))

    def inputs(self) -> list[Path]:
        """The files under dir this stage reads, caches and outputs of the tool excluded."""
        patterns = self.excludes()
        found = []
        for top, dirs, files in os.walk(self.dir):
            rel_top = os.path.relpath(top, self.dir)
            dirs[:] = sorted(d for d in dirs if not _excluded(d, os.path.join(rel_top, d), patterns))
            for name in sorted(files):
                if not _excluded(name, os.path.normpath(os.path.join(rel_top, name)), patterns):
                    found.append(Path(top) / name)
        return found

    def input_digests(self) -> dict[str, str]:
        """path relative to dir -> sha256 of every input."""
        return {os.path.relpath(path, self.dir): sha256_file(path) for path in self.inputs()}

    def inputs_digest(self) -> str:
        """One digest of every input's path and content (for the history and drift checks)."""
        return stable_digest(self.input_digests())

    def expand(self, value: Any) -> Any:
        """value with {state_dir}, {project} and {user} in its strings replaced (for tool variables)."""
        if isinstance(value, str):
            import getpass

            return (value.replace("{state_dir}", str(self.pipeline.state_dir.absolute()))
                    .replace("{project}", str(self.pipeline.root)).replace("{user}", getpass.getuser()))
        if isinstance(value, dict):
            return {k: self.expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v) for v in value]
        return value

    # ------------------------------------------------------------------ tool variables and secrets

    def sensitive_vars(self) -> set[str]:
        """Names of the variables the tool's own sources declare sensitive; none for a kind without such sources."""
        return set()

    def declared_sensitive(self, read: Callable[[], set[str]]) -> set[str]:
        """sensitive_vars() from read() (see pipeline.hclvars), once per process. Sources that cannot be read make
        every variable a secret, with a warning: a parse error must not put a secret on a command line."""
        if self._sensitive is None:
            from pipeline.console import console
            from pipeline.hclvars import HclError

            try:
                self._sensitive = read()
            except HclError as exc:
                console.warn(f"{self.name}: {exc}; passing every one of its vars as a secret")
                self._sensitive = set(self.options.get("vars") or {})
        return self._sensitive

    @property
    def hcl_cache(self) -> Path:
        """Where pipeline.hclvars keeps what it read, by the sources' digests."""
        return self.pipeline.state_dir / "hcl-variables.json"

    def secret_var_names(self) -> set[str]:
        """The `vars` that are secrets: named like one or taken from a variable named like one (they are Secret
        objects), declared sensitive by the tool's sources, or holding the value of another secret."""
        values = self.options.get("vars") or {}
        declared = self.sensitive_vars() if values else set()
        return {name for name, value in values.items() if isinstance(value, Secret) or name in declared
                or secrets.holds_secret(json.dumps(value, default=str))}

    def tool_vars(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(plain, secret) values of the `vars` option, revealed and expanded. The secret ones are registered for
        masking and must reach the tool through its environment or a private file, never its command line. A
        variable whose ${VAR} is not set fails here, when a command needs it."""
        hidden = self.secret_var_names()
        plain: dict[str, Any] = {}
        secret: dict[str, Any] = {}
        for name, value in (self.options.get("vars") or {}).items():
            value = self.expand(secrets.reveal(value))
            if name in hidden:
                secrets.register(value)
                secret[name] = value
            else:
                plain[name] = value
        return plain, secret

    def private_vars_file(self, values: dict[str, Any]) -> AbstractContextManager[Path]:
        """A JSON file of values that only this user can read, removed when the block ends: for secrets a tool
        cannot take from its environment."""
        from pipeline.fsutil import private_file

        return private_file(self.pipeline.state_dir / f"{self.name}-vars.json", json.dumps(values))

    def require_values(self) -> None:
        """The one-line ConfigError of the first `vars` or `env` value whose ${VAR} is not set, if any."""
        for value in [*(self.options.get("vars") or {}).values(), *self.config.env.values()]:
            if isinstance(value, Secret) and not value.is_set:
                value.reveal()

    def register_secrets(self) -> None:
        """Mask the values of the stage's secret variables that are set, before any of its tool steps runs."""
        values = self.options.get("vars") or {}
        for name in self.secret_var_names():
            if not isinstance(values[name], Secret) or values[name].is_set:
                secrets.register(self.expand(secrets.reveal(values[name])))

    def handoff_value(self) -> Any:
        """This stage's handoff as last written; None when it is missing or invalid."""
        try:
            return handoff.read(self.produces, self.handoff_path)
        except HandoffError:
            return None

    # ------------------------------------------------------------------ up-to-date checks

    def fingerprint(self) -> dict[str, Any]:
        """The configuration that makes this stage stale when it changes (hashed before it is stored)."""
        return portable({"kind": self.kind, "options": self.options, "env": self.config.env,
                         "handoff": self.config.handoff}, self.pipeline.root)

    def config_digest(self) -> str:
        """sha256 of fingerprint(): what is stored and compared, so no secret is ever stored."""
        return stable_digest(self.fingerprint())

    def remote_check(self) -> tuple[bool | None, str]:
        """(up to date?, reason) from the remote side, e.g. 'the template still exists'. None: no opinion."""
        return None, ""

    # ------------------------------------------------------------------ running

    def run(self, upstream: Any, job: StageJob) -> Any:
        """Drive the tool; return the handoff value (written by the core after it is checked)."""
        raise NotImplementedError

    def note_version(self, job: StageJob, binary: str, label: str) -> None:
        """Record the version of the stage's program (the first of tools()) for the run log."""
        from pipeline import tools

        spec = self.tools()[0]
        job.tool_versions[label] = tools.version(binary, spec.version_args, spec.version_pattern,
                                                 self.pipeline.state_dir)

    def after_handoff(self, value: Any, job: StageJob) -> None:
        """Called once the new handoff is written (e.g. to delete templates past their retention)."""

    def tools(self) -> list[ToolSpec]:
        """The programs this stage runs, for doit doctor."""
        return []


def env_text(value: Any) -> str:
    """A variable's value for the environment (PKR_VAR_x, TF_VAR_x): strings as they are, anything else as JSON,
    which both tools parse as a value of the variable's type."""
    return value if isinstance(value, str) else json.dumps(value)


def _excluded(name: str, rel: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def portable(value: Any, root: Path) -> Any:
    """value with paths made relative to the project, so a moved checkout is not stale."""
    if isinstance(value, Path):
        return os.path.relpath(value, root)
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v, root) for v in value]
    return value


def stable_digest(value: Any) -> str:
    """sha256 of a JSON form of value (paths as strings), so secrets are never stored as they are."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=_plain).encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    reveal = getattr(value, "reveal", None)
    if reveal is not None:
        return {"secret": value.source}
    if isinstance(value, set | tuple):
        return sorted(value) if isinstance(value, set) else list(value)
    return str(value)
