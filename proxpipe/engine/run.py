"""Running stages for a command (deploy, one stage's own command, a rollback's downstream): every handoff the run will
use is checked first; then each stage runs, after the stages it needs, when it is stale (or forced), and is skipped,
with its reason, when it is up to date. Independent branches of the graph run at once (the environment's `jobs`, or
--jobs; `limits` per kind or group), each stage's lines tagged with its name; a failed stage stops only what needs
it, and the rest finish. What the command was asked (forced stages, handoffs given by hand) arrives as arguments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxpipe.base import interrupts
from proxpipe.base.console import console, seconds
from proxpipe.base.errors import PipelineError
from proxpipe.base.events import StageOutcome
from proxpipe.engine import damage, uptodate

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline

OK, FAILED, INTERRUPTED, NOT_RUN = "ok", "failed", "interrupted", "not run"


class StageFailed(PipelineError):
    """A stage failed; its own lines said why. The command ends with exit 1 and no further line."""


def run_stages(pipeline: Pipeline, command: str, stages: list[Stage], forced: set[str] | None = None,
               given: dict[str, str] | None = None, options: dict[str, dict[str, Any]] | None = None,
               jobs: int | None = None) -> None:
    """Run the stale ones among `stages`, each after what it needs; StageFailed when one failed.

    forced: stages that run whatever their state; given: stage -> its upstream handoff given by hand;
    options: stage -> the options its verb sees (job.options); jobs: stages at once (default: the environment's)."""
    forced, given, options = forced or set(), given or {}, options or {}
    for stage in stages:
        stage.require_values()  # a secret the run needs that is not set: one line before anything runs
        if stage.name in given:  # a handoff given by hand is checked before anything runs, too
            pipeline.handoffs.upstream(stage, pipeline.sources(stage), given[stage.name])
    damage.refuse(pipeline, stages, forced, given)
    pipeline.start_run(command)
    def stale(stage: Stage) -> bool:
        if stage.name in forced or uptodate.stale_reasons(pipeline, stage, given.get(stage.name)):
            return True
        skipped(pipeline, stage)
        return False

    def run(stage: Stage, quiet: bool) -> bool:
        from proxpipe.engine.execute import execute  # tool runners and threads: only when a stage runs

        return execute(pipeline, stage, options.get(stage.name, {}), given.get(stage.name), quiet_interrupt=quiet)

    schedule = Schedule(pipeline, stages, jobs or pipeline.env.jobs)
    schedule.run(stale, run)
    if any(state != OK for state in schedule.state.values()):
        raise StageFailed("")


def skipped(pipeline: Pipeline, stage: Stage) -> None:
    reason = stage.remote_reason or "nothing it depends on changed"
    pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, "skipped", message=reason))
    pipeline.plugins.stage_skipped(pipeline.run, pipeline.info(stage), reason)
    console.info(console.paint(f"· {stage.name}", "dim") + console.paint(f"  up to date ({reason})", "dim"))


class Schedule:
    """The order of a run: each stage after those of the run it needs (directly or not), at most `jobs` at once and
    at most `limits` of a kind or group."""

    def __init__(self, pipeline: Pipeline, stages: list[Stage], jobs: int):
        self.pipeline = pipeline
        self.stages = list(stages)
        names = {stage.name for stage in stages}
        self.after = {stage.name: pipeline.graph.ancestors(stage.name) & names for stage in stages}
        self.jobs = jobs
        self.parallel = jobs > 1 and pipeline.graph.width(names) > 1
        self.limits = pipeline.env.limits
        self.state: dict[str, str] = {}

    def run(self, stale: Callable[[Stage], bool], run: Callable[[Stage, bool], bool]) -> None:
        """For each stage in order, once what it needs is done: stale(stage) says whether it must run (it says why it
        is skipped, in this thread: the lines come in order); run(stage, quiet) runs it, True when it succeeded."""
        if not self.parallel:
            for stage in self.stages:
                if not self._blocked(stage):
                    self.state[stage.name] = OK if not stale(stage) or run(stage, False) else FAILED
            return
        with _Threads(self.jobs) as pool:
            running: dict[Future, Stage] = {}
            started = time.monotonic()
            try:
                self._parallel(pool, running, stale, run)
            except interrupts.Interrupted as stop:
                self._stop(running, stop, started)
                raise

    def _parallel(self, pool: _Threads, running: dict[Future, Stage], stale, run) -> None:
        pending = list(self.stages)
        while pending or running:
            for stage in list(pending):
                if self._blocked(stage):
                    pending.remove(stage)
                elif self._ready(stage, running):
                    pending.remove(stage)
                    if stale(stage):
                        running[pool.submit(self._tagged, run, stage)] = stage
                    else:
                        self.state[stage.name] = OK
            if running:
                from concurrent.futures import FIRST_COMPLETED, wait

                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    stage = running.pop(future)
                    self.state[stage.name] = OK if future.result() else FAILED

    @staticmethod
    def _tagged(run, stage: Stage) -> bool:
        with console.tagged(stage.name):
            return run(stage, True)

    def _ready(self, stage: Stage, running: dict[Future, Stage]) -> bool:
        if len(running) >= self.jobs or any(name not in self.state for name in self.after[stage.name]):
            return False
        for key, limit in self.limits.items():
            if key in (stage.kind, stage.config.group) and sum(
                    key in (other.kind, other.config.group) for other in running.values()) >= limit:
                return False
        return True

    def _blocked(self, stage: Stage) -> bool:
        """True (and recorded) when a stage it needs failed or was not run: it is not run either."""
        failed = [name for name in self.after[stage.name] if self.state.get(name) not in (None, OK)]
        if not failed:
            return False
        self.state[stage.name] = NOT_RUN
        message = f"not run: {failed[0]} {self.state[failed[0]]}"
        self.pipeline.outcomes.append(StageOutcome(stage.name, stage.kind, NOT_RUN, message=message))
        return True

    def _stop(self, running: dict[Future, Stage], stop: interrupts.Interrupted, started: float) -> None:
        """Ctrl-C or SIGTERM: the running stages' tools have the signal; wait until they stopped (a second signal
        kills them), then say in one line what was interrupted."""
        from concurrent.futures import wait

        while True:
            try:
                wait(running)
                break
            except interrupts.Interrupted:
                continue
        stopped = [stage.name for future, stage in running.items()
                   if isinstance(future.exception(), interrupts.Interrupted)]
        if stopped and not interrupts.was_reported():
            names = ", ".join(stopped)
            console.out(console.paint(f"  ✗ {names} {'was' if len(stopped) == 1 else 'were'} interrupted by "
                                      f"{stop.name} after {seconds(time.monotonic() - started)}: ", "red")
                        + f"nothing handed off (each handoff is the previous one); `doit deploy` resumes at {names}")
            interrupts.mark_reported()


class _Threads:
    """The stages' threads, started when the first stage runs: a run that skips every stage starts none (nor imports
    concurrent.futures and the logging it needs, a few milliseconds of a no-op)."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., bool], *args: Any) -> Future:
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="stage")
        return self.pool.submit(fn, *args)

    def __enter__(self) -> _Threads:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
