"""The stage contract: inputs, handoff, up-to-date checks, run() and rollback.

A stage kind is a Stage subclass registered through the ``register_stage_kinds`` hook (the built-in
packer, terraform, tofu and ansible kinds too). The core turns each configured stage into one
doit task: ``inputs()`` become its file_dep, its handoff file its target, ``fingerprint()`` and
``remote_check()`` its up-to-date checks, and ``run()`` its action.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from proxpipe.base.errors import HandoffError
from proxpipe.base.fsutil import sha256_file
from proxpipe.base.schema import Field
from proxpipe.domain import handoff, inputs
from proxpipe.domain.handoff import HandoffKind
from proxpipe.domain.inputs import Exclude

if TYPE_CHECKING:
    from proxpipe.base.events import RunInfo
    from proxpipe.domain.config import StageConfig
    from proxpipe.domain.tools import ToolRunner
    from proxpipe.engine.pipeline import Pipeline

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
        from proxpipe.domain import tools

        spec = self.tools()[0]
        job.tool_versions[label] = tools.version(binary, spec.version_args, spec.version_pattern,
                                                 self.pipeline.state_dir)

    def after_handoff(self, value: Any, job: StageJob) -> None:
        """Called once the new handoff is written (e.g. to delete templates past their retention)."""

    def tools(self) -> list[ToolSpec]:
        """The programs this stage runs, for doit doctor."""
        return []


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
