"""doit entry point: the task graph of pipeline.yaml (see proxpipe/wiring/dodo.py). Run `doit list`."""

from proxpipe.wiring.dodo import *  # noqa: F401,F403
