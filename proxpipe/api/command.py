"""Commands that plugins contribute through the ``register_commands`` hook (``doit lab-stop``, ``doit report``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Param(NamedTuple):
    """One command-line option of a command: ``--long VALUE`` (or a flag when type is bool)."""

    name: str
    long: str
    type: type
    default: Any
    help: str


class Command(NamedTuple):
    """A doit task that is not a stage. run(pipeline, **params) does the work and returns None; an expected
    failure raises proxpipe.api.PipelineError (one line, exit 1)."""

    name: str
    doc: str
    run: Callable[..., None]
    params: tuple[Param, ...] = ()
    lock: bool = False  # takes the environment's lock, like a stage
