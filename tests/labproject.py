"""A throwaway copy of the project with the local lab, for end-to-end tests on the real tools.

Each project gets its own loopback addresses, state directory and lab server, and wraps packer,
terraform, ansible-playbook, ansible, ansible-galaxy and ssh in shims that log every call, so tests can count
the tool processes a command started. git calls are logged apart (git-calls.log): the pipeline itself asks
git what it ignores. traced() runs doit under strace, which sees every program started below it, the tools'
own children included, with its command line.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TOOLS = ["packer", "terraform", "ansible-playbook", "ansible", "ansible-galaxy", "ssh"]
# 127.0.10.x is the user's own lab; each test project takes its own 127.<a>.<b>.x block, a >= 100.
_counter = itertools.count((os.getpid() % 97) * 250)


def next_block() -> str:
    """A fresh "127.a.b" prefix for one project's lab addresses: one whose API port is free (another test run, a
    benchmark or a worktree's lab may hold the block its pid picked)."""
    while True:
        n = next(_counter) % (100 * 250)
        block = f"127.{100 + n // 250}.{n % 250}"
        with socket.socket() as probe:
            if probe.connect_ex((f"{block}.1", 8006)) != 0:
                return block



def answers_ssh(address: str) -> bool:
    """An sshd answers on port 22 of address (a lab VM's guest is up)."""
    try:
        with socket.create_connection((address, 22), timeout=2) as conn:
            return conn.recv(4) == b"SSH-"
    except OSError:
        return False


