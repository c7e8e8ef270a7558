"""Commands: every verb of `proxpipe` (and of `doit` in a project), built-in or a plugin's, is one Command.

A command is declared in the module that implements it and contributed through the ``register_commands`` hook,
the way tox 4 adds its core commands as internal plugins: proxpipe's own commands are registered by
``proxpipe.commands.builtin``, the lab's and the run log's by their plugins, yours by your plugin. The wiring turns
each into a doit task whose options are the command's params, and calls ``run(pipeline, **options)`` with them.
Demo projects for ``proxpipe init --example NAME`` come through ``register_examples``.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


class Param(NamedTuple):
    """One command-line option: ``--long VALUE`` (a flag when type is bool). env_var: also read from there."""

    name: str
    long: str
    type: type
    default: Any
    help: str
    env_var: str = ""
    short: str = ""
    metavar: str = ""
    check: Callable[[Any], str | None] | None = None  # what is wrong with a value given, checked before run()
    positional: bool = False  # `proxpipe CMD VALUE` gives it too (the first such param not given yet)


def at_least(minimum: int) -> Callable[[Any], str | None]:
    """A Param check: an integer of at least minimum."""
    return lambda value: None if value >= minimum else f"must be {minimum} or more"


class Command(NamedTuple):
    """A verb. run(pipeline, **options) does the work; an expected failure raises proxpipe.api.PipelineError (one
    line, exit 1), a ConfigError before anything changed ends like a bad pipeline.yaml (exit 3). A standalone
    command (`proxpipe init`) needs no pipeline and is no doit task: run(argv) parses its own arguments and returns
    the exit code; its params are what its help shows."""

    name: str
    doc: str  # one line, for the command list
    run: Callable[..., None]
    params: tuple[Param, ...] = ()
    lock: bool = False  # takes the environment's lock for the rest of the process
    group: str = "other"  # where `proxpipe --help` lists it: run, look, stages, recover, set up, lab, other
    description: str = ""  # a few more lines for `proxpipe help NAME`
    example: str = ""  # a command line, for `proxpipe help NAME`
    hidden: bool = False  # left out of `proxpipe --help` and the completion (still runs when named)
    standalone: bool = False  # run(argv) -> exit code, outside doit and without a pipeline
    arguments: str = ""  # what follows the options in its usage line, e.g. "bash|zsh|fish"


# `--json`: one JSON document on stdout and nothing else there (progress goes to stderr). A command that takes it adds
# JSON to its params, prints its document with proxpipe.base.console.console.json(document) when json is true, and
# keeps its JSON Schema as schemas/<command>.schema.json (docs/cli.md lists them; a test checks each is there).
JSON = Param("json", "json", bool, False, "print one JSON document on stdout and nothing else (stable: docs/cli.md)")


class Example(NamedTuple):
    """A demo project for `proxpipe init --example NAME`. files() gives {path relative to the new project: text, or
    a file to copy}; prepare(root), if any, runs once they are written (e.g. installs tools) and returns what it
    did, one line each."""

    name: str
    doc: str
    files: Callable[[], dict[str, str | Path]]
    prepare: Callable[[Path], list[str]] | None = None
