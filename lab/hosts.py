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
import sys
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
        self._launcher: subprocess.Popen | None = None  # an sshd started that may not have detached yet

    def pid(self) -> int | None:
        self._reap()
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, address: str, port: int = 22) -> None:
        """Start the VM's sshd and return at once: the lab server calls this from its event loop, which must keep
        answering the API (waiting here for 30 sshds to come up held every API call back by seconds). sshd writes
        its pid file once it listens; a client that comes earlier is refused and tries again, as with a booting VM."""
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
            # A key exchange without OpenSSH 9's post-quantum default (sntrup761x25519), whose client side costs
            # 0.12 s of CPU per connection here, ten times curve25519's: a lab runs both ends of every handshake on
            # the controller's cores, which a real cluster does not (docs/performance.md).
            "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
            # The VM's own home: a login shell must not run this machine's ~/.bashrc (here it costs 0.13 s per
            # command, which Ansible pays five times per task).
            f"SetEnv LAB_VM_ROOT={self.root} LAB_VM_ID={self.vmid} HOME={self.root}",
            "LogLevel ERROR",
        ]) + "\n", durable=False)
        self.pid_file.unlink(missing_ok=True)
        self._launcher = subprocess.Popen([sshd_program(), "-f", str(config), "-E", str(self.dir / "sshd.log")],
                                          stdin=subprocess.DEVNULL, start_new_session=True)

    def _reap(self) -> None:
        """Collect the sshd that detached (it is this process's child until then); say so if it failed."""
        if self._launcher is not None and self._launcher.poll() is not None:
            if self._launcher.returncode != 0:
                print(f"VM {self.vmid}: sshd exited {self._launcher.returncode} (see {self.dir / 'sshd.log'})",
                      file=sys.stderr, flush=True)
            self._launcher = None

    def _settle(self) -> None:
        """Wait until an sshd that is starting has written its pid file, so that stop() finds it."""
        if self._launcher is None:
            return
        try:
            self._launcher.wait(5)
        except subprocess.TimeoutExpired:
            self._launcher.kill()
        deadline = time.monotonic() + 5
        while self._launcher.returncode == 0 and not self.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._reap()

    def stop(self) -> None:
        """Stop the VM's sshd and its open sessions: a VM that goes away drops its connections (an sshd
        alone would leave them running, and the clients' kept-open connections with them)."""
        self._settle()
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
        atomic_write(self.booted_file, time.strftime("%Y-%m-%dT%H:%M:%S\n"), durable=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
