"""doit's task loader for a proxpipe project: the chosen environment of pipeline.yaml as doit tasks.

The `proxpipe` command runs doit with this loader (the way Nikola embeds doit); the one-line dodo.py gives plain
`doit` the same tasks and configuration through proxpipe.wiring.dodo. Nothing is loaded at import time.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

from doit import get_var
from doit.cmd_base import TaskLoader2
from doit.exceptions import InvalidDodoFile
from doit.loader import generate_tasks

from proxpipe.base import interrupts
from proxpipe.base.errors import PipelineError
from proxpipe.base.fsutil import make_private
from proxpipe.base.secrets import mask
from proxpipe.commands.cliargs import LOADER_OPTIONS
from proxpipe.domain.config import DEFAULT_FILE
from proxpipe.engine.pipeline import Pipeline
from proxpipe.wiring.tasks import all_tasks, doit_config

# doit's form of the loader's options, from their declarations (proxpipe.commands.cliargs).
OPTIONS = tuple({"section": "task loader", "name": p.name, "long": p.long, "type": p.type, "default": p.default,
                 "help": p.help + (" [default: %(default)s]" if p.default else ""),
                 **({"short": p.short} if p.short else {}), **({"env_var": p.env_var} if p.env_var else {})}
                for p in LOADER_OPTIONS)


def load(path: str | Path = DEFAULT_FILE, env_name: str | None = None) -> Pipeline:
    """The pipeline of the environment env_name, else the one named by `env=NAME` on doit's command line (else
    PIPELINE_ENV, else the default one); a bad pipeline.yaml becomes doit's one-line "ERROR: ..." with exit code
    3."""
    interrupts.install()  # from here on, Ctrl-C and SIGTERM end a run in one line (proxpipe.base.interrupts)
    # Whatever this process and the tools it starts create (state, logs, plans, the tools' own files) is for the
    # user's eyes only; what is meant to be shared (the generated docs) is given its mode explicitly.
    os.umask(0o077)
    # Python's cyclic garbage collector traversed everything loaded (modules, configuration, plugins) again and
    # again: a fifth of what a no-op adds to doit's own start. What loading makes lives as long as the process, so
    # it is loaded with the collector off, then frozen (never traversed again); collection goes on as usual after.
    gc.disable()
    try:
        pipeline = Pipeline.load(path, env_name=env_name if env_name is not None else get_var("env"))
        make_private(pipeline.state_dir)
    except PipelineError as exc:
        raise InvalidDodoFile(mask(str(exc))) from None
    finally:
        gc.freeze()
        gc.enable()
    return pipeline


def task_dicts(pipeline: Pipeline) -> Iterator[dict]:
    try:
        yield from all_tasks(pipeline)
    except PipelineError as exc:
        raise InvalidDodoFile(mask(str(exc))) from None


class PipelineLoader(TaskLoader2):
    cmd_options = OPTIONS

    def __init__(self) -> None:
        super().__init__()
        self.pipeline: Pipeline | None = None

    def setup(self, opt_values: dict) -> None:
        if self.pipeline is None:  # the proxpipe command preloads it, to check the command line against it
            self.preload(opt_values)
        if opt_values.get("wait_lock") is not None:
            self.pipeline.wait_lock = max(0.0, float(opt_values["wait_lock"]))

    def preload(self, opt_values: dict, env_name: str | None = None) -> Pipeline:
        """Load the pipeline as setup() does (InvalidDodoFile, one line, when it cannot be)."""
        if opt_values.get("project_dir"):
            try:
                os.chdir(opt_values["project_dir"])
            except OSError as exc:
                raise InvalidDodoFile(f"--dir {opt_values['project_dir']}: {exc.strerror}") from None
        path = Path(opt_values.get("config_file") or os.environ.get("PROXPIPE_FILE") or DEFAULT_FILE)
        os.chdir(path.absolute().parent)  # like doit with dodo.py: paths in messages are relative to the project
        self.pipeline = load(path.name, env_name)
        return self.pipeline

    def load_doit_config(self) -> dict:
        return doit_config(self.pipeline)

    def load_tasks(self, cmd, pos_args: list[str]) -> list:
        return list(generate_tasks("proxpipe", task_dicts(self.pipeline), ""))
