"""doit's console reporter, replaced: doit's own lines ("." per task) are left out, since the engine prints each
stage's banner, timing and reason; a failed command is one line; the run ends with one summary line, read from the
pipeline's run (the reporter only reads it).
"""

from __future__ import annotations

import time

from doit.exceptions import TaskFailed

from proxpipe.base import interrupts
from proxpipe.base.console import console, seconds


class PipelineReporter:
    desc = "stage banners, timings and reasons"
    pipeline = None  # set by bound_to(): doit makes the reporter itself, from the class in DOIT_CONFIG

    def __init__(self, outstream, options):
        self.outstream = outstream
        self.failed = False
        self.started = time.monotonic()

    @classmethod
    def bound_to(cls, pipeline) -> type[PipelineReporter]:
        """The reporter class for one pipeline, as doit's `reporter` setting."""
        return type(cls.__name__, (cls,), {"pipeline": pipeline})

    # ------------------------------------------------------------------ doit's reporter interface

    def initialize(self, tasks, selected_tasks):
        pass

    def get_status(self, task):
        pass

    def execute_task(self, task):
        pass

    def add_success(self, task):
        pass

    def add_failure(self, task, fail):
        self.failed = True
        if not isinstance(fail, TaskFailed):  # an unexpected exception: a bug, show all of it
            console.error(f"{task.name}: {fail.get_msg()}")
        elif fail.message.strip():  # empty: a stage failed, and its own lines said why
            console.error(fail.message.strip())

    def skip_uptodate(self, task):
        pass

    def skip_ignore(self, task):
        console.info(f"· {task.name} ignored")

    def cleanup_error(self, exception):
        console.error(exception.get_msg())

    def runtime_error(self, msg):
        console.error(msg)

    def teardown_task(self, task):
        pass

    def complete_run(self):
        pipeline = self.pipeline
        stop = interrupts.received()
        if stop is not None:  # never "done" after Ctrl-C
            self._interrupted(pipeline, stop)
            return
        if pipeline is None or pipeline.run is None:
            return
        pipeline.finish_run()
        if not pipeline.outcomes:
            return
        parts = [f"{o.name} {seconds(o.duration)}" if o.status == "ran" else f"{o.name} {o.status}"
                 for o in pipeline.outcomes]
        total = seconds(time.monotonic() - self.started)
        failed = self.failed or any(o.status == "failed" for o in pipeline.outcomes)
        verdict = console.paint("failed", "red") if failed else console.paint("done", "green")
        # The final line: shown with -q too.
        console.out(f"{pipeline.run.command} {verdict} in {total}: {', '.join(parts)}  "
                     + console.paint(f"[env {pipeline.env.name}, run {pipeline.run.id}]", "dim"))

    @staticmethod
    def _interrupted(pipeline, stop: interrupts.Interrupted) -> None:
        if pipeline is not None and pipeline.run is not None:
            pipeline.interrupted(stop.name)
        if not interrupts.was_reported():  # it came outside a stage (checks, a rollback's own steps)
            command = pipeline.run.command if pipeline is not None and pipeline.run else "the run"
            console.out(f"{command} interrupted by {stop.name}; no handoff was left half-written: run it again "
                        "to finish")
            interrupts.mark_reported()
