"""The Pipeline: what one process knows about the chosen environment, built once and shared."""

from __future__ import annotations

import atexit
import os
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.base.digests import DigestCache
from proxpipe.base.errors import ConfigError, PipelineError
from proxpipe.base.events import RunInfo, StageInfo, StageOutcome
from proxpipe.base.fsutil import remove_stale_temps
from proxpipe.base.ids import new_id
from proxpipe.domain import config as config_mod
from proxpipe.domain.gitrepo import head_commit
from proxpipe.domain.graph import Graph
from proxpipe.domain.history import History
from proxpipe.domain.state import StateStore, open_store
from proxpipe.engine.handoffs import Handoffs

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.domain.proxmox import Proxmox
    from proxpipe.engine.plugin_manager import Plugins


class Pipeline:
    def __init__(self, config: config_mod.PipelineConfig, env: config_mod.Environment):
        self.config = config
        self.env = env
        self.plugins: Plugins = config.plugins  # type: ignore[assignment] - the manager load_config() gave it
        self.root = env.root
        self.state_dir = env.state_dir
        self.store: StateStore = open_store(self.state_dir, env, lambda state: self.plugins.state_endpoint(env, state))
        self.history = History(self.store)
        self.handoffs = Handoffs(self.store)
        self._stages: list[Stage] | None = None
        self._proxmox: Proxmox | None = None
        self.run: RunInfo | None = None
        self.wait_lock = _seconds(os.environ.get("PROXPIPE_WAIT_LOCK", ""))  # or --wait-lock, set by the loader
        self.outcomes: list[StageOutcome] = []

    @classmethod
    def load(cls, path: str | Path = config_mod.DEFAULT_FILE, env_name: str | None = None,
             environ: dict[str, str] | None = None, write_cache: bool = True) -> Pipeline:
        cfg = load_config(path, environ, write_cache)
        return cls(cfg, cfg.environment(env_name))

    # ------------------------------------------------------------------ stages

    @property
    def stages(self) -> list[Stage]:
        if self._stages is None:
            kinds = self.plugins.stage_kinds()
            self._stages = [kinds[sc.kind](sc, self) for sc in self.env.stages]
        return self._stages

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        self.env.stage(name)  # raises the ConfigError that lists the stages
        raise AssertionError(name)

    @cached_property
    def graph(self) -> Graph:
        """The stages' needs (proxpipe.domain.graph); stages are by name, so a stand-in (rollback's playbook as of a
        git ref) sits in its stage's place."""
        kinds = self.plugins.stage_kinds()
        return Graph({sc.name: sc.needs for sc in self.env.stages}, {sc.name: kinds[sc.kind] for sc in self.env.stages})

    def needs(self, stage: Stage) -> list[Stage]:
        return [self.stage(name) for name in self.graph.needs[stage.name]]

    def sources(self, stage: Stage) -> list[Stage]:
        """The stages whose handoffs this one reads."""
        return [self.stage(name) for name in self.graph.sources(stage.name)]

    def upstream(self, stage: Stage) -> Stage | None:
        """The one stage whose handoff this one reads (the first, when it reads several); None when it reads none."""
        return next(iter(self.sources(stage)), None)

    def downstream(self, stage: Stage, inclusive: bool = False) -> list[Stage]:
        """The stages that need `stage`, directly or not, in order (with `stage` itself first when inclusive)."""
        return [self.stage(name) for name in ([stage.name] if inclusive else []) + self.graph.descendants(stage.name)]

    def producers(self, kind_name: str) -> list[Stage]:
        """The stages that hand off this kind (template_id, inventory, configure), in order."""
        return [s for s in self.stages if s.produces.name == kind_name]

    def relative(self, path: Path | str) -> str:
        """path as messages and docs show it: relative to the project."""
        try:
            return os.path.relpath(path, self.root)
        except ValueError:
            return str(path)

    def info(self, stage: Stage) -> StageInfo:
        return StageInfo(stage.name, stage.kind, stage.dir, self.handoffs.path(stage))

    # ------------------------------------------------------------------ Proxmox

    @property
    def proxmox(self) -> Proxmox | None:
        """The API client, or None when the environment has no Proxmox configured. A plugin that provides the API
        (the local lab) is asked when the API is first used, through the proxmox_endpoint hook."""
        if self.env.proxmox is None:
            return None
        if self._proxmox is None:
            from proxpipe.domain.proxmox import Proxmox

            self._proxmox = Proxmox(self.env.proxmox, cache_file=self.cluster_cache,
                                    endpoint=lambda cfg: self.plugins.proxmox_endpoint(self.env, cfg))
        return self._proxmox

    @property
    def connected_proxmox(self) -> Proxmox | None:
        """The API client if this command already needed it (status asks the cluster no more than its checks did:
        it never starts the lab's stand-in for that alone)."""
        return self._proxmox

    @cached_property
    def digests(self) -> DigestCache:
        """The input files' sha256, kept between runs while their stat() is unchanged."""
        return DigestCache(self.state_dir / "cache" / "input-digests.json")

    @property
    def cluster_cache(self) -> Path:
        """The cluster's VM list as the last command saw it (see ProxmoxConfig.check_cache)."""
        return self.state_dir / "cache" / "cluster-vms.json"

    def cluster_changed(self) -> None:
        """A tool ran that may have changed the cluster: the next up-to-date check asks the API afresh."""
        if self._proxmox is not None:
            self._proxmox.forget_answers()  # its cache file is cluster_cache
        else:
            self.cluster_cache.unlink(missing_ok=True)

    def proxmox_tool_env(self) -> dict[str, str]:
        """The API's address and credentials for tools, in the variables their Proxmox plugins read."""
        client = self.proxmox
        if client is None:
            return {}
        from proxpipe.domain.proxmox import tool_env

        return tool_env(client.cfg)

    def require_proxmox(self, why: str) -> Proxmox:
        client = self.proxmox
        if client is None:
            raise ConfigError(f"{self.env.file}: environments.{self.env.name}.proxmox: missing; needed to {why}")
        return client

    # ------------------------------------------------------------------ runs

    def prepare_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.state_dir)

    def start_run(self, command: str) -> RunInfo:
        """The current run, created (and announced to plugins) on first use."""
        if self.run is None:
            self.prepare_state_dir()
            run_id = new_id()
            self.run = RunInfo(run_id, self.env.name, command, time.time(), self.state_dir,
                               self.state_dir / "logs" / run_id, _options=self.plugins.options, store=self.store)
            self.plugins.run_started(self.run)
            atexit.register(self.finish_run)  # when doit runs with another reporter than ours
        return self.run

    def finish_run(self) -> None:
        if self.run is None or self.run.finished is not None:
            return
        self.run.finished = time.time()
        order = {name: index for index, name in enumerate(self.graph.order())}
        self.outcomes.sort(key=lambda o: order.get(o.name, len(order)))  # parallel stages end in any order
        ok = (not any(o.status in ("failed", "interrupted", "not run") for o in self.outcomes)
              and not self.run.interrupted)
        try:
            self.plugins.run_finished(self.run, ok, list(self.outcomes))
        except PipelineError as exc:  # a plugin whose on_error is fail
            from proxpipe.base.console import console

            console.error(str(exc))
            raise SystemExit(1) from None

    def lock(self, command: str) -> None:
        """Take the environment's lock for the rest of this process (waiting --wait-lock seconds for another run)."""
        self.store.acquire(command, wait=self.wait_lock)
        atexit.register(self.store.release)

    def interrupted(self, signal_name: str) -> None:
        """The run was interrupted (Ctrl-C, SIGTERM): recorded as such; the exit code stays the interrupt's."""
        self.run.interrupted = signal_name
        try:
            self.finish_run()
        except SystemExit:  # a plugin whose on_error is fail
            pass

    def record(self, stage: Stage, action: str, **fields) -> dict:
        """Append one history line about `stage` in the current run (fields may override any key)."""
        return self.history.append({"run": self.run.id if self.run else None, "stage": stage.name,
                                    "kind": stage.kind, "action": action, "git": self.git_commit(), **fields})

    def git_commit(self) -> str | None:
        """The checked-out commit, read from .git without starting a process."""
        return head_commit(self.root)


def _seconds(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        return 0.0


def load_config(path: str | Path = config_mod.DEFAULT_FILE, environ: dict[str, str] | None = None,
                write_cache: bool = True) -> config_mod.PipelineConfig:
    """pipeline.yaml with its plugins loaded: their stage kinds and environment keys are checked with it."""
    from .plugin_manager import Plugins

    return config_mod.load(path, environ, plugins=Plugins.load, write_cache=write_cache)
