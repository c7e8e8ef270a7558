"""An example third-party plugin for proxpipe: the `command` stage kind, and a lifecycle hook.

A `command` stage sits between a stage that hands off an Ansible inventory and one that reads it. It runs
a command of your choice with the upstream inventory's path in $PIPELINE_INPUT and a path to write to in
$PIPELINE_OUTPUT; what the command writes there (checked like any inventory) becomes its handoff.

    stages:
      provision: {kind: terraform, ...}
      enrich:
        kind: command
        dir: inventory-filters
        handoff: enriched_inventory.json
        command: [python3, add_vars.py]
      configure: {kind: ansible, ...}
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from proxpipe.api import INVENTORY, Field, Stage, ToolError, hookimpl, schema

NAME = "command-stage"
# Options of the plugin itself, under plugins.command-stage in pipeline.yaml.
OPTIONS = {
    "announce": Field(schema.BOOL, "Print a line when a command stage finishes.", default=False),
}


class CommandStage(Stage):
    kind = "command"
    ACTION = "transform"
    description = "transform the inventory with a command"
    consumes = INVENTORY
    produces = INVENTORY
    UPSTREAM_PARAM = {"name": "inventory", "long": "inventory", "is_path": True,
                      "help": "transform this inventory file instead of the previous stage's handoff"}
    OPTIONS = {
        "command": Field(schema.COMMAND, "The command, run in dir.", required=True),
    }

    def run(self, upstream, job):
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "inventory.json"
            job.runner.run(self.options["command"], f"command {self.options['command'][0]}",
                           env={"PIPELINE_INPUT": str(job.upstream_path), "PIPELINE_OUTPUT": str(output)})
            if not output.is_file():
                raise ToolError(f"{self.name}: the command wrote nothing to $PIPELINE_OUTPUT")
            try:
                return INVENTORY.parse(output.read_text())
            except ValueError as exc:
                raise ToolError(f"{self.name}: the command wrote an invalid inventory: {exc}") from None


@hookimpl
def register_stage_kinds(register):
    register(CommandStage.kind, CommandStage)


@hookimpl
def stage_finished(run, stage, duration, handoff):
    if stage.kind == "command" and run.plugin_options(NAME).get("announce"):
        print(f"[command-stage] {stage.name} handed off {handoff} in {duration:.1f}s", flush=True)
