"""The hooks a plugin can implement.

A plugin is a module or object with functions marked ``@hookimpl`` (from ``proxpipe.api``) and
named like the hooks below. Built-in plugins (``proxpipe.engine.plugin_manager.DEFAULT_PLUGINS``) and
third-party ones (entry point group ``proxpipe.plugins``) are registered the same way, and every
hook is called through pluggy, so ``tryfirst``, ``trylast`` and hook wrappers work. Every hook is
called with keyword arguments; an implementation may accept any subset of them.

Hooks are grouped by phase:

* registration, once per process while the pipeline is loaded:
  :func:`register_stage_kinds`, :func:`register_checks`, :func:`register_commands`,
  :func:`register_examples`, :func:`environment_fields`;
* the environment: :func:`proxmox_endpoint` when the Proxmox API is first needed,
  :func:`state_endpoint` when its shared state's database is, :func:`doctor_tools` for ``doit doctor``;
* lifecycle events of a run (``deploy``, one stage, ``rollback`` or ``destroy``), in this order:
  :func:`run_started`, then per stage :func:`stage_started` / :func:`stage_skipped`,
  :func:`handoff_written`, :func:`stage_finished` / :func:`stage_failed`, and last
  :func:`run_finished`;
* drift: :func:`drift_detected` when ``proxpipe drift`` found that what is deployed no longer matches;
* documentation: :func:`docs_context` while ``doit docs`` renders ``templates/``.

An exception raised in an event hook is reported with the plugin's name; it only warns unless
the plugin's ``on_error`` in ``pipeline.yaml`` is ``fail``. A stage kind or check that raises
fails its stage or check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from proxpipe.api.checks import Check
    from proxpipe.api.command import Command, Example
    from proxpipe.api.stage import Stage, ToolSpec
    from proxpipe.base.events import RunInfo, StageInfo, StageOutcome
    from proxpipe.base.schema import Field
    from proxpipe.domain.config import Environment, ProxmoxConfig
    from proxpipe.domain.drift import DriftReport
    from proxpipe.domain.state import StateConfig

PROJECT = "proxpipe"
ENTRY_POINT_GROUP = "proxpipe.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ----------------------------------------------------------------------------- registration


@hookspec
def register_stage_kinds(register: Callable[[str, type[Stage]], None]) -> None:
    """Contribute stage kinds: call ``register(kind, cls)`` once per kind.

    Called once, while ``pipeline.yaml`` is loaded, before any stage is built. ``kind`` is the
    name used as ``kind:`` in a stage of ``pipeline.yaml``; ``cls`` subclasses
    ``proxpipe.api.Stage`` and declares its options, inputs, handoff and ``run()``. Registering a
    kind twice is an error that names both plugins.

    :param register: callback taking the kind name and the Stage subclass.
    """


@hookspec
def register_checks(register: Callable[[Check], None]) -> None:
    """Contribute validation checks for ``doit validate``: call ``register(check)`` per check.

    Called once when ``doit validate`` (or ``--list``) loads its checks. ``check`` is a
    ``proxpipe.api.Check``: an id (unique), a one-line description, what the stages it checks
    produce (``template_id``, ``inventory`` or ``configure``; optionally only stages of some
    kinds) and a function that yields results; it runs once per such stage. A check that raises
    is reported as failed with the plugin's name and the exception's message.

    :param register: callback taking one Check.
    """


@hookspec
def register_commands(register: Callable[[Command], None]) -> None:
    """Contribute commands (``doit lab-stop``, ``doit report``; proxpipe's own ``deploy``, ``status``, ...
    come this way too): call ``register(command)`` once per command.

    Called once while the task graph is built. ``command`` is a ``proxpipe.api.Command``: its name
    (unique among the commands, stages and doit's own), a one-line doc, the function run with the
    pipeline and the command's options, whether it takes the environment's lock, and its help.

    :param register: callback taking one Command.
    """


@hookspec
def register_examples(register: Callable[[Example], None]) -> None:
    """Contribute demo projects for ``proxpipe init --example NAME``: call ``register(example)`` once per
    project.

    Called by ``proxpipe init --example`` (before any ``pipeline.yaml`` exists, so with every installed
    plugin enabled). ``example`` is a ``proxpipe.api.Example``: a name, a one-line doc, the files to
    write, and an optional step to run once they are written.

    :param register: callback taking one Example.
    """


@hookspec
def environment_fields() -> dict[str, Field] | None:
    """Extra keys an environment in ``pipeline.yaml`` may have, as ``{key: Field}``.

    Called once while ``pipeline.yaml`` is loaded. The values are checked like the built-in keys
    and reach the plugin as ``environment.extras[key]`` (``None`` when the key is absent).

    :return: the keys and their schema, or None.
    """


# ----------------------------------------------------------------------------- the environment


@hookspec(firstresult=True)
def proxmox_endpoint(environment: Environment, proxmox: ProxmoxConfig) -> ProxmoxConfig | None:
    """The Proxmox API is needed for the first time in this process.

    A plugin that provides the API (the local lab starts its stand-in here) may return the
    settings to use instead of ``proxmox``, e.g. with its own CA file. The first non-None
    result wins.

    :param environment: the chosen ``proxpipe.domain.config.Environment``.
    :param proxmox: its ``proxmox`` settings from ``pipeline.yaml``.
    :return: the settings to use, or None to leave them as they are.
    """


@hookspec(firstresult=True)
def state_endpoint(environment: Environment, state: StateConfig) -> StateConfig | None:
    """The environment's shared state (its ``state:`` database) is needed for the first time in this process.

    Called only for an environment with ``state:`` in ``pipeline.yaml``, before the first connection. A plugin
    that provides the database (the local lab starts its PostgreSQL server here) may return the settings to use
    instead of ``state``. The first non-None result wins.

    :param environment: the chosen ``proxpipe.domain.config.Environment``.
    :param state: its ``state`` settings: ``url`` (a Secret), ``project``, ``schema``.
    :return: the settings to use, or None to leave them as they are.
    """


@hookspec
def doctor_tools(environment: Environment) -> list[ToolSpec] | None:
    """Programs the environment needs besides its stages' tools, for ``doit doctor``.

    :param environment: the chosen environment.
    :return: ``proxpipe.api.ToolSpec`` entries (an empty ``version_args`` checks presence only).
    """


# ----------------------------------------------------------------------------- lifecycle


@hookspec
def run_started(run: RunInfo) -> None:
    """A run begins: before its first stage is checked or started.

    :param run: the run: ``run.id``, ``run.environment``, ``run.command``, ``run.started``
        (epoch seconds), ``run.state_dir``, and ``run.plugin_options(name)``.
    """


@hookspec
def stage_started(run: RunInfo, stage: StageInfo) -> None:
    """A stage is stale and starts running its tool.

    :param run: the current run.
    :param stage: ``stage.name``, ``stage.kind``, ``stage.dir`` and ``stage.handoff`` (path).
    """


@hookspec
def stage_skipped(run: RunInfo, stage: StageInfo, reason: str) -> None:
    """A stage is up to date and is skipped; no tool runs for it.

    :param run: the current run.
    :param stage: the skipped stage.
    :param reason: why it counts as up to date, e.g. ``"template 9101 exists on pve1"``.
    """


@hookspec
def handoff_written(run: RunInfo, stage: StageInfo, path: Path, value: str) -> None:
    """A stage wrote its handoff file (atomically, after validating it).

    Called after the rename, before :func:`stage_finished`. Not called when the new handoff is
    identical to the old one.

    :param run: the current run.
    :param stage: the stage that wrote it.
    :param path: the handoff file.
    :param value: a short text form of the handoff, e.g. ``"9101"`` or ``"2 hosts"``.
    """


@hookspec
def stage_finished(run: RunInfo, stage: StageInfo, duration: float, handoff: str | None,
                   tool_versions: dict[str, str]) -> None:
    """A stage ran and succeeded.

    :param run: the current run.
    :param stage: the stage.
    :param duration: seconds the stage took, tool runs and waits included.
    :param handoff: the short text form of its handoff (see :func:`handoff_written`).
    :param tool_versions: ``{"terraform": "1.0.3", ...}`` of the tools it drove.
    """


@hookspec
def stage_failed(run: RunInfo, stage: StageInfo, duration: float, message: str) -> None:
    """A stage failed, or was interrupted (Ctrl-C, SIGTERM). Its previous handoff is left as it was.

    After an interrupt, ``run.interrupted`` is ``"SIGINT"`` or ``"SIGTERM"`` and ``message`` says
    ``interrupted by SIGINT``; keep the hook short then, the process is about to exit.

    :param run: the current run.
    :param stage: the stage.
    :param duration: seconds until it failed or was interrupted.
    :param message: the one-line reason, secrets masked.
    """


@hookspec
def run_finished(run: RunInfo, ok: bool, outcomes: list[StageOutcome]) -> None:
    """The run is over, successful or not. Last hook of a run.

    :param run: the run; ``run.finished`` is set, and ``run.interrupted`` (``"SIGINT"``,
        ``"SIGTERM"``) when it was interrupted.
    :param ok: True when no stage failed and the run was not interrupted.
    :param outcomes: one ``StageOutcome`` per stage that was considered, in order: ``name``,
        ``status`` (``ran``, ``skipped``, ``failed``, ``interrupted``, or ``not run`` when a stage it needs
        failed), ``duration``, ``handoff``, ``message``, ``tool_versions``.
    """


# ----------------------------------------------------------------------------- drift


@hookspec
def drift_detected(run: RunInfo, report: DriftReport) -> None:
    """``proxpipe drift`` found drift: at least one stage no longer matches what the pipeline made.

    Called once per drift run, after every stage was checked and before the run's :func:`run_finished`;
    only when some stage drifted (the report's ``status`` is ``drifted``, or ``unknown`` when another
    stage could not tell), never for a run that found everything in sync or could only not tell.

    ``report`` is a plain object (``proxpipe.domain.drift.DriftReport``; a plugin need not import it):
    ``report.environment``, ``report.created`` (ISO 8601), ``report.status`` (``in sync``,
    ``drifted`` or ``unknown``), ``report.exit_code`` (0, 2 or 1), ``report.summary_lines()`` (one
    line per stage: ``provision: drifted: 2 resources``), ``report.drifted()`` and ``report.stages``
    (each with ``name``, ``kind``, ``status``, ``summary()``, ``reason`` and ``items``: ``kind``
    (``resource``, ``host``, ``field``, ``file``), ``subject``, ``summary``, ``changes`` (``path``,
    ``then``, ``now``) and ``lines``), ``report.to_markdown()`` (short, for an issue or a chat
    message) and ``report.to_dict()`` (the document of ``drift.json``, schemas/drift.schema.json).
    The renderings (``summary_lines()``, ``to_markdown()``, ``to_dict()``) mask every registered
    secret; read values from ``to_dict()`` rather than from the items, which only have the values
    masked that the tools mark sensitive.

    :param run: the drift run (``run.command`` is ``drift``).
    :param report: what drift found, stage by stage.
    """


# ----------------------------------------------------------------------------- documentation


@hookspec
def docs_context(environment: Any) -> dict | None:
    """Extra variables for the templates rendered by ``doit docs``.

    Called once per ``doit docs``; the dicts returned are merged (later plugins win) under the
    template variable ``plugins``.

    :param environment: the chosen ``proxpipe.domain.config.Environment``.
    :return: a dict of template variables, or None.
    """
