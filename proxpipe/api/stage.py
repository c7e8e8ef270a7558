"""The stage contract: what a stage kind declares and the verbs it implements.

A stage kind is a Stage subclass registered through the ``register_stage_kinds`` hook (the built-in packer,
terraform, tofu and ansible kinds too). It declares what it consumes and produces (handoff kinds), its options,
inputs and up-to-date checks, and implements the verbs the engine asks of it: ``run`` (abstract), ``preflight``,
``preview`` (plan), ``drift``, ``destroy``, ``rollback`` and ``restore``. A verb a kind does not implement refuses in
one line (Unsupported). A verb runs the kind's tool and returns a value; the engine (proxpipe.engine) checks, writes,
keeps and restores the handoffs, records the history and decides what is stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from proxpipe.base import secrets
from proxpipe.base.errors import Unsupported
from proxpipe.base.fsutil import display
from proxpipe.base.schema import Field
from proxpipe.base.secrets import Secret
from proxpipe.domain import handoff, inputs
from proxpipe.domain.handoff import HandoffKind
from proxpipe.domain.inputs import Exclude

if TYPE_CHECKING:
    from proxpipe.base.events import RunInfo
    from proxpipe.domain.config import Environment, StageConfig
    from proxpipe.domain.history import History
    from proxpipe.domain.proxmox import Proxmox
    from proxpipe.domain.state import StateStore
    from proxpipe.domain.toolrunner import ToolRunner

# Never inputs, whatever the kind.
COMMON_EXCLUDES = (".git", "__pycache__", "*.pyc", "*.swp", "*~", ".DS_Store", "*.retry", ".*.tmp-*")


class HandoffView(Protocol):
    """The engine's handoff service as stage kinds and checks see it: reading, never writing."""

    def path(self, stage: Stage) -> Path:
        """A local file with the handoff's current text: for tools to read, and to name it in messages."""

    def text(self, stage: Stage) -> str | None:
        """The handoff as written, unchecked; None when there is none."""

    def read(self, stage: Stage) -> Any:
        """The checked value; HandoffError naming the file and the problem when missing or invalid."""

    def value(self, stage: Stage) -> Any:
        """The checked value, or None when it is missing or invalid."""

    def upstream(self, stage: Stage, sources: list[Stage], given: str | None) -> tuple[Any, Path | None]:
        """(value, file) a stage starts from: its sources' handoffs (merged when several), or one given by hand."""


class PipelineView(Protocol):
    """What stages, checks and commands see of the running pipeline (the engine's Pipeline provides it)."""

    env: Environment
    root: Path  # the project: the folder of pipeline.yaml
    state_dir: Path  # the environment's local state directory (.pipeline/<env>): logs, caches, local state
    store: StateStore  # where the environment's state lives (handoffs, history, records, lock)
    history: History
    handoffs: HandoffView
    run: RunInfo | None

    @property
    def proxmox(self) -> Proxmox | None:
        """The Proxmox API client, or None when the environment has none."""

    def require_proxmox(self, why: str) -> Proxmox:
        """The client, or a ConfigError saying that it is needed to do `why`."""

    def record(self, stage: Stage, action: str, **fields: Any) -> dict:
        """Append a history entry about stage in the current run."""

    def relative(self, path: Path | str) -> str:
        """path as messages show it: relative to the project."""

    @property
    def stages(self) -> list[Stage]:
        """The environment's stages, in order."""

    def upstream(self, stage: Stage) -> Stage | None:
        """The stage whose handoff this one reads (the first of several), or None."""

    def sources(self, stage: Stage) -> list[Stage]:
        """The stages whose handoffs this one reads (see proxpipe.domain.graph)."""

    def downstream(self, stage: Stage, inclusive: bool = False) -> list[Stage]:
        """The stages that depend on this one, in the order they run."""

    def producers(self, kind_name: str) -> list[Stage]:
        """The stages that hand off this kind (template_id, inventory, configure), in order."""


class ToolSpec(NamedTuple):
    """A program a stage needs, for `doit doctor` and the tool versions in the run log."""

    program: str
    version_args: tuple[str, ...]
    version_pattern: str
    minimum: str
    install: str
    option: str = ""  # the stage option that names it, if any


class Preview(NamedTuple):
    """What a stage would do, found without changing anything (`doit plan`)."""

    would_run: bool  # False: the dry run found nothing to do (e.g. `terraform plan`: no changes)
    summary: str  # one line
    changes: tuple[str, ...] = ()  # one line each: "+ null_resource.vm[\"jump-01\"]", "jump-01: Write the config"
    changes_handoff: bool = True  # its handoff may change: the stages after it are planned once it has run
    plan_file: Path | None = None  # a saved plan for `doit apply` (owner-only; the core stores it, then removes it)
    facts: dict[str, Any] = {}  # tool state the preview depends on, checked again before apply (see plan_facts)


