"""What the one-line dodo.py hands to plain `doit`: the same configuration and tasks as the `proxpipe` command.

doit imports dodo.py only when it loads its tasks, after it has read `env=NAME` from the command line.
"""

import sys

from proxpipe.wiring.loader import load, task_dicts
from proxpipe.wiring.tasks import doit_config

__all__ = ["DOIT_CONFIG", "task_pipeline"]

_pipeline = load()
DOIT_CONFIG = doit_config(_pipeline)


def task_pipeline():
    yield from task_dicts(_pipeline)


# doit sorts task creators by the line inspect.getsourcelines() finds, which tokenizes the function's source and so
# compiles tokenize's patterns: a tenth of a no-op run. Through __wrapped__ inspect reads this module's lines instead.
task_pipeline.__wrapped__ = sys.modules[__name__]
