"""What dodo.py hands to doit: DOIT_CONFIG and one task creator for the whole graph.

The environment comes from `doit ... env=NAME`, else PIPELINE_ENV, else pipeline.yaml's default.
A bad pipeline.yaml ends here with doit's one-line "ERROR: ..." and exit code 3.
"""

import sys

from doit import get_var
from doit.exceptions import InvalidDodoFile

from proxpipe.base.errors import PipelineError
from proxpipe.engine.pipeline import Pipeline
from proxpipe.wiring.tasks import all_tasks, doit_config

__all__ = ["DOIT_CONFIG", "task_pipeline"]

try:
    PIPELINE = Pipeline.load(env_name=get_var("env"))
except PipelineError as exc:
    raise InvalidDodoFile(str(exc)) from None

DOIT_CONFIG = doit_config(PIPELINE)


def task_pipeline():
    try:
        yield from all_tasks(PIPELINE, sys.argv[1:])
    except PipelineError as exc:
        raise InvalidDodoFile(str(exc)) from None
