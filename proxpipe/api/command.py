"""What plugins contribute besides stage kinds and checks: commands (the ``register_commands`` hook: ``doit
lab-stop``, ``doit report``) and demo projects (the ``register_examples`` hook: ``proxpipe init --example lab``)."""

from collections.abc import Callable
from pathlib import Path
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


class Example(NamedTuple):
    """A demo project for `proxpipe init --example NAME`. files() gives {path relative to the new project: text, or
    a file to copy}; prepare(root), if any, runs once they are written (e.g. installs tools) and returns what it
    did, one line each."""

    name: str
    doc: str
    files: Callable[[], dict[str, str | Path]]
    prepare: Callable[[Path], list[str]] | None = None
