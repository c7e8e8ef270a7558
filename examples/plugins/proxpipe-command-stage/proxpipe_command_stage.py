"""An example third-party plugin for proxpipe: the `command` stage kind, with every verb of the stage contract.

A `command` stage sits between a stage that hands off an Ansible inventory and one that reads it. It runs
a command of your choice with the upstream inventory's path in $PIPELINE_INPUT and a path to write to in
$PIPELINE_OUTPUT; what the command writes there (checked like any inventory) becomes its handoff. It keeps each
inventory it handed off, so it can go back to the one before (rollback) and write the last one back over a damaged
handoff (restore); `destroy` runs its `destroy_command`, if any (say, to take the hosts out of a CMDB).

    stages:
      provision: {kind: terraform, ...}
      enrich:
        kind: command
        dir: inventory-filters
        handoff: enriched_inventory.json
        command: [python3, add_vars.py]
        destroy_command: [python3, deregister.py]
      configure: {kind: ansible, ...}
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from proxpipe.api import (
    INVENTORY,
    Field,
    PipelineError,
    Preview,
    Rollback,
    Stage,
    ToolError,
    hookimpl,
    schema,
    toolrunner,
)

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
    ROLLBACK_MODES = {"previous": "hand off the inventory it handed off before this one"}
    OPTIONS = {
        "command": Field(schema.COMMAND, "The command, run in dir.", required=True),
        "destroy_command": Field(schema.COMMAND, "Run by `doit destroy`, with the current handoff in "
                                                 "$PIPELINE_INPUT."),
    }

    @property
    def kept(self) -> Path:
        """Every inventory this stage handed off, oldest first (a line each)."""
        return self.pipeline.state_dir / self.name / "handed-off.jsonl"

    def preflight(self, upstream, job):
        program = self.options["command"][0]
        if toolrunner.which(program, self.dir) is None:
            raise PipelineError(f"{self.config.where}.command: {program} not found; install it or fix the command")

    def run(self, upstream, job):
        value = self._transform(job, self.options["command"])
        line = json.dumps(value, sort_keys=True)
        if self._handed_off()[-1:] != [value]:
            self.kept.parent.mkdir(parents=True, exist_ok=True)
            with open(self.kept, "a") as out:
                out.write(line + "\n")
        return value

    def preview(self, upstream, job, reasons):
        value = self._transform(job, self.options["command"])
        same = value == self.handoff_value()
        return Preview(not same, "no change to the inventory" if same else "the inventory would change",
                       () if same else (f"~ {self.handoff_path.name} ({_digest(value)})",))

    def destroy(self, upstream, job):
        if self.options["destroy_command"]:
            job.runner.run(self.options["destroy_command"], f"destroy {self.options['destroy_command'][0]}",
                           env={"PIPELINE_INPUT": str(self.handoff_path)})
        self.kept.unlink(missing_ok=True)
        return True

    def rollback(self, mode, to, upstream, job):
        handed_off = self._handed_off()
        if len(handed_off) < 2:
            raise PipelineError(f"stage {self.name} has handed off only {len(handed_off)} inventory; nothing earlier "
                                "to go back to")
        with open(self.kept, "a") as out:
            out.write(json.dumps(handed_off[-2], sort_keys=True) + "\n")
        return Rollback(handed_off[-2], f"handed off the inventory before the last ({_digest(handed_off[-2])})")

    def restore(self, kept, job):
        handed_off = self._handed_off()
        if not handed_off:
            raise PipelineError(f"stage {self.name} has no inventory to restore; run `doit {self.name} --force`")
        return handed_off[-1]

    def _transform(self, job, command):
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "inventory.json"
            job.runner.run(command, f"command {command[0]}",
                           env={"PIPELINE_INPUT": str(job.upstream_path), "PIPELINE_OUTPUT": str(output)})
            if not output.is_file():
                raise ToolError(f"{self.name}: the command wrote nothing to $PIPELINE_OUTPUT")
            try:
                return INVENTORY.parse(output.read_text())
            except ValueError as exc:
                raise ToolError(f"{self.name}: the command wrote an invalid inventory: {exc}") from None

    def _handed_off(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.kept.read_text().splitlines() if line.strip()]
        except (OSError, ValueError):
            return []


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


@hookimpl
def register_stage_kinds(register):
    register(CommandStage.kind, CommandStage)


@hookimpl
def stage_finished(run, stage, duration, handoff):
    if stage.kind == "command" and run.plugin_options(NAME).get("announce"):
        print(f"[command-stage] {stage.name} handed off {handoff} in {duration:.1f}s", flush=True)
