"""The ansible-galaxy step of the stage kinds that run Ansible: configure (ansible) and build (packer, when its
template runs the Ansible provisioner). The install itself is proxpipe.stages.galaxy."""

from __future__ import annotations

import os
from pathlib import Path

from proxpipe.api import Stage, StageJob, ToolSpec
from proxpipe.base import schema
from proxpipe.base.console import console
from proxpipe.base.fsutil import display
from proxpipe.base.schema import Field
from proxpipe.stages import ansiblecfg, galaxy

OPTION = Field(schema.LIST, "Requirements files installed with ansible-galaxy before the tool runs, relative to "
                            "dir. Default: those of requirements.yml, collections/requirements.yml and "
                            "roles/requirements.yml (or .yaml) that exist. [] turns the step off.",
               items=Field(schema.FILE))
INSTALL_HINT = "pip install ansible-core (./doitw installs it into .venv)"


def requirements(stage: Stage, config_file: Path | None, ansible_home: str) -> galaxy.Galaxy:
    """The stage's requirements, its install under the state directory, and the user's own search paths (read
    from the stage's environment and config_file, the ansible.cfg the tool reads)."""
    cfg, environ = ansiblecfg.read(config_file), {**os.environ, **stage.expand(stage.config.env)}
    return galaxy.Galaxy(stage.dir, galaxy.requirement_files(stage.dir, stage.options["galaxy_requirements"]),
                         stage.pipeline.state_dir / stage.name / "galaxy",
                         galaxy.user_paths("collections", environ, cfg, ansible_home),
                         galaxy.user_paths("roles", environ, cfg, ansible_home))


def tool(program: str) -> ToolSpec:
    return ToolSpec(program, ("--version",), r"core (\d+\.\d+\.\d+)", "2.15.0", INSTALL_HINT, "galaxy_requirements")


def install(stage: Stage, job: StageJob, requirements: galaxy.Galaxy, program: str, home: Path) -> None:
    """Install the requirements (when they changed or are missing), as a tool step of the stage's log."""
    if not requirements.files:
        return
    from proxpipe.api import toolrunner as tools  # only when a tool runs

    found = tools.require(program, stage.pipeline.root,
                          f"{INSTALL_HINT}, or set {stage.config.where}.galaxy_requirements: [] to skip the step")
    job.notes["galaxy"] = requirements.install(job.runner, found, home, stage.config.env)
    if not job.notes["galaxy"].startswith("skipped"):
        console.step(f"ansible-galaxy: {job.notes['galaxy']} into {display(requirements.root)}")
