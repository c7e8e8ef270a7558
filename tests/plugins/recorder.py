"""A plugin for the tests: shell stage kinds, two checks, and a record of every hook call.

Events go to $RECORDER_FILE as JSON lines; $RECORDER_RAISE names a hook that raises.
"""

import json
import os
import tempfile
from pathlib import Path

from proxpipe.api import (
    FILE,
    Check,
    Command,
    Example,
    Field,
    Param,
    Skip,
    Stage,
    ToolError,
    ToolSpec,
    failed,
    hookimpl,
    passed,
    schema,
)

OPTIONS = {"label": Field(schema.STR, "A label written into every event.", default="rec")}


def record(hook, **data):
    if os.environ.get("RECORDER_RAISE") == hook:
        raise RuntimeError(f"boom in {hook}")
    path = os.environ.get("RECORDER_FILE")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"hook": hook, **data}, default=str) + "\n")


class ShellSource(Stage):
    kind = "shell-source"
    produces = FILE
    OPTIONS = {"command": Field(schema.STR, "sh -c command writing $PIPELINE_OUTPUT", required=True)}

    def run(self, upstream, job):
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "out"
            env = {"PIPELINE_OUTPUT": str(output), "PIPELINE_INPUT": str(job.upstream_path or "")}
            job.runner.run(["sh", "-c", self.options["command"]], "shell", env=env)
            if not output.exists():
                raise ToolError(f"{self.name}: nothing written")
            return output.read_text()


class Shell(ShellSource):
    kind = "shell"
    consumes = FILE
    UPSTREAM_PARAM = {"name": "input", "long": "input", "is_path": True, "help": "the input file"}


@hookimpl
def register_stage_kinds(register):
    register(ShellSource.kind, ShellSource)
    register(Shell.kind, Shell)


def _ok_check(ctx):
    yield passed("everything", "fine")


def _bad_check(ctx):
    yield failed("something", "is wrong")


def _skip_check(ctx):
    raise Skip("does not apply here")


def _exploding_check(ctx):
    raise ZeroDivisionError("division by zero")


@hookimpl
def register_checks(register):
    register(Check("rec-ok", "always passes", "build", _ok_check))
    register(Check("rec-bad", "always fails", "build", _bad_check))
    register(Check("rec-skip", "never applies", "build", _skip_check))
    register(Check("rec-explodes", "raises", "build", _exploding_check))


@hookimpl
def run_started(run):
    record("run_started", command=run.command, environment=run.environment, label=run.plugin_options("recorder")
           .get("label"))


@hookimpl
def stage_started(run, stage):
    record("stage_started", stage=stage.name, kind=stage.kind)


@hookimpl
def stage_skipped(run, stage, reason):
    record("stage_skipped", stage=stage.name, reason=reason)


@hookimpl
def handoff_written(run, stage, path, value):
    record("handoff_written", stage=stage.name, path=str(path), value=value)


@hookimpl
def stage_finished(run, stage, duration, handoff, tool_versions):
    record("stage_finished", stage=stage.name, duration=duration, handoff=handoff)


@hookimpl
def stage_failed(run, stage, duration, message):
    record("stage_failed", stage=stage.name, message=message)


@hookimpl
def run_finished(run, ok, outcomes):
    record("run_finished", ok=ok, outcomes=[(o.name, o.status) for o in outcomes])


@hookimpl
def drift_detected(run, report):
    record("drift_detected", command=run.command, environment=report.environment, status=report.status,
           summary=report.summary_lines(), drifted=[stage.name for stage in report.drifted()])


@hookimpl
def register_commands(register):
    register(Command("rec-hello", "say hello", lambda pipeline, name: record("rec-hello", name=name,
                                                                              environment=pipeline.env.name),
                     (Param("name", "name", str, "world", "whom to greet"),)))


@hookimpl
def register_examples(register):
    register(Example("rec-demo", "a demo of the recorder", lambda: {"pipeline.yaml": "# recorded\n",
                                                                   "work/hello.txt": "hello\n"},
                     lambda root: [f"prepared {root.name}"]))


@hookimpl
def environment_fields():
    return {"recorded": Field(schema.STR, "A value the recorder reports at start-up.")}


@hookimpl
def proxmox_endpoint(environment, proxmox):
    record("proxmox_endpoint", environment=environment.name, recorded=environment.extras.get("recorded"))
    return None


@hookimpl
def state_endpoint(environment, state):
    record("state_endpoint", environment=environment.name, schema=state.schema)
    return None


@hookimpl
def doctor_tools(environment):
    return [ToolSpec("sh", (), "", "", "apt-get install dash", "the recorder")]


@hookimpl
def docs_context(environment):
    return {"recorder": f"docs for {environment.name}"}