def wait_for(condition, what: str, timeout: float = 120) -> None:
    """Poll condition() until it is true; fail naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")

def _real(tool: str) -> str:
    if tool == "terraform":
        return str(REPO / ".tools" / "bin" / "terraform")
    found = shutil.which(tool, path=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))
    assert found, f"{tool} is not installed; run ./doitw test, which installs it"
    return found


class LabProject:
    def __init__(self, root: Path, vms: int = 1, extra: dict | None = None, shims: bool = True):
        self.root = root
        self.block = next_block()
        self.address = f"{self.block}.1"
        self.calls = root / "tool-calls.log"
        self.git_log = root / "git-calls.log"
        self.shims = root / "shims"
        self.extra_env: dict[str, str] = {}  # for every command of this project
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dodo.py", root / "dodo.py")
        # Not what the checkout's own runs left (`./doitw deploy` before `./doitw test`): state, manifests, and the
        # fact cache, which a test project's git would otherwise track.
        shutil.copytree(REPO / "lab", root / "lab", ignore=shutil.ignore_patterns(
            "*.py", "__pycache__", ".terraform", "*.tfstate*", "manifest.json", ".ansible-cache"))
        os.symlink(REPO / ".tools", root / ".tools")
        if shims:
            self._shims()
        self.config = self.default_config(vms, shims)
        if extra:
            _merge(self.config, extra)
        self.write_config()
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)

    # ------------------------------------------------------------------ setup

    def _shims(self) -> None:
        self.shims.mkdir()
        for tool, log in [(tool, self.calls) for tool in TOOLS] + [("git", self.git_log)]:
            shim = self.shims / tool
            shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexec "{_real(tool)}" "$@"\n')
            shim.chmod(0o755)

    def default_config(self, vms: int, shims: bool = True) -> dict:
        config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
        config["environments"].pop("production")
        config["environments"].pop("lab-shared")  # share_state() adds it back, on this project's own addresses
        config["environments"].pop("lab-graph")  # tests/e2e/test_graph.py adds it back, on its own addresses
        lab = config["environments"]["lab"]
        lab["lab"]["address"] = self.address
        lab["lab"]["boot_seconds"] = 0.2
        lab["lab"]["idle_minutes"] = 20
        lab["proxmox"]["url"] = f"https://{self.address}:8006"
        # The tests change the cluster behind the pipeline's back (fault injection, deleted VMs) and expect the
        # next command to see it at once; test_incremental checks the cache of the up-to-date checks itself.
        lab["proxmox"]["check_cache"] = 0
        provision = lab["stages"]["provision"]
        if shims:
            provision["binary"] = "terraform"  # through the shim on PATH
        provision["vars"]["vms"] = {f"jump-{i:02d}": {"vm_id": 200 + i, "address": f"{self.block}.{10 + i}"}
                                    for i in range(1, vms + 1)}
        config["plugins"] = {}
        return config

    def write_config(self) -> None:
        (self.root / "pipeline.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    @property
    def env(self) -> dict:
        return self.config["environments"]["lab"]

    # ------------------------------------------------------------------ shared state: two checkouts of one project

    def share_state(self, lab_dir: Path, port: int = 5433) -> None:
        """Add the environment lab-shared: this project's lab kept in lab_dir (where any checkout finds it), with a
        PostgreSQL of its own for the state, and a Terraform project that declares the pg backend."""
        shared = copy.deepcopy(self.env)
        shared["description"] = "the lab with shared state"
        shared["lab"].update(dir=str(lab_dir), postgres=True)
        shared["state"] = {"url": f"postgresql://proxpipe:${{LAB_PG_PASSWORD}}@{self.address}:{port}/proxpipe"}
        shared["stages"]["provision"]["dir"] = "lab/terraform-shared"
        shared["stages"]["provision"]["vars"]["lab_dir"] = str(lab_dir)
        self.config["environments"]["lab-shared"] = shared
        self.write_config()

    def commit(self) -> None:
        (self.root / ".gitignore").write_text("/shims/\n/tool-calls.log\n/git-calls.log\n/.pipeline/\n/.tools\n"
                                             "manifest.json\n")
        subprocess.run(["git", "add", "-A"], cwd=self.root, check=True)
        subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m",
                        "the project"], cwd=self.root, check=True)

    def clone(self, root: Path) -> LabProject:
        """A second checkout of this project (git clone of what is committed), with its own shims and tool log."""
        subprocess.run(["git", "clone", "-q", str(self.root), str(root)], check=True)
        other = LabProject.__new__(LabProject)
        other.root, other.block, other.address = root, self.block, self.address
        other.calls, other.shims, other.extra_env = root / "tool-calls.log", root / "shims", dict(self.extra_env)
        other.git_log = root / "git-calls.log"
        os.symlink(REPO / ".tools", root / ".tools")
        if self.shims.exists():
            other._shims()
        other.config = yaml.safe_load((root / "pipeline.yaml").read_text())
        return other

    # ------------------------------------------------------------------ running

    def environ(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "TEMPLATE_ID", "INVENTORY"))}
        env["PATH"] = os.pathsep.join(([str(self.shims)] if self.shims.exists() else [])
                                      + [str(VENV_BIN), env.get("PATH", "")])
        env["NO_COLOR"] = "1"
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def doit(self, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "doit"), *args], cwd=self.root, env=self.environ(env),
                              capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        """doit in the background (for a second command, or a signal, while it runs)."""
        return subprocess.Popen([str(VENV_BIN / "doit"), *args], cwd=self.root, env=self.environ(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ok(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        result = self.doit(*args, **kwargs)
        assert result.returncode == 0, (f"doit {' '.join(args)} failed ({result.returncode}):\n"
                                        f"{result.stdout}\n{result.stderr}")
        return result

    def traced(self, *args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
        """doit under `strace -f -e execve`, each call's trace in traces/. Start the lab before (with an untraced
        command): strace's seccomp filter, left in a process it detached from, makes that process's later
        execve fail, and the lab server starts an sshd per VM long after the command that started it."""
        strace = shutil.which("strace")
        assert strace, "strace is not installed; ./doitw installs it (Debian package strace)"
        traces = self.root / "traces"
        traces.mkdir(exist_ok=True)
        log, rc = traces / f"{len(list(traces.glob('*.log')))}.log", traces / "rc"
        rc.unlink(missing_ok=True)
        # When doit is done, stop strace (-I1 lets a signal stop it): it would wait for the ssh connections that
        # Ansible keeps open for a minute.
        script = f'"{VENV_BIN / "doit"}" "$@"; echo $? > "{rc}"; kill -TERM $PPID'
        done = subprocess.run([strace, "-I1", "-f", "--seccomp-bpf", "-qq", "-e", "trace=execve,execveat",
                               "-e", "signal=none", "-s", "1000000", "-o", str(log), "--", "sh", "-c", script,
                               "sh", *args], cwd=self.root, env=self.environ(env), capture_output=True, text=True,
                              timeout=timeout)
        assert rc.exists(), f"doit {' '.join(args)} did not finish under strace:\n{done.stdout}\n{done.stderr}"
        return subprocess.CompletedProcess(args, int(rc.read_text()), done.stdout, done.stderr)

    def executed(self) -> list[str]:
        """The execve lines of every traced call: a program and its command line each."""
        return [line for log in sorted((self.root / "traces").glob("*.log"))
                for line in log.read_text(errors="replace").splitlines() if " execve" in line]

    def tool_calls(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def git_calls(self) -> list[str]:
        return self.git_log.read_text().splitlines() if self.git_log.exists() else []

    def reset_calls(self) -> None:
        self.calls.unlink(missing_ok=True)
        self.git_log.unlink(missing_ok=True)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> Path:
        return self.root / ".pipeline" / "lab"

    def handoff(self, name: str) -> str:
        return (self.state / name).read_text()

    def history(self) -> list[dict]:
        path = self.state / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def admin(self, path: str, body: dict | None = None, environment: str = "lab"):
        from proxpipe.engine.pipeline import load_config as load
        from proxpipe.lab import control

        env = load(self.root / "pipeline.yaml", environ=self.extra_env).environment(environment)
        return control.admin(env, path, body)

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.root / relative
        text = path.read_text()
        assert old in text, f"{old!r} not in {relative}"
        path.write_text(text.replace(old, new, 1))

    def append(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.write_text(path.read_text() + textwrap.dedent(text))

    def stop(self) -> None:
        """Stop the project's lab, even when its pipeline.yaml no longer loads."""
        if self.doit("lab-stop", timeout=60).returncode == 0:
            return
        pid_file = self.state / "fake-pve" / "server.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def stages_run(result: subprocess.CompletedProcess) -> list[str]:
    """The stages a doit run printed as run (▶ lines)."""
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("▶ ")]


def stages_skipped(result: subprocess.CompletedProcess) -> list[str]:
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("· ")]
