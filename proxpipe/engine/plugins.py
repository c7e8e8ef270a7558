"""The plugin manager and the one typed facade through which the core calls hooks."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pluggy

from proxpipe.api import hookspecs
from proxpipe.base import schema
from proxpipe.base.console import console
from proxpipe.base.errors import ConfigError, PipelineError

# The built-in plugins, registered exactly like third-party ones (entry point group proxpipe.plugins); by module name,
# so the core never imports a plugin itself.
DEFAULT_PLUGINS = {
    "stages": "proxpipe.plugins.builtin_stages",
    "proxmox-checks": "proxpipe.plugins.proxmox_checks",
    "host-checks": "proxpipe.plugins.host_checks",
    "terraform-checks": "proxpipe.plugins.terraform_checks",
    "configure-checks": "proxpipe.plugins.configure_checks",
    "runlog": "proxpipe.plugins.runlog",
    "webhook": "proxpipe.plugins.webhook",
}

# Options every plugin has in pipeline.yaml's `plugins:` section.
COMMON_OPTIONS = {
    "enabled": schema.Field(schema.BOOL, "Load this plugin.", default=True),
    "on_error": schema.Field(schema.STR, "What an exception in one of its event hooks does: warn, or fail "
                                         "the run.", default="warn", choices=("warn", "fail")),
}


class Plugins:
    """Loaded plugins, their validated options, and typed calls of every hook."""

    def __init__(self, pm: pluggy.PluginManager, options: Mapping[str, dict], sources: Mapping[str, str]):
        self.pm = pm
        self._options = dict(options)
        self.sources = dict(sources)  # plugin name -> module or entry point, for docs and errors
        self.providers: dict[tuple[str, str], str] = {}  # (what, name) -> plugin that registered it
        self._kinds: dict[str, type] | None = None
        self._checks: list | None = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, section: Any, ctx: schema.Context, where: str = "plugins") -> Plugins:
        """Register the enabled built-in and entry-point plugins, with their options checked."""
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ctx.error(where, f"expected a mapping of plugin names, got {schema.describe(section)}")
        available = _available()
        unknown = sorted(set(section) - set(available))
        if unknown:
            raise ctx.error(f"{where}.{unknown[0]}",
                            f"unknown plugin (installed: {', '.join(sorted(available))})")
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        options, sources = {}, {}
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
            pm.register(plugin, name=name)
        _check_pending(pm)
        return cls(pm, options, sources)

    def options(self, name: str) -> dict:
        """The validated options of one plugin (empty if it is not loaded)."""
        return self._options.get(name, {})

    @property
    def names(self) -> list[str]:
        return list(self._options)

    # ------------------------------------------------------------------ registration hooks

    def stage_kinds(self) -> dict[str, type]:
        """kind name -> Stage class, from every plugin's register_stage_kinds."""
        if self._kinds is None:
            self._kinds = self._collect("register_stage_kinds", "stage kind")
        return self._kinds

    def checks(self) -> list:
        """Every Check contributed through register_checks, in registration order."""
        if self._checks is None:
            self._checks = list(self._collect("register_checks", "check", key=lambda c: c.id).values())
        return self._checks

    def _collect(self, hook: str, what: str, key: Callable | None = None) -> dict:
        found: dict[str, Any] = {}
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            def register(*args, _plugin=impl.plugin_name):
                name, value = (key(args[0]), args[0]) if key else args
                if name in found:
                    raise ConfigError(f"{what} {name!r} is registered twice: by plugin "
                                      f"{self.providers[(what, name)]} and by plugin {_plugin}; "
                                      "disable one in pipeline.yaml")
                found[name] = value
                self.providers[(what, name)] = _plugin
            impl.function(register=register)
        return found

    # ------------------------------------------------------------------ lifecycle events

    def run_started(self, run) -> None:
        self._emit("run_started", run=run)

    def stage_started(self, run, stage) -> None:
        self._emit("stage_started", run=run, stage=stage)

    def stage_skipped(self, run, stage, reason: str) -> None:
        self._emit("stage_skipped", run=run, stage=stage, reason=reason)

    def handoff_written(self, run, stage, path, value: str) -> None:
        self._emit("handoff_written", run=run, stage=stage, path=path, value=value)

    def stage_finished(self, run, stage, duration: float, handoff: str | None, tool_versions: dict) -> None:
        self._emit("stage_finished", run=run, stage=stage, duration=duration, handoff=handoff,
                   tool_versions=tool_versions)

    def stage_failed(self, run, stage, duration: float, message: str) -> None:
        self._emit("stage_failed", run=run, stage=stage, duration=duration, message=message)

    def run_finished(self, run, ok: bool, outcomes: list) -> None:
        self._emit("run_finished", run=run, ok=ok, outcomes=outcomes)

    def docs_context(self, environment) -> dict:
        merged: dict = {}
        for impl in self.pm.hook.docs_context.get_hookimpls():
            extra = self._call(impl, "docs_context", {"environment": environment})
            if extra:
                merged.update(extra)
        return merged

    def _emit(self, hook: str, **kwargs) -> None:
        # Each implementation is called on its own, so one failing plugin cannot silence the others.
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            self._call(impl, hook, kwargs)

    def _call(self, impl, hook: str, kwargs: dict):
        try:
            return impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not end the pipeline by default
            message = f"plugin {impl.plugin_name} failed in {hook}: {type(exc).__name__}: {exc}"
            if self.options(impl.plugin_name).get("on_error") == "fail":
                raise PipelineError(message) from exc
            console.warn(message)
            return None


def _available() -> dict[str, tuple[str, Callable[[], Any]]]:
    """name -> (source, loader) of every built-in and installed plugin, and of the modules named in
    PROXPIPE_PLUGINS (comma-separated; for trying a plugin out without installing it)."""
    found = {name: (module, lambda module=module: importlib.import_module(module))
             for name, module in DEFAULT_PLUGINS.items()}
    for module in filter(None, (m.strip() for m in os.environ.get("PROXPIPE_PLUGINS", "").split(","))):
        found[module.rsplit(".", 1)[-1]] = (module, lambda module=module: importlib.import_module(module))
    for point in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        if point.name in found:
            raise ConfigError(f"plugin {point.name!r} from entry point {point.value} has the name of a "
                              "built-in plugin; rename its entry point")
        found[point.name] = (point.value, point.load)
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
