"""The plugin API: the one module plugins and stage kinds import.

    from proxpipe.api import Field, Stage, StageJob, hookimpl, schema

Everything named in ``__all__`` is stable across minor releases; anything else in proxpipe may change. Besides it,
plugins may use proxpipe.base (errors, console, fsutil, schema, secrets: the layer below everything). The built-in
stage kinds (proxpipe.stages) are held to the same rule by a lint step (see the README's development section).

What a stage kind drives its tool with comes as modules: ``handoff`` (the handoff kinds and their parsers),
``inventory`` (Ansible inventories), ``hcl`` (Packer's and Terraform's sources, through python-hcl2),
``toolrunner`` (finding programs, their versions), ``sshwait`` (waiting for hosts), ``drift`` and ``tfdrift`` (what
drifted, and reading it from Terraform's refresh-only plan), ``cluster`` and ``placement`` (Proxmox nodes and
storages, and whether a template can be cloned where the VMs land), loaded on first use.
"""

from importlib import import_module
from typing import Any

from proxpipe.api.checks import Check, CheckContext, Result, Skip, failed, passed
from proxpipe.api.command import JSON, Command, Example, Param
from proxpipe.api.hookspecs import hookimpl
from proxpipe.api.stage import Preview, Rollback, Stage, StageJob, ToolSpec, env_text, history_note, stable_digest
from proxpipe.base import schema
from proxpipe.base.errors import ConfigError, HandoffError, PipelineError, ToolError, Unsupported
from proxpipe.base.events import RunInfo, StageInfo, StageOutcome
from proxpipe.base.schema import Field
from proxpipe.domain.handoff import CONFIGURE, FILE, INVENTORY, TEMPLATE_ID, HandoffKind
from proxpipe.domain.inputs import Exclude, anchored

_MODULES = {name: f"proxpipe.domain.{name}"
            for name in ("handoff", "inventory", "hcl", "toolrunner", "sshwait", "drift", "tfdrift",
                         "template_drift", "cluster", "placement", "registry")}

__all__ = [
    # stage kinds
    "Stage", "StageJob", "ToolSpec", "Preview", "Rollback", "HandoffKind", "TEMPLATE_ID", "INVENTORY", "CONFIGURE",
    "FILE", "Exclude", "anchored", "env_text", "history_note", "stable_digest", *_MODULES,
    # options in pipeline.yaml
    "Field", "schema",
    # checks and commands
    "Check", "CheckContext", "Result", "Skip", "passed", "failed", "Command", "Param", "Example", "JSON",
    # hooks and what they receive
    "hookimpl", "RunInfo", "StageInfo", "StageOutcome",
    # expected failures: one line, never a traceback
    "PipelineError", "ConfigError", "HandoffError", "ToolError", "Unsupported",
]


def __getattr__(name: str) -> Any:
    """The stage kinds' modules, imported when first asked for (PEP 562): a run that starts no tool needs none."""
    if name in _MODULES:
        module = import_module(_MODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
