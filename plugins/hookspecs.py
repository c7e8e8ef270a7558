"""The hooks a plugin can implement.

A plugin is a module or object with functions marked ``@hookimpl`` and named like the hooks
below. Built-in plugins (``plugins.DEFAULT_PLUGINS``) and third-party ones (entry point group
``proxpipe.plugins``) are registered the same way. Every hook is called with keyword
arguments; an implementation may accept any subset of them.

Hooks are grouped by phase:

* registration, once per process while the pipeline is loaded:
  :func:`register_stage_kinds`, :func:`register_checks`;
* lifecycle events of a run (``deploy``, one stage, ``rollback`` or ``destroy``), in this order:
  :func:`run_started`, then per stage :func:`stage_started` / :func:`stage_skipped`,
  :func:`handoff_written`, :func:`stage_finished` / :func:`stage_failed`, and last
  :func:`run_finished`;
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
    from pipeline.checks import Check
    from pipeline.events import RunInfo, StageInfo, StageOutcome
    from stages.base import Stage

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
    ``stages.base.Stage`` and declares its options, inputs, handoff and ``run()``. Registering a
    kind twice is an error that names both plugins.

    :param register: callback taking the kind name and the Stage subclass.
    """


@hookspec
def register_checks(register: Callable[[Check], None]) -> None:
    """Contribute validation checks for ``doit validate``: call ``register(check)`` per check.

    Called once when ``doit validate`` (or ``--list``) loads its checks. ``check`` is a
    ``pipeline.checks.Check``: an id (unique), a one-line description, the stage it belongs to
    (``build``, ``provision`` or ``configure``) and a function that yields results. A check
    that raises is reported as failed with the plugin's name and the exception's message.

    :param register: callback taking one Check.
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
        ``status`` (``ran``, ``skipped``, ``failed`` or ``interrupted``), ``duration``, ``handoff``,
        ``message``, ``tool_versions``.
    """


# ----------------------------------------------------------------------------- documentation


@hookspec
def docs_context(environment: Any) -> dict | None:
    """Extra variables for the templates rendered by ``doit docs``.

    Called once per ``doit docs``; the dicts returned are merged (later plugins win) under the
    template variable ``plugins``.

    :param environment: the chosen ``pipeline.config.Environment``.
    :return: a dict of template variables, or None.
    """
