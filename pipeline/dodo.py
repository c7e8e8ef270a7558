"""What dodo.py hands to doit: DOIT_CONFIG and one task creator for the whole graph.

The environment comes from `doit ... env=NAME`, else PIPELINE_ENV, else pipeline.yaml's default.
A bad pipeline.yaml ends here with doit's one-line "ERROR: ..." and exit code 3.
"""

import os
import sys

from doit import get_var
from doit.exceptions import InvalidDodoFile

from .context import Pipeline
from .errors import PipelineError
from .fsutil import make_private
from .secrets import mask
from .tasks import all_tasks, doit_config

__all__ = ["DOIT_CONFIG", "task_pipeline"]

# Whatever this process and the tools it starts create (state, logs, plans, the tools' own files) is for the
# user's eyes only; what is meant to be shared (the generated docs) is given its mode explicitly.
os.umask(0o077)

try:
    PIPELINE = Pipeline.load(env_name=get_var("env"))
except PipelineError as exc:
    raise InvalidDodoFile(mask(str(exc))) from None

make_private(PIPELINE.state_dir)
DOIT_CONFIG = doit_config(PIPELINE)


def task_pipeline():
    try:
        yield from all_tasks(PIPELINE, sys.argv[1:])
    except PipelineError as exc:
        raise InvalidDodoFile(mask(str(exc))) from None
