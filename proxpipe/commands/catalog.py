"""Every command the `proxpipe` command line knows, from the declarations themselves: the registered ones (proxpipe's
and the plugins', through register_commands), the stages of the chosen environment, and doit's own. Without a
pipeline.yaml (or with one that cannot be loaded) the built-in and installed plugins' commands, and why no stages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.api.command import Command
from proxpipe.base.errors import ConfigError, PipelineError
from proxpipe.domain.config import DEFAULT_FILE

if TYPE_CHECKING:
    from proxpipe.engine.pipeline import Pipeline

GROUPS = ("run", "look", "stages", "recover", "set up", "lab", "other")
# doit's own commands: reachable (`proxpipe list`, `proxpipe doit ...`), listed only by `proxpipe help --all`.
DOIT_COMMANDS = ("run", "list", "info", "clean", "forget", "ignore", "dumpdb", "strace", "tabcompletion",
                 "reset-dep")


class Catalog:
    def __init__(self, commands: dict[str, Command], pipeline: Pipeline | None, problem: str = "",
                 known_environments: tuple[str, ...] = ()):
        self.commands = commands  # by name: registered ones (standalone and hidden included), then the stages
        self.pipeline = pipeline
        self.problem = problem  # why there is no pipeline: no pipeline.yaml here, or what is wrong in it
        self.known_environments = known_environments  # pipeline.yaml's, when no environment was chosen

    @property
    def tasks(self) -> dict[str, Command]:
        """The commands doit runs (all but the standalone ones)."""
        return {name: c for name, c in self.commands.items() if not c.standalone}

    @property
    def standalone(self) -> tuple[str, ...]:
        return tuple(name for name, c in self.commands.items() if c.standalone)

    def visible(self) -> list[Command]:
        return [c for c in self.commands.values() if not c.hidden]

    def grouped(self) -> list[tuple[str, list[Command]]]:
        """(group, its visible commands) in the order of GROUPS, empty groups left out."""
        visible = self.visible()
        order = [*GROUPS, *sorted({c.group for c in visible} - set(GROUPS))]
        return [(group, [c for c in visible if c.group == group]) for group in order
                if any(c.group == group for c in visible)]

    def names(self) -> list[str]:
        """Every name a command line may start with."""
        return [*self.commands, "doit", *DOIT_COMMANDS]

    @property
    def environment(self) -> str:
        return self.pipeline.env.name if self.pipeline is not None else ""

    @property
    def default_environment(self) -> str:
        """The environment used without env= (and PIPELINE_ENV), when there is a pipeline."""
        if self.pipeline is None:
            return ""
        config = self.pipeline.config
        return config.default_environment or (next(iter(config.environments)) if len(config.environments) == 1
                                              else "")

    @property
    def environments(self) -> list[str]:
        return list(self.pipeline.config.environments) if self.pipeline is not None else list(self.known_environments)


def of_pipeline(pipeline: Pipeline) -> Catalog:
    from proxpipe.commands.deploy import stage_commands

    registered = pipeline.plugins.commands()
    return Catalog({**registered, **{c.name: c for c in stage_commands(pipeline)}}, pipeline)


def load(path: str | Path = DEFAULT_FILE, env_name: str | None = None) -> Catalog:
    """The catalog of the pipeline at path (loaded without writing any file), else of proxpipe alone."""
    from proxpipe.engine.pipeline import Pipeline, load_config

    try:
        config = load_config(path, write_cache=False)
    except PipelineError as exc:
        return without_pipeline(str(exc) if Path(path).exists() else
                                f"no {Path(path).name} in {Path(path).absolute().parent} (`proxpipe init` writes one; "
                                "each of its stages is a command)")
    try:
        environment = config.environment(env_name)
    except PipelineError as exc:  # no default environment, say: the plugins' commands, and the environments
        return Catalog(dict(config.plugins.commands()), None, str(exc), tuple(config.environments))
    try:
        return of_pipeline(Pipeline(config, environment))
    except PipelineError as exc:
        return Catalog(dict(config.plugins.commands()), None, str(exc), tuple(config.environments))


def without_pipeline(problem: str) -> Catalog:
    import importlib

    from proxpipe.base import schema
    from proxpipe.engine.plugin_manager import INTERNAL_PLUGINS, Plugins

    try:
        plugins = Plugins.load({}, schema.Context(DEFAULT_FILE, Path.cwd()))
    except ConfigError as exc:  # an installed plugin that fails to load: the built-in commands alone
        found: dict[str, Command] = {}
        importlib.import_module(INTERNAL_PLUGINS["commands"]).register_commands(
            lambda command: found.setdefault(command.name, command))
        return Catalog(found, None, f"{problem}; {exc}")
    return Catalog(dict(plugins.commands()), None, problem)
