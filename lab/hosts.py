"""Lab VMs as SSH hosts: one OpenSSH server per running VM, on the VM's own loopback address.

Everything lives under the lab's state directory: keys in ssh/, and per VM a folder vms/<vmid>/
with the sshd configuration, pid file, log, the `booted` marker and root/, the VM's "filesystem"
that the lab playbook writes into. Nothing outside the repository is changed (but /run/sshd, the
directory a root sshd insists on).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from proxpipe.base.fsutil import atomic_write, pid_alive


class LabKeys:
    """The lab's SSH keys: one host key for every lab VM, one client key for the pipeline."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir) / "ssh"
        self.host_key = self.dir / "host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        for key in (self.host_key, self.client_key):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "proxpipe-lab", "-f",
                                str(key)], check=True, stdin=subprocess.DEVNULL)
        atomic_write(self.authorized_keys, Path(f"{self.client_key}.pub").read_text(), 0o600)
        host_pub = " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])
        atomic_write(self.known_hosts, f"127.* {host_pub}\n", 0o600)


def sshd_program() -> str:
    found = shutil.which("sshd", path=os.pathsep.join(["/usr/sbin", "/sbin", os.environ.get("PATH", "")]))
    if not found:
        raise RuntimeError("sshd not found: install Debian's openssh-server (./doitw does)")
    return found


def _descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []
    return [grand for child in children for grand in (child, *_descendants(child))]


class LabHost:
    """The SSH server of one lab VM."""

    def __init__(self, state_dir: Path, vmid: int, keys: LabKeys):
        self.vmid = vmid
        self.dir = Path(state_dir) / "vms" / str(vmid)
        self.root = self.dir / "root"
        self.keys = keys
        self.pid_file = self.dir / "sshd.pid"
        self.booted_file = self.root / "booted"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, address: str, port: int = 22) -> None:
        if self.running():
            return
        (self.root / "etc").mkdir(parents=True, exist_ok=True)  # the image's /etc
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        config = self.dir / "sshd_config"
        atomic_write(config, "\n".join([
            f"ListenAddress {address}:{port}",
            f"HostKey {self.keys.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.keys.authorized_keys}",
            f"AllowUsers {getpass.getuser()}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "MaxStartups 200:30:400",
            "Subsystem sftp internal-sftp",
            # The VM's own home: a login shell must not run this machine's ~/.bashrc (here it costs 0.13 s per
            # command, which Ansible pays five times per task).
            f"SetEnv LAB_VM_ROOT={self.root} LAB_VM_ID={self.vmid} HOME={self.root}",
            "LogLevel ERROR",
        ]) + "\n")
        self.pid_file.unlink(missing_ok=True)
        subprocess.run([sshd_program(), "-f", str(config), "-E", str(self.dir / "sshd.log")], check=True,
                       stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 5
        while not self.running() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the VM's sshd and its open sessions: a VM that goes away drops its connections (an sshd
        alone would leave them running, and the clients' kept-open connections with them)."""
        pid = self.pid()
        if pid is not None:
            pids = [pid, *_descendants(pid)]
            for each in pids:
                try:
                    os.kill(each, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while any(pid_alive(each) for each in pids) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.pid_file.unlink(missing_ok=True)
        self.booted_file.unlink(missing_ok=True)

    def mark_booted(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.booted_file, time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
