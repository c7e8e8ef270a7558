"""The plugin API: the one module third-party plugins import.

    from proxpipe.api import Stage, StageJob, ToolSpec, hookimpl, Check, Skip, passed, failed

Everything here is stable across minor releases; anything else in proxpipe may change.
"""

from proxpipe.api.checks import Check, CheckContext, Result, Skip, failed, passed
from proxpipe.api.hookspecs import hookimpl
from proxpipe.api.stage import Stage, StageJob, ToolSpec

__all__ = ["Check", "CheckContext", "Result", "Skip", "Stage", "StageJob", "ToolSpec", "failed", "hookimpl",
           "passed"]
