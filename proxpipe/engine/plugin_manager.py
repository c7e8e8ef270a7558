"""The plugin manager, and the one typed facade through which the core calls hooks.

Every hook is called through pluggy (so tryfirst, trylast, hook wrappers and pluggy's tracing all
work). Each plugin is registered through a guard: an exception in one of its event hooks is
reported with the plugin's name and only warns, unless its on_error is fail; the other plugins'
implementations still run.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import json
import os
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pluggy

from proxpipe.api import hookspecs
from proxpipe.base import schema
from proxpipe.base.console import console
from proxpipe.base.errors import ConfigError, PipelineError
from proxpipe.base.fsutil import atomic_write

# The built-in plugins, registered exactly like third-party ones (entry point group proxpipe.plugins); by module
# name, so the core never imports a plugin itself.
DEFAULT_PLUGINS = {
    "stages": "proxpipe.plugins.builtin_stages",
    "proxmox-checks": "proxpipe.plugins.proxmox_checks",
    "host-checks": "proxpipe.plugins.host_checks",
    "terraform-checks": "proxpipe.plugins.terraform_checks",
    "configure-checks": "proxpipe.plugins.configure_checks",
    "runlog": "proxpipe.plugins.runlog",
    "webhook": "proxpipe.plugins.webhook",
    "lab": "proxpipe.lab.plugin",
}

# Parts of the core registered as plugins, always (they take no options): the commands (tox 4's way).
INTERNAL_PLUGINS = {"commands": "proxpipe.commands.builtin"}

# Options every plugin has in pipeline.yaml's `plugins:` section.
COMMON_OPTIONS = {
    "enabled": schema.Field(schema.BOOL, "Load this plugin.", default=True),
    "on_error": schema.Field(schema.STR, "What an exception in one of its event hooks does: warn, or fail "
                                         "the run.", default="warn", choices=("warn", "fail")),
}

# Hooks whose exceptions are the plugin's own bug: reported, and fatal only with on_error: fail. An exception in a
# registration hook (a kind registered twice, say) is a configuration error and always ends the load.
_EVENT_HOOKS = {"run_started", "stage_started", "stage_skipped", "handoff_written", "stage_finished",
                "stage_failed", "run_finished", "drift_detected", "docs_context"}

# The plugin whose hook implementation runs right now, for messages such as "registered twice by A and B".
_calling: contextvars.ContextVar[str] = contextvars.ContextVar("calling", default="?")


class Plugins:
    """Loaded plugins, their validated options, and typed calls of every hook."""

    def __init__(self, pm: pluggy.PluginManager, options: Mapping[str, dict], sources: Mapping[str, str]):
        self.pm = pm
        self.hook = pm.hook
        self._options = dict(options)
        self.sources = dict(sources)  # plugin name -> module or entry point, for docs and errors
        self.providers: dict[tuple[str, str], str] = {}  # (what, name) -> plugin that registered it
        self._registered: dict[str, dict] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, section: Any, ctx: schema.Context, where: str = "plugins") -> Plugins:
        """Register the enabled built-in and entry-point plugins, with their options checked."""
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ctx.error(where, f"expected a mapping of plugin names, got {schema.describe(section)}")
        available = _available(ctx.base / ".pipeline" / ".entry-points.json")
        unknown = sorted(set(section) - set(available))
        if unknown:
            raise ctx.error(f"{where}.{unknown[0]}",
                            f"unknown plugin (installed: {', '.join(sorted(available))})")
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        options, sources = {}, {}
        for name, module in INTERNAL_PLUGINS.items():
            pm.register(_guarded(importlib.import_module(module), name, "fail"), name=name)
        for name, (source, loader) in available.items():
            raw = section.get(name) or {}
            enabled = schema.convert(raw.get("enabled", True), COMMON_OPTIONS["enabled"],
                                     f"{where}.{name}.enabled", ctx) if isinstance(raw, dict) else True
            if not enabled:
                continue
            plugin = _import(name, source, loader)
            fields = {**COMMON_OPTIONS, **getattr(plugin, "OPTIONS", {})}
            options[name] = schema.validate_map(raw, fields, f"{where}.{name}", ctx)
            sources[name] = source
            pm.register(_guarded(plugin, name, options[name]["on_error"]), name=name)
        _check_pending(pm)
        return cls(pm, options, sources)

    def options(self, name: str) -> dict:
        """The validated options of one plugin (empty if it is not loaded)."""
        return self._options.get(name, {})

    def module(self, name: str) -> Any:
        """The plugin object itself (the module of a built-in plugin), or None."""
        guarded = self.pm.get_plugin(name)
        return guarded.plugin if guarded is not None else None

    @property
    def names(self) -> list[str]:
        return list(self._options)

    # ------------------------------------------------------------------ registration hooks

    def stage_kinds(self) -> dict[str, type]:
        """kind name -> Stage class, from every plugin's register_stage_kinds."""
        return self._collect("register_stage_kinds", "stage kind", lambda name, cls: (name, cls))

    def checks(self) -> list:
        """Every Check contributed through register_checks, in registration order."""
        return list(self._collect("register_checks", "check", lambda check: (check.id, check)).values())

    def commands(self) -> dict[str, Any]:
        """command name -> Command, from every plugin's register_commands."""
        return self._collect("register_commands", "command", lambda command: (command.name, command))

    def examples(self) -> dict[str, Any]:
        """example name -> Example, from every plugin's register_examples."""
        return self._collect("register_examples", "example", lambda example: (example.name, example))

    def environment_fields(self) -> dict[str, schema.Field]:
        """The keys plugins add to an environment in pipeline.yaml."""
        fields: dict[str, schema.Field] = {}
        for contributed in self.hook.environment_fields():
            fields.update(contributed or {})
        return fields

    def _collect(self, hook: str, what: str, entry: Callable[..., tuple[str, Any]]) -> dict:
        if hook not in self._registered:
            contributed: list[tuple[str, str, Any]] = []
            getattr(self.hook, hook)(register=lambda *args: contributed.append((_calling.get(), *entry(*args))))
            # pluggy calls the last registered plugin first; registration order reads better in lists and docs.
            order = {name: index for index, name in enumerate([*INTERNAL_PLUGINS, *self.names])}
            found: dict[str, Any] = {}
            for plugin, name, value in sorted(contributed, key=lambda item: order.get(item[0], len(order))):
                if name in found:
                    raise ConfigError(f"{what} {name!r} is registered twice: by plugin "
                                      f"{self.providers[(what, name)]} and by plugin {plugin}; "
                                      "disable one in pipeline.yaml")
                found[name] = value
                self.providers[(what, name)] = plugin
            self._registered[hook] = found
        return self._registered[hook]

    # ------------------------------------------------------------------ the environment

    def proxmox_endpoint(self, environment, proxmox):
        return self.hook.proxmox_endpoint(environment=environment, proxmox=proxmox) or proxmox

    def state_endpoint(self, environment, state):
        return self.hook.state_endpoint(environment=environment, state=state) or state

    def doctor_tools(self, environment) -> list:
        return [spec for specs in self.hook.doctor_tools(environment=environment) for spec in specs or []]

    # ------------------------------------------------------------------ lifecycle events

    def run_started(self, run) -> None:
        self.hook.run_started(run=run)

    def stage_started(self, run, stage) -> None:
        self.hook.stage_started(run=run, stage=stage)

    def stage_skipped(self, run, stage, reason: str) -> None:
        self.hook.stage_skipped(run=run, stage=stage, reason=reason)

    def handoff_written(self, run, stage, path, value: str) -> None:
        self.hook.handoff_written(run=run, stage=stage, path=path, value=value)

    def stage_finished(self, run, stage, duration: float, handoff: str | None, tool_versions: dict) -> None:
        self.hook.stage_finished(run=run, stage=stage, duration=duration, handoff=handoff,
                                 tool_versions=tool_versions)

    def stage_failed(self, run, stage, duration: float, message: str) -> None:
        self.hook.stage_failed(run=run, stage=stage, duration=duration, message=message)

    def run_finished(self, run, ok: bool, outcomes: list) -> None:
        self.hook.run_finished(run=run, ok=ok, outcomes=outcomes)

    def drift_detected(self, run, report) -> None:
        self.hook.drift_detected(run=run, report=report)

    def docs_context(self, environment) -> dict:
        """The plugins' template variables, merged; later plugins win."""
        merged: dict = {}
        for extra in reversed(self.hook.docs_context(environment=environment)):
            merged.update(extra)
        return merged


