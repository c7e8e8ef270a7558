"""The plugin API: the one module third-party plugins import.

    from proxpipe.api import Field, Stage, StageJob, hookimpl, schema

Everything named in ``__all__`` is stable across minor releases; anything else in proxpipe may change.
"""

from proxpipe.api.checks import Check, CheckContext, Result, Skip, failed, passed
from proxpipe.api.command import Command, Example, Param
from proxpipe.api.hookspecs import hookimpl
from proxpipe.api.stage import Preview, Stage, StageJob, ToolSpec
from proxpipe.base import schema
from proxpipe.base.errors import ConfigError, HandoffError, PipelineError, ToolError
from proxpipe.base.events import RunInfo, StageInfo, StageOutcome
from proxpipe.base.schema import Field
from proxpipe.domain.handoff import CONFIGURE, FILE, INVENTORY, TEMPLATE_ID, HandoffKind
from proxpipe.domain.inputs import Exclude, anchored

__all__ = [
    # stage kinds
    "Stage", "StageJob", "ToolSpec", "Preview", "HandoffKind", "TEMPLATE_ID", "INVENTORY", "CONFIGURE", "FILE",
    "Exclude", "anchored",
    # options in pipeline.yaml
    "Field", "schema",
    # checks and commands
    "Check", "CheckContext", "Result", "Skip", "passed", "failed", "Command", "Param", "Example",
    # hooks and what they receive
    "hookimpl", "RunInfo", "StageInfo", "StageOutcome",
    # expected failures: one line, never a traceback
    "PipelineError", "ConfigError", "HandoffError", "ToolError",
]
