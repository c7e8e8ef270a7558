"""doit's console reporter, replaced: stage banners and timings, skipped stages with their reason,
one line per failure, and the bridge to the lifecycle hooks (runs, skipped stages).

It also saves doit's database after every successful task, so a run killed later keeps what it
had done (see proxpipe.engine.doitdb).
"""

from __future__ import annotations

import time

from doit.exceptions import TaskFailed

from proxpipe.base import interrupts
from proxpipe.base.console import console, seconds
from proxpipe.base.errors import PipelineError
from proxpipe.base.events import StageOutcome


class PipelineReporter:
    desc = "stage banners, timings and reasons"
    pipeline = None  # set by bound_to(): doit makes the reporter itself, from the class in DOIT_CONFIG

    def __init__(self, outstream, options):
        self.outstream = outstream
        self.failures: list[tuple[str, str]] = []
        self.started = time.monotonic()

    @classmethod
    def bound_to(cls, pipeline) -> type[PipelineReporter]:
        """The reporter class for one pipeline, as doit's `reporter` setting."""
        return type(cls.__name__, (cls,), {"pipeline": pipeline})

    def _stage(self, task):
        pipeline = self.pipeline
        if pipeline is None:
            return None
        return next((s for s in pipeline.stages if s.name == task.name), None)

    # ------------------------------------------------------------------ doit's reporter interface

    def initialize(self, tasks, selected_tasks):
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.command = " ".join(selected_tasks or ["deploy"])
            # doit parsed each task's command-line options already; the damaged-handoff check needs them first
            pipeline.task_options = {name: dict(task.options or {}) for name, task in tasks.items()}

    def get_status(self, task):
        pass

    def execute_task(self, task):
        pass

    def add_success(self, task):
        from doit.globals import Globals

        manager = Globals.dep_manager
        save = getattr(getattr(manager, "backend", None), "save", None)
        if save is not None:
            save()

    def add_failure(self, task, fail):
        if self._stage(task) is not None or task.name.startswith("_"):
            if not isinstance(fail, TaskFailed):  # an unexpected exception: a bug, show all of it
                console.error(fail.get_msg())
            elif task.name.startswith("_"):
                console.error(fail.message.strip())
            return
        message = fail.message.strip() if isinstance(fail, TaskFailed) else fail.get_msg()
        self.failures.append((task.name, message))
        pipeline = self.pipeline
        if pipeline is not None and pipeline.run is not None:  # a rollback or destroy that failed
            pipeline.outcomes.append(StageOutcome(task.name, "command", "failed", message=message))
        console.error(message if isinstance(fail, TaskFailed) else f"{task.name}: {message}")

    def skip_uptodate(self, task):
        stage = self._stage(task)
        if stage is None:
            return
        pipeline = self.pipeline
        reason = stage.remote_reason or "nothing it depends on changed"
        pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "skipped", message=reason))
        try:
            pipeline.plugins.stage_skipped(pipeline.start_run(pipeline.command), pipeline.info(stage), reason)
        except PipelineError as exc:  # a plugin whose on_error is fail
            self.failures.append((stage.name, str(exc)))
            console.error(str(exc))
        console.info(console.paint(f"· {stage.name}", "dim") + console.paint(f"  up to date ({reason})", "dim"))

    def skip_ignore(self, task):
        if self._stage(task) is not None:
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
        if not pipeline.outcomes and not self.failures:
            return
        parts = [f"{o.name} {seconds(o.duration)}" if o.status == "ran" else f"{o.name} {o.status}"
                 for o in pipeline.outcomes]
        total = seconds(time.monotonic() - self.started)
        failed = [o for o in pipeline.outcomes if o.status == "failed"] or self.failures
        verdict = console.paint("failed", "red") if failed else console.paint("done", "green")
        console.info(f"{pipeline.command} {verdict} in {total}: {', '.join(parts)}  "
                     + console.paint(f"[env {pipeline.env.name}, run {pipeline.run.id}]", "dim"))

    @staticmethod
    def _interrupted(pipeline, stop: interrupts.Interrupted) -> None:
        if pipeline is not None and pipeline.run is not None:
            pipeline.run.interrupted = stop.name
            try:
                pipeline.finish_run()
            except SystemExit:  # a plugin whose on_error is fail: the exit code stays the interrupt's
                pass
        if not interrupts.was_reported():  # it came outside a stage (checks, a rollback's own steps)
            command = pipeline.command if pipeline is not None else "the run"
            console.out(f"{command} interrupted by {stop.name}; no handoff was left half-written: run it again "
                        "to finish")
            interrupts.mark_reported()
