"""Stage 3, Ansible: wait for the hosts, run the playbook, hand off the play recap in configure.json.

Before the playbook: every inventory host must accept SSH (in parallel, with backoff and a
deadline), then pass the readiness commands (production: `cloud-init status --wait`, so the play
never races cloud-init's apt lock). configure.json is written only when the play succeeded. Secret extra
variables reach the play through a private file (-e @file), never its command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from proxpipe.api import Exclude, Preview, Rollback, Stage, StageJob, ToolSpec, anchored, handoff, inventory
from proxpipe.base import schema
from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError, ToolError
from proxpipe.base.fsutil import sha256_file
from proxpipe.base.schema import Field
from proxpipe.stages import ansiblecfg, galaxy, galaxy_step


def _playbook(path: Path) -> str | None:
    """What is wrong with the playbook file, if it is plainly not a YAML list of plays. (A textual look: the
    YAML parser would cost every run, even a no-op, its start-up; ansible-playbook checks the rest.)"""
    if path.suffix not in (".yml", ".yaml"):
        return f"{path.name} is not an Ansible playbook (a .yml or .yaml file)"
    try:
        lines = [line for line in path.read_text().splitlines()
                 if line.strip() and not line.lstrip().startswith("#") and line.strip() != "---"]
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path.name} cannot be read: {exc}"
    if not lines or not lines[0].startswith("-"):
        return f"{path.name} is not an Ansible playbook (a YAML list of plays)"
    return None


class AnsibleStage(Stage):
    kind = "ansible"
    ACTION = "configure"
    description = "configure the VMs with Ansible"
    consumes = handoff.INVENTORY
    produces = handoff.CONFIGURE
    UPSTREAM_PARAM = {"name": "inventory", "long": "inventory", "env_var": "INVENTORY", "is_path": True,
                      "help": "configure the hosts of this inventory file instead of the provision stage's handoff"}
    CACHE_GLOBS = ("*.retry", ".ansible", "collections/ansible_collections/*/*/tests/output")
    # ansible-playbook can miss a SIGINT that lands while it forks a worker (its handler's KeyboardInterrupt is
    # dropped in a fork hook) and then waits out the task; its handler made the second SIGINT the default (stop).
    INTERRUPT_AGAIN = 5.0
    ROLLBACK_MODES = {"git-ref": "run the playbook as it was at --to GIT_REF against today's inventory"}
    RETRY_PATTERNS = (r"UNREACHABLE!", r"Connection timed out during banner exchange",
                      r"Connection reset by peer", r"Failed to connect to the host via ssh", *galaxy.RETRY_PATTERNS)
    OPTIONS = {
        "playbook": Field(schema.FILE, "The playbook, relative to dir.", required=True, check=_playbook),
        "binary": Field(schema.STR, "The ansible-playbook program.", default="ansible-playbook"),
        "extra_args": Field(schema.LIST, "More arguments for ansible-playbook, e.g. [--diff].",
                            items=Field(schema.STR)),
        "vars": Field(schema.VARS, "Extra variables (-e) of the play; secrets (named like one, or taken from a "
                                   "variable named like one) go in a file only this user can read, removed when "
                                   "the play ends (-e @file)."),
        "config": Field(schema.FILE, "ansible.cfg to use (ANSIBLE_CONFIG), relative to dir. "
                                     "Default: dir/ansible.cfg when it exists."),
        "forks": Field(schema.INT, "Parallel hosts. Default: the number of hosts (at least 5, at most 50).",
                       minimum=1),
        "ssh_wait": Field(schema.MAP, "Waiting until every host accepts SSH.", default={}, fields={
            "deadline": Field(schema.NUMBER, "Seconds to wait for all hosts.", default=300, minimum=1),
            "connect_timeout": Field(schema.NUMBER, "Seconds per connection attempt.", default=5, minimum=0.1),
        }),
        "readiness": Field(schema.LIST, "Commands run on every host over SSH until they succeed, before the "
                                        "playbook. The default waits for cloud-init; its exit code 2 (finished "
                                        "with warnings) counts as ready.",
                           default=["cloud-init status --wait >/dev/null; [ $? -ne 1 ]"],
                           items=Field(schema.STR)),
        "readiness_deadline": Field(schema.NUMBER, "Seconds the readiness commands may take in all.",
                                    default=600, minimum=1),
        "galaxy_requirements": galaxy_step.OPTION,
    }

    @property
    def home(self) -> Path:
        return self.pipeline.state_dir / "ansible"

    def config_file(self) -> Path | None:
        if self.options["config"]:
            return Path(self.options["config"])
        default = self.dir / "ansible.cfg"
        return default if default.is_file() else None

    def control_path_dir(self) -> Path:
        """Where SSH keeps its reusable connections. A socket path must stay under about 100 bytes, which a
        deep checkout exceeds, so the sockets live in a short per-user, per-environment temp directory."""
        digest = hashlib.sha256(str(self.pipeline.state_dir.absolute()).encode()).hexdigest()[:10]
        folder = Path(tempfile.gettempdir()) / f"proxpipe-ssh-{os.getuid()}" / digest
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder

    def requirements(self) -> galaxy.Galaxy:
        return galaxy_step.requirements(self, self.config_file(), str(self.home))

    def required_inputs(self) -> list[Path]:
        return galaxy.requirement_files(self.dir, self.options["galaxy_requirements"])

    def tool_writes(self) -> list[Exclude]:
        return [rule for path, why in ansiblecfg.read(self.config_file()).written()
                for rule in anchored(self.dir, path, why)]

    def tool_env(self, hosts: int) -> dict[str, str]:
        forks = self.options["forks"] or min(max(hosts, 5), 50)
        env = {"ANSIBLE_HOME": str(self.home), "ANSIBLE_LOCAL_TEMP": str(self.home / "tmp"),
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_path_dir()), "ANSIBLE_FORKS": str(forks),
               # the readiness checks' connections, kept open, are Ansible's first ones
               "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%C",
               "ANSIBLE_RETRY_FILES_ENABLED": "false", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "PYTHONUNBUFFERED": "1"}
        config = self.config_file()
        if config is not None:
            env["ANSIBLE_CONFIG"] = str(config)
        return {**env, **self.requirements().env()}

    def tools(self) -> list[ToolSpec]:
        specs = [ToolSpec(self.options["binary"], ("--version",), r"core (\d+\.\d+\.\d+)", "2.15.0",
                          "pip install ansible-core (./doitw installs it into .venv)", "binary"),
                 ToolSpec("ssh", ("-V",), r"OpenSSH_(\d+\.\d+)", "8.0", "apt-get install openssh-client")]
        if self.required_inputs():
            specs.append(galaxy_step.tool(galaxy.beside(self.options["binary"])))
        return specs

    @contextmanager
    def _extra_vars(self) -> Iterator[list[str]]:
        """-e arguments of the `vars`: the plain ones as JSON, the secret ones from a private file (-e @file) that
        is removed when the play ends."""
        plain, secret = self.tool_vars()
        args = ["-e", json.dumps(plain)] if plain else []
        if not secret:
            yield args
            return
        with self.private_vars_file(secret) as path:
            yield [*args, "-e", f"@{path}"]

    # ------------------------------------------------------------------ run

    def wait_for_hosts(self, hosts: list[inventory.Host]) -> None:
        from proxpipe.api import sshwait  # threads and sockets: only when the stage runs

        wait = self.options["ssh_wait"]
        sshwait.wait_for_ssh(hosts, wait["deadline"], wait["connect_timeout"])
        sshwait.wait_until_ready(hosts, self.options["readiness"], self.options["readiness_deadline"],
                                 wait["connect_timeout"], control_dir=str(self.control_path_dir()))

    def run(self, upstream: Any, job: StageJob) -> dict:
        from proxpipe.stages.ansible_output import parse_recap  # only when a play ran

        started = time.monotonic()
        digests = self.input_digests()  # before the play, which may write into dir (e.g. a fact cache)
        binary, hosts = self._prepare(upstream, job)
        playbook, result = self._play(job, binary, hosts)
        recap = parse_recap(result.output)
        if not recap:
            raise ToolError("ansible-playbook succeeded but printed no PLAY RECAP; did the play match no "
                            "host? (check the playbook's hosts: against the inventory's groups)",
                            result.output.splitlines()[-10:], str(job.runner.log_path))
        job.notes["changed"] = sum(r.get("changed", 0) for r in recap.values())
        inventory_file = job.upstream_path
        return {"playbook": playbook, "recap": recap, "duration": round(time.monotonic() - started, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inventory": str(inventory_file),
                "inventory_sha256": sha256_file(inventory_file), "inputs": digests}

    def preview(self, upstream: Any, job: StageJob, reasons: list[str]) -> Preview:
        """`ansible-playbook --check --diff` against the current hosts: the tasks that would change, per host."""
        from proxpipe.stages.ansible_output import check_changes  # only when a play ran

        binary, hosts = self._prepare(upstream, job)
        _playbook, result = self._play(job, binary, hosts, ["--check", "--diff"], "ansible-playbook --check")
        changes = check_changes(result.output)
        count = len({host for host, _task in changes})
        summary = (f"{len(changes)} task{'s' if len(changes) != 1 else ''} would change on {count} "
                   f"host{'s' if count != 1 else ''}") if changes else "no task would change"
        return Preview(bool(changes), summary, tuple(f"{host}: {task}" for host, task in changes), False)

    def rollback(self, mode: str, to: str, upstream: Any, job: StageJob) -> Rollback:
        """Run the playbook as it was at git ref `to` (from a temporary worktree) against today's inventory; the
        stage is stale afterwards, so the next deploy runs today's playbook again."""
        if not to:
            raise PipelineError("rollback of configure needs --to GIT_REF, the commit whose playbook to run")
        root = self.pipeline.root
        top = _git(root, "rev-parse", "--show-toplevel")
        if top.returncode != 0:
            raise PipelineError(f"{root} is not a git repository; configure rollback runs the playbook of a git ref")
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{to}^{{commit}}")
        if commit.returncode != 0:
            raise PipelineError(f"--to {to}: unknown git ref (see `git log`)")
        sha = commit.stdout.strip()
        relative = Path(self.dir).resolve().relative_to(Path(top.stdout.strip()).resolve())
        with tempfile.TemporaryDirectory(prefix="proxpipe-rollback-") as scratch:
            tree = Path(scratch) / "tree"
            added = _git(root, "worktree", "add", "--detach", "--force", str(tree), sha)
            if added.returncode != 0:
                raise PipelineError(f"git worktree add {to} failed: {added.stderr.strip().splitlines()[-1:]}")
            try:
                value = self._run_as_of(tree / relative, to, sha, upstream, job)
            finally:
                _git(root, "worktree", "remove", "--force", str(tree))
                shutil.rmtree(tree, ignore_errors=True)
        return Rollback(value, f"ran the playbook as of {to} ({sha[:12]}) against today's inventory", current=False,
                        notes={"git_ref": to, "git": sha[:12], "message": f"ran the playbook as of {to}"})

    def _run_as_of(self, old_dir: Path, ref: str, sha: str, upstream: Any, job: StageJob) -> dict:
        if not old_dir.is_dir():
            raise PipelineError(f"--to {ref}: {old_dir.name} does not exist at that ref")
        options = {key: (old_dir / Path(value).relative_to(self.dir) if isinstance(value, Path)
                         and Path(value).is_relative_to(self.dir) else value) for key, value in self.options.items()}
        if not Path(options["playbook"]).is_file():
            raise PipelineError(f"--to {ref}: the playbook {Path(options['playbook']).name} does not exist at that ref")
        console.info(f"↶ {self.name}: running the playbook as of {ref} ({sha[:12]}) against today's inventory")
        old = type(self)(self.config._replace(dir=old_dir, options=options), self.pipeline)
        job.runner.cwd = old_dir
        return old.run(upstream, job)

    def drift(self, upstream: Any, job: StageJob) -> list[Any]:
        """`ansible-playbook --check --diff`: the tasks that would change which hosts (a file edited by hand, a
        package removed), with their diffs; hosts a stage before found down (job.options["skip_hosts"]) are left
        out. PipelineError when a host could not be checked."""
        from proxpipe.stages.ansible_output import check_drift, check_problem  # only when a play ran

        binary, hosts = self._prepare(upstream, job)
        limit = ["--limit", ",".join(h.name for h in hosts)] if job.options.get("skip_hosts") else []
        if not hosts:
            return []
        _playbook, result = self._play(job, binary, hosts, ["--check", "--diff", *limit], "ansible-playbook --check",
                                       check=False)
        problem = check_problem(result.output, result.returncode)
        if problem:
            raise ToolError(f"{self.name}: {problem}", result.output.splitlines()[-10:], str(job.runner.log_path))
        return check_drift(result.output)

    def _prepare(self, upstream: Any, job: StageJob) -> tuple[str, list[inventory.Host]]:
        """The program, and the hosts once they answer; the requirements install meanwhile."""
        from proxpipe.api import toolrunner as tools  # only when a tool runs

        binary = tools.require(self.options["binary"], self.pipeline.root,
                               f"pip install ansible-core, or set {self.config.where}.binary")
        self.note_version(job, binary, "ansible")
        skip = set(job.options.get("skip_hosts") or ())  # (drift) hosts a stage before found down
        hosts = [host for host in inventory.parse(upstream).values() if host.name not in skip]
        from concurrent.futures import ThreadPoolExecutor

        # The requirements install while the hosts are awaited; a failed install is the error to show.
        requirements, galaxy_program = self.requirements(), galaxy.beside(binary)
        with ThreadPoolExecutor(max_workers=1) as pool:
            installing = pool.submit(galaxy_step.install, self, job, requirements, galaxy_program, self.home)
            try:
                self.wait_for_hosts(hosts)
            finally:
                installing.result()
        return binary, hosts

    def _play(self, job: StageJob, binary: str, hosts: list, extra: list[str] = (), step: str = "ansible-playbook",
              check: bool = True):
        playbook = os.path.relpath(self.options["playbook"], self.dir)
        with self._extra_vars() as variables:
            result = job.runner.run([binary, "-i", str(job.upstream_path), *variables, playbook,
                                     *(self.options["extra_args"] or []), *extra], step, env=self.tool_env(len(hosts)),
                                    check=check)
        return playbook, result


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
