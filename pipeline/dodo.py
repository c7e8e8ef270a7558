"""What dodo.py hands to doit: DOIT_CONFIG and one task creator for the whole graph.

The environment comes from `doit ... env=NAME`, else PIPELINE_ENV, else pipeline.yaml's default.
A bad pipeline.yaml ends here with doit's one-line "ERROR: ..." and exit code 3.
"""

import sys

from doit import get_var
from doit.exceptions import InvalidDodoFile

from . import interrupts
from .context import Pipeline
from .errors import PipelineError
from .tasks import all_tasks, doit_config

__all__ = ["DOIT_CONFIG", "task_pipeline"]

try:
    PIPELINE = Pipeline.load(env_name=get_var("env"))
except PipelineError as exc:
    raise InvalidDodoFile(str(exc)) from None

DOIT_CONFIG = doit_config(PIPELINE)


def task_pipeline():
    interrupts.install()  # Ctrl-C and SIGTERM end a run in one line (pipeline.interrupts)
    try:
        yield from all_tasks(PIPELINE, sys.argv[1:])
    except PipelineError as exc:
        raise InvalidDodoFile(str(exc)) from None
