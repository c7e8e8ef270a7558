"""doit entry point: the task graph of pipeline.yaml (see pipeline/dodo.py). Run `doit list`."""

from pipeline.dodo import *  # noqa: F401,F403