def _guarded(plugin: Any, name: str, on_error: str) -> types.ModuleType:
    """A plugin as pluggy sees it: the same hook implementations (markers, argument names, tryfirst/trylast and
    wrappers kept), each run with the plugin's name known and, for event hooks, its exceptions guarded. A bare
    module object holds them because pluggy inspects every name dir() gives, and an instance of a class has dozens
    more (a few milliseconds of every run)."""
    guarded = types.ModuleType(f"proxpipe-plugin:{name}")
    guarded.plugin = plugin
    for attr in dir(plugin):
        function = getattr(plugin, attr, None)
        options = getattr(function, f"{hookspecs.PROJECT}_impl", None)
        if callable(function) and options is not None:
            wrapper = options.get("wrapper") or options.get("hookwrapper")
            setattr(guarded, attr, function if wrapper else _guard(function, name, attr, on_error))
    return guarded


def _guard(function: Callable, plugin: str, hook: str, on_error: str) -> Callable:
    @functools.wraps(function)
    def call(*args, **kwargs):
        token = _calling.set(plugin)
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            message = f"plugin {plugin} failed in {hook}: {type(exc).__name__}: {exc}"
            if hook not in _EVENT_HOOKS:  # a registration hook: the pipeline cannot be loaded without it
                if isinstance(exc, PipelineError):
                    raise
                raise ConfigError(message) from exc
            if on_error == "fail":
                raise PipelineError(message) from exc
            console.warn(message)
            return None
        finally:
            _calling.reset(token)

    return call