class Rollback(NamedTuple):
    """What a kind's rollback() made: the handoff value to write, and whether the stage then counts as up to date
    (a template pinned by `rollback --to`) or stale (a playbook run as of an old git ref: the next deploy runs
    today's)."""

    value: Any
    summary: str  # one line for the console, e.g. "template 9101 (was 9102)"
    current: bool = True
    notes: dict[str, Any] = {}  # extra fields for the history entry
    action: str = "rollback"  # what the history calls it


@dataclass
class StageJob:
    """What run() gets besides the upstream value: the tool runner, the run, and a place for notes."""

    runner: ToolRunner
    run: RunInfo
    pipeline: PipelineView
    upstream_path: Path | None = None  # the file the upstream value was read from
    options: dict[str, Any] = field(default_factory=dict)  # the task's command-line parameters
    notes: dict[str, Any] = field(default_factory=dict)  # extra fields for the history entry
    tool_versions: dict[str, str] = field(default_factory=dict)


class Stage(ABC):
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    ACTION: ClassVar[str] = "run"  # what a successful run is called in the history: build, provision, ...
    consumes: ClassVar[HandoffKind | None] = None
    produces: ClassVar[HandoffKind] = handoff.FILE
    OPTIONS: ClassVar[dict[str, Field]] = {}
    ADDED_OPTIONS: ClassVar[tuple[str, ...]] = ()  # options added after stages were first recorded (fingerprint())
    RETRY_PATTERNS: ClassVar[tuple[str, ...]] = ()
    CACHE_GLOBS: ClassVar[tuple[str, ...]] = ()
    # Give the tool the Proxmox API address and credentials (PROXMOX_VE_*, PROXMOX_*) in its environment.
    WANTS_PROXMOX: ClassVar[bool] = False
    # At an interrupt, seconds after which a tool still running gets SIGINT again: only for a tool whose second
    # interrupt stops it at once without losing anything. Never Terraform's (a second one may lose its state).
    INTERRUPT_AGAIN: ClassVar[float | None] = None
    # The doit parameter that takes the upstream handoff by hand, e.g. --template-id.
    UPSTREAM_PARAM: ClassVar[dict | None] = None
    # More doit parameters of the stage's task (doit's param dicts); run() finds them in job.options. One with
    # "forces": True makes the stage run even when up to date, and replaces a damaged handoff.
    PARAMS: ClassVar[tuple[dict, ...]] = (
        {"name": "force", "long": "force", "type": bool, "default": False, "forces": True,
         "help": "run even if up to date (replaces a damaged handoff)"},)
    # Keep a copy of the last valid handoff, for `doit rollback --stage NAME --mode restore`. Off for kinds that
    # restore from elsewhere (the history), and never for an inventory, which may hold passwords or keys.
    KEEP_COPY: ClassVar[bool] = True
    # `doit rollback --stage NAME --mode MODE`: mode -> what it does, the first the default. The engine adds
    # "restore" for every kind; "destroy" is the destroy() verb; any other mode goes to rollback().
    ROLLBACK_MODES: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_dir(cls, path: Path) -> str | None:
        """What is wrong with dir for this kind (e.g. no .tf files), checked when pipeline.yaml is loaded."""
        return None

    @classmethod
    def check_sources(cls, options: dict[str, Any], sources: list[str]) -> str | None:
        """What is wrong with reading the handoffs of several stages (checked when pipeline.yaml is loaded): by
        default an inventory is merged, one template id or file is all a kind takes."""
        if cls.consumes is handoff.INVENTORY:
            return None
        return (f"its kind takes one {cls.consumes.title.removeprefix('a ').removeprefix('an ')}, but it needs "
                f"{len(sources)} stages that hand one off ({', '.join(sources)}); keep one in its needs")

    def __init__(self, config: StageConfig, pipeline: PipelineView):
        self.config = config
        self.pipeline = pipeline
        self.name = config.name
        self.dir = config.dir
        self.options = config.options
        # Set by the up-to-date checks (proxpipe.engine.uptodate), for the console and `doit status`.
        self.stale_reasons: list[str] = []
        self.remote_ok: bool | None = None
        self.remote_reason = ""
        self._sensitive: set[str] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ------------------------------------------------------------------ inputs

    def exclude_rules(self) -> list[Exclude]:
        """What under dir is not an input, and why: what the tool's own configuration says it writes, the
        stage's exclude setting, the kind's caches and outputs, and the built-in excludes."""
        return (self.tool_writes()
                + [Exclude(p, f"{self.config.where}.exclude") for p in self.config.exclude]
                + [Exclude(p, f"a cache or output of {self.kind}") for p in self.CACHE_GLOBS]
                + [Exclude(p, "never an input (built in)") for p in COMMON_EXCLUDES])

    def tool_writes(self) -> list[Exclude]:
        """The paths under dir that the tool's own configuration says it writes (see inputs.anchored)."""
        return []

    def excludes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rule.pattern for rule in self.exclude_rules()))

    def required_inputs(self) -> list[Path]:
        """Files that are inputs whatever the exclude rules say (e.g. requirements.yml)."""
        return []

    def input_scan(self) -> inputs.Scan:
        """The inputs, and what was left out and why. The git repository is asked once for every stage."""
        ignored = inputs.ignored_by_git(self.dir, [stage.dir for stage in self.pipeline.stages])
        return inputs.scan(self.dir, self.exclude_rules(), ignored, self.required_inputs())

    def inputs(self) -> list[Path]:
        """The files under dir this stage reads: not what the tool writes, nor what git ignores."""
        return self.input_scan().files

    def input_digests(self) -> dict[str, str]:
        """path relative to dir -> sha256 of every input (files unchanged since an earlier run are not read)."""
        cache = self.pipeline.digests
        digests = {os.path.relpath(path, self.dir): cache.sha256(path) for path in self.inputs()}
        cache.save()
        return digests

    def inputs_digest(self, digests: dict[str, str] | None = None) -> str:
        """One digest of every input's path and content (for the history and drift checks)."""
        return stable_digest(self.input_digests() if digests is None else digests)

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
        """sensitive_vars() from read() (see proxpipe.domain.hcl), once per process. Sources that cannot be
        read make every variable a secret, with a warning: a parse error must not put a secret on a command line."""
        if self._sensitive is None:
            from proxpipe.base.console import console
            from proxpipe.domain.hcl import HclError

            try:
                self._sensitive = read()
            except HclError as exc:
                console.warn(f"{self.name}: {exc}; passing every one of its vars as a secret")
                self._sensitive = set(self.options.get("vars") or {})
        return self._sensitive

    @property
    def hcl_cache(self) -> Path:
        """Where proxpipe.domain.hcl keeps what it read, by the sources' digests."""
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
        from proxpipe.base.fsutil import private_file

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

    # ------------------------------------------------------------------ the stage's own handoff (read only)

    @property
    def handoff_path(self) -> Path:
        return self.pipeline.handoffs.path(self)

    def handoff_value(self) -> Any:
        """The handoff's checked value; None when it is missing or invalid."""
        return self.pipeline.handoffs.value(self)

    @property
    def keeps_copy(self) -> bool:
        """The engine keeps a copy of the last valid handoff (never of an inventory: it may hold passwords)."""
        return self.KEEP_COPY and self.produces is not handoff.INVENTORY

    def restore_advice(self, last: dict | None, kept: bool) -> tuple[str, str | None]:
        """(the last valid handoff as the history tells it, the command that restores it or None); kept: the
        engine holds a copy of it."""
        shown = f"{last['handoff']} ({history_note(last)})" if last else ""
        restorable = kept or self.supports("restore")  # a kind that restores from its own tool needs no copy
        return shown, f"doit rollback --stage {self.name} --mode restore" if restorable else None

    def force_command(self) -> str:
        """The command that runs this stage whatever its state, replacing its handoff."""
        flag = next((p["long"] for p in self.PARAMS if p.get("forces")), None)
        return f"doit {self.name} --{flag}" if flag else f"rm {display(self.handoff_path)} && doit {self.name}"

    def forced(self, options: dict[str, Any]) -> bool:
        """Whether these command-line options force the stage to run."""
        return any(options.get(p["name"]) for p in self.PARAMS if p.get("forces"))

    # ------------------------------------------------------------------ up-to-date checks

    def fingerprint(self) -> dict[str, Any]:
        """The configuration that makes this stage stale when it changes (hashed before it is stored). Options the
        kind added later (ADDED_OPTIONS) count only once they differ from their default: a stage recorded before
        they existed stays up to date."""
        options = {name: value for name, value in self.options.items()
                   if name not in self.ADDED_OPTIONS or value != self.OPTIONS[name].default}
        return portable({"kind": self.kind, "options": options, "env": self.config.env,
                         "handoff": self.config.handoff}, self.pipeline.root)

    def config_digest(self) -> str:
        """sha256 of fingerprint(): what is stored and compared, so no secret is ever stored."""
        return stable_digest(self.fingerprint())

    def remote_check(self) -> tuple[bool | None, str]:
        """(up to date?, reason) from the remote side, e.g. 'the template still exists'. None: no opinion."""
        return None, ""

    # ------------------------------------------------------------------ the verbs

    @abstractmethod
    def run(self, upstream: Any, job: StageJob) -> Any:
        """Drive the tool; return the handoff value (the engine checks and writes it). With job.options["plan_file"],
        apply that saved plan (from preview()) and nothing else."""

    def preflight(self, upstream: Any, job: StageJob) -> None:  # noqa: B027 - optional: most kinds need none
        """Refuse, before any tool starts, an upstream value this stage cannot succeed with (a template id the
        cluster does not have): a PipelineError in one line. Run before run(), preview() and rollback()."""

    def preview(self, upstream: Any, job: StageJob, reasons: list[str]) -> Preview:
        """What run() would do, found without changing anything, for `doit plan`. A kind without a dry run says
        only that it would run (and why), and its handoff may change."""
        return Preview(True, "would run: " + "; ".join(reasons) if reasons else "would run")

    def destroy(self, upstream: Any, job: StageJob) -> bool:
        """Tear down what run() made (the engine then removes the handoff); False when there was nothing."""
        raise Unsupported(f"stage {self.name} ({self.kind}) makes nothing to tear down")

    def rollback(self, mode: str, to: str, upstream: Any, job: StageJob) -> Rollback:
        """Go back (ROLLBACK_MODES names the modes): e.g. to an earlier template, or a playbook as of a git ref."""
        raise Unsupported(f"stage {self.name} ({self.kind}) has no rollback"
                          + (f" --mode {mode}" if mode else ""))

    def drift(self, upstream: Any, job: StageJob) -> list[Any]:
        """What changed outside the pipeline since the stage ran, found without changing anything, for `proxpipe
        drift`: proxpipe.api.drift items. A PipelineError when it cannot tell. By default nothing beyond its
        handoff, which the engine checks for every kind."""
        return []

    def restore(self, kept: Any, job: StageJob) -> Any:
        """The value to write back over a damaged handoff: by default the engine's kept copy of the last valid one
        (None when there is none); a kind may restore from its tool instead (the Terraform state's output)."""
        if kept is None:
            back = f"go back with `doit rollback --stage {self.name}`, or " if self.supports("rollback") else ""
            raise Unsupported(f"no copy of the last valid {self.handoff_path.name} is kept; {back}replace it with "
                              f"`{self.force_command()}`")
        return kept

    def supports(self, verb: str) -> bool:
        """Whether this kind implements a verb itself (destroy, rollback, restore), rather than refusing."""
        return getattr(type(self), verb) is not getattr(Stage, verb)

    def plan_facts(self, job: StageJob) -> dict[str, Any]:
        """The tool's own state that a plan of this stage depends on (e.g. the Terraform state's serial), read
        again before `doit apply`; a plan whose facts changed is stale."""
        return {}

    def describe_facts(self, then: dict[str, Any], now: dict[str, Any]) -> str:
        """Why a plan is stale when plan_facts() changed, in a few words."""
        return f"the state of {self.name}'s tool changed since the plan"

    def note_version(self, job: StageJob, binary: str, label: str) -> None:
        """Record the version of the stage's program (the first of tools()) for the run log."""
        from proxpipe.domain import toolrunner as tools

        spec = self.tools()[0]
        job.tool_versions[label] = tools.version(binary, spec.version_args, spec.version_pattern,
                                                 self.pipeline.state_dir)

    def after_handoff(self, value: Any, job: StageJob) -> None:  # noqa: B027 - optional, like preflight
        """Called once the new handoff is written (e.g. to delete templates past their retention)."""

    def tools(self) -> list[ToolSpec]:
        """The programs this stage runs, for doit doctor."""
        return []

    def docs_facts(self) -> dict[str, Any]:
        """What the generated guides say about this kind beyond the contract (e.g. a lint gate: {"lint": [...]})."""
        return {}


def env_text(value: Any) -> str:
    """A variable's value for the environment (PKR_VAR_x, TF_VAR_x): strings as they are, anything else as JSON,
    which both tools parse as a value of the variable's type."""
    return value if isinstance(value, str) else json.dumps(value)


def history_note(entry: dict) -> str:
    """What made a history entry, and when: `provision 2026-01-01 12:00`."""
    return f"{entry.get('action', 'run')} {str(entry.get('time', '?'))[:16].replace('T', ' ')}"


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
