"""Starting, checking and stopping the lab's services from the pipeline (pid files under the state dir).

`ensure()` is called whenever the pipeline needs the lab's Proxmox API; it starts the server when it
is not running, or restarts it when it does not accept the configured credentials. It also keeps the lab's
stand-in for a git server (gitserver) up to date.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from proxpipe.base import extras
from proxpipe.base.errors import PipelineError, ProxmoxError
from proxpipe.base.fsutil import atomic_write, pid_alive
from proxpipe.base.secrets import credentials_digest, same_credentials
from proxpipe.domain.config import Environment
from proxpipe.domain.proxmox import Proxmox
from proxpipe.lab import gitserver
from proxpipe.lab.settings import lab_config

START_TIMEOUT = 20.0


def home(env: Environment) -> Path:
    """The lab's own folder: its services' files, SSH keys and VMs (lab.dir, shared by the checkouts that name it;
    by default the environment's state directory)."""
    return lab_config(env).dir or env.state_dir


def runtime_dir(env: Environment) -> Path:
    return home(env) / "fake-pve"


def ca_file(env: Environment) -> Path:
    return runtime_dir(env) / "fakepve.crt"


def server_pid(env: Environment) -> int | None:
    try:
        pid = int((runtime_dir(env) / "server.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def ensure(env: Environment) -> None:
    """The lab's Proxmox stand-in is running and accepts the environment's credentials."""
    extras.require("lab", f"environment {env.name} (the local lab)")
    folder = runtime_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        gitserver.ensure(env)
        if server_pid(env) is not None:
            if same_credentials(runtime_dir(env) / "credentials", *_credentials(env)):
                return  # running with these credentials; no need to ask it over the network
            stop(env)  # it was started with other credentials
        _start(env)


def _start(env: Environment) -> None:
    lab, proxmox = lab_config(env), env.proxmox
    folder = runtime_dir(env)
    child_env = dict(os.environ)
    if proxmox.token_id:
        child_env.update(LAB_PVE_TOKEN_ID=proxmox.token_id, LAB_PVE_TOKEN_SECRET=proxmox.token_secret.reveal())
    else:
        child_env.update(LAB_PVE_USER=proxmox.user, LAB_PVE_PASSWORD=proxmox.password.reveal())
    argv = [sys.executable, "-m", "proxpipe.lab.server", "--state-dir", str(home(env)), "--address", lab.address,
            "--port", str(lab.port), "--boot-seconds", str(lab.boot_seconds), "--idle-minutes",
            str(lab.idle_minutes), "--base-vmid", str(lab.base_template_id), "--base-name", lab.base_template_name]
    (folder / "server.pid").unlink(missing_ok=True)
    atomic_write(folder / "credentials", credentials_digest(*_credentials(env)), 0o600)
    with open(folder / "server.log", "a") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=child_env, start_new_session=True, cwd=env.root, umask=0o077)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if server_pid(env) is not None and _accepts(env):
            return
        time.sleep(0.05)
    tail = (folder / "server.log").read_text().strip().splitlines()[-1:] or ["no output"]
    raise PipelineError(f"the lab's Proxmox stand-in did not start on {lab.address}:{lab.port}: {tail[0]} "
                        f"(see {os.path.relpath(folder / 'server.log')})")


def stop(env: Environment, verbose: bool = False) -> bool:
    """Stop the lab server (it stops the VMs' sshd); True if one was running."""
    pid = server_pid(env)
    if pid is None:
        if verbose:
            print(f"the lab of environment {env.name} is not running")
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    if verbose:
        print(f"stopped the lab of environment {env.name} (pid {pid}) and its VMs' sshd")
    return True


def _credentials(env: Environment) -> tuple[str, str]:
    """Who the lab must accept, and their secret."""
    proxmox = env.proxmox
    if proxmox.token_id:
        return proxmox.token_id, proxmox.token_secret.reveal()
    return proxmox.user, proxmox.password.reveal()


def _client(env: Environment, attempts: int = 1) -> Proxmox:
    """The pipeline's own Proxmox client, for the lab's stand-in: its CA, and few attempts (the caller retries)."""
    from proxpipe.domain.config import Retry

    cfg = env.proxmox._replace(ca_file=ca_file(env), timeout=3.0, retry=Retry(attempts, 5.0))
    return Proxmox(cfg, notify=lambda text: None, prefer_light=True)


def _accepts(env: Environment, tries: int = 3) -> bool:
    """True when the API answers with the environment's credentials. A refusal is final; no answer is tried
    again a few times (the lab may be injecting faults)."""
    for attempt in range(tries):
        try:
            _client(env).version()
            return True
        except ProxmoxError as exc:
            if exc.refused:
                return False
        time.sleep(0.1 * (attempt + 1))
    return False


def admin(env: Environment, path: str, body: dict | None = None) -> object:
    """Call the lab's control endpoint (/_lab/...): faults, VM edits, state. Used by tests and `pipeline-lab`."""
    from proxpipe.domain.pveapi import Client, HTTPStatus

    secret = (runtime_dir(env) / "admin.secret").read_text().strip()
    # The control endpoint checks the admin secret alone, whatever credentials the environment logs in with.
    transport = Client(env.proxmox.url, "lab-admin=", str(ca_file(env)), True, 10)
    try:
        return transport.send("POST", f"{transport.prefix}/_lab/{path}", json.dumps(body or {}).encode(),
                              {"X-Lab-Admin": secret, "Content-Type": "application/json"})
    except HTTPStatus as exc:
        raise PipelineError(f"lab control {path}: {exc.body or exc.reason}") from None