def _available(cache: Path) -> dict[str, tuple[str, Callable[[], Any]]]:
    """name -> (source, loader) of every built-in and installed plugin, and of the modules named in
    PROXPIPE_PLUGINS (comma-separated; for trying a plugin out without installing it)."""
    found = {name: (module, lambda module=module: importlib.import_module(module))
             for name, module in DEFAULT_PLUGINS.items()}
    for module in filter(None, (m.strip() for m in os.environ.get("PROXPIPE_PLUGINS", "").split(","))):
        found[module.rsplit(".", 1)[-1]] = (module, lambda module=module: importlib.import_module(module))
    for name, value in _entry_points(cache):
        if name in found:
            raise ConfigError(f"plugin {name!r} from entry point {value} has the name of a built-in plugin; rename "
                              "its entry point")
        found[name] = (value, lambda value=value: _load_entry_point(value))
    return found


def _entry_points(cache: Path) -> list[tuple[str, str]]:
    """(name, "module:attr") of the plugins installed through the entry point group. Scanning every installed
    distribution costs a no-op run a good part of its start-up, so the list is kept beside the state, keyed by the
    import folders that hold distributions and their modification times (installing or removing a distribution
    changes its folder)."""
    key = _distribution_folders()
    try:
        saved = json.loads(cache.read_text())
        if saved["key"] == key:
            return [tuple(point) for point in saved["points"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from importlib.metadata import entry_points

    points = sorted((point.name, point.value) for point in entry_points(group=hookspecs.ENTRY_POINT_GROUP))
    if cache.parent.is_dir():  # a project's state folder: never made just for this (proxpipe init --dry-run)
        try:
            atomic_write(cache, json.dumps({"key": key, "points": points}), durable=False)
        except OSError:
            pass  # a read-only project: scan every time
    return points


def _distribution_folders() -> list[list]:
    """[folder, mtime] of each folder on sys.path with installed distributions, in a stable order: plain doit puts
    the project folder on sys.path and the proxpipe command does not, and editing a project file changes the
    project folder's mtime; neither should cost a rescan."""
    key = []
    for entry in sorted(set(filter(None, sys.path))):
        try:
            if any(name.endswith((".dist-info", ".egg-info")) for name in os.listdir(entry)):
                key.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            continue  # a zip file or a missing folder: no distributions
    return key


def _load_entry_point(value: str) -> Any:
    """What an entry point's value names: a module, or an attribute of one ("module:attr")."""
    module, _, attribute = value.partition(":")
    found = importlib.import_module(module.strip())
    for part in filter(None, attribute.strip().split(".")):
        found = getattr(found, part)
    return found


def _import(name: str, source: str, loader: Callable[[], Any]) -> Any:
    try:
        return loader()
    except Exception as exc:  # noqa: BLE001 - any import error of a plugin is the plugin's
        raise ConfigError(f"plugin {name} ({source}) failed to load: {type(exc).__name__}: {exc}") from None


def _check_pending(pm: pluggy.PluginManager) -> None:
    """Like pm.check_pending(), with a message that names the plugin and lists the hooks."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        names = [name for name in pm.hook.__dict__ if not name.startswith("_")]
        hook = next((name for name in names if not getattr(pm.hook, name).has_spec()), "?")
        known = sorted(name for name in names if getattr(pm.hook, name).has_spec())
        raise ConfigError(f"plugin {pm.get_name(exc.plugin)}: unknown hook {hook!r}; a @hookimpl must be named "
                          f"like one of: {', '.join(known)}") from None
