"""The lab's Proxmox VE: fakepve on a loopback address, plus what a real node also does.

* State survives restarts: the VMs are saved to fake-pve/state.json whenever they change.
* It is the lab's hypervisor: a running VM with a loopback address in its ipconfig0 gets its own
  sshd (lab.hosts), started `sshd_delay` seconds after the VM starts (from its description,
  `-1` never), and marks itself booted `boot_seconds` later; stopping or deleting the VM stops it.
  The guest agent reports the VM's address.
* Faults on demand for tests: POST /_lab/call with the admin secret calls fakepve's own switches
  (flaky_network, fail, revoke_tickets, ...) or edits a VM.
* It stops by itself after `idle_minutes` without a request, and on SIGTERM, stopping its sshds.

Run by lab.control; `python -m proxpipe.lab.server --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import sys
import time
from pathlib import Path

from aiohttp import web
from fakepve import FakePve

from proxpipe.base.fsutil import atomic_write
from proxpipe.lab.hosts import LabHost, LabKeys

ADMIN_HEADER = "X-Lab-Admin"
# fakepve switches a test may pull through /_lab/call.
ALLOWED_CALLS = {"flaky_network", "slow_network", "fail", "revoke_tickets", "snapshot_lock", "unlock",
                 "set_node_offline", "lose_quorum", "regain_quorum"}
VM_FIELDS = {"status", "qmpstatus", "lock", "start_secs", "stop_secs", "start_error", "agent_hangs", "template",
             "name"}
_IP = re.compile(r"ip=(127\.\d+\.\d+\.\d+)")
_DELAY = re.compile(r"sshd_delay=(-?\d+(?:\.\d+)?)")


class LabPve(FakePve):
    def __init__(self, state_dir: Path, host: str, port: int, boot_seconds: float, idle_minutes: float,
                 base_template: tuple[int, str]):
        super().__init__(user=os.environ.get("LAB_PVE_USER") or "root@pam",
                         password=os.environ.get("LAB_PVE_PASSWORD") or secrets.token_hex(16), host=host, port=port)
        self.state_dir = state_dir
        self.dir = state_dir / "fake-pve"
        self.time_scale = 0.0
        self.boot_seconds = boot_seconds
        self.idle_seconds = idle_minutes * 60
        self.last_request = time.monotonic()
        # Housekeeping runs every tick while the API is in use, and slows down when it is idle.
        self.tick = 0.05
        self.admin_secret = secrets.token_hex(16)
        self.keys = LabKeys(state_dir)
        self.hosts: dict[int, LabHost] = {}
        self.powered_on: dict[int, float] = {}  # vmid -> when the VM was first seen running
        self.sshd_up: dict[int, float] = {}  # vmid -> when its sshd was started in this power-on
        self.stopping = asyncio.Event()
        self.start_secs = 0.0  # PVE seconds every VM start takes (a slow start, for tests)
        token_id, token_secret = os.environ.get("LAB_PVE_TOKEN_ID"), os.environ.get("LAB_PVE_TOKEN_SECRET")
        if token_id and token_secret:
            self.apitokens[token_id] = token_secret
        self._saved = ""
        self._load(base_template)

    # ------------------------------------------------------------------ persistence

    def _load(self, base_template: tuple[int, str]) -> None:
        state_file = self.dir / "state.json"
        if state_file.exists():
            for item in json.loads(state_file.read_text())["vms"]:
                self.add_vm(item["vmid"], item["name"], node=item["node"], status=item["status"],
                            config=item["config"], template=item["template"], lock=item.get("lock"))
            return
        vmid, name = base_template
        self.add_vm(vmid, name, status="stopped", template=True,
                    config={"cores": 1, "memory": 1024, "ostype": "l26", "agent": "1", "template": 1,
                            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0", "description": "lab base image"})

    def snapshot(self, indent: int | None = 1) -> str:
        vms = [{"vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status,
                "template": bool(vm.template), "config": vm.config, "lock": vm.lock}
               for vm in sorted(self.vms, key=lambda v: v.vmid)]
        return json.dumps({"vms": vms}, indent=indent, sort_keys=True, default=str)

    def save(self) -> None:
        """Write state.json when the VMs changed. Asked every tick: the comparison uses the compact form, which
        the json module's C encoder makes (an indented one is made in Python, 20 times a second)."""
        compact = self.snapshot(indent=None)
        if compact != self._saved:
            # Not fsync'd: a lab's VMs need not outlive a power cut, and an fsync holds the event loop (and so
            # every API call) back for as long as the disk takes.
            atomic_write(self.dir / "state.json", self.snapshot(), durable=False)
            self._saved = compact

    # ------------------------------------------------------------------ the hypervisor

    def reconcile(self) -> None:
        """Make the SSH hosts follow the VMs. An sshd starts once per power-on, like a real guest's:
        one that dies (or is killed by a test) stays down until the VM is restarted."""
        now = time.monotonic()
        live = {vm.vmid: vm for vm in self.vms if not vm.template}
        for vmid, vm in live.items():
            host = self.hosts.setdefault(vmid, LabHost(self.state_dir, vmid, self.keys))
            address = _address(vm.config)
            if vm.status != "running" or address is None:
                self.powered_on.pop(vmid, None)
                self.sshd_up.pop(vmid, None)
                vm.agent = None
                if host.running():
                    host.stop()
                continue
            vm.agent = {"interfaces": _interfaces(address)}
            powered = self.powered_on.setdefault(vmid, now)
            if vmid not in self.sshd_up:
                delay = _sshd_delay(vm.config)
                if not host.running():
                    if delay < 0 or now - powered < delay:
                        continue
                    host.start(address)
                self.sshd_up[vmid] = now
            if not host.booted_file.exists() and now - self.sshd_up[vmid] >= self.boot_seconds:
                host.mark_booted()
        for vmid in [v for v in self.hosts if v not in live]:
            self.hosts.pop(vmid).remove()
            self.powered_on.pop(vmid, None)
            self.sshd_up.pop(vmid, None)

    def stop_hosts(self) -> None:
        for host in self.hosts.values():
            host.stop()

    async def housekeeping(self) -> None:
        while not self.stopping.is_set():
            try:
                self.reconcile()
                self.save()
            except Exception as exc:  # noqa: BLE001 - the lab must keep serving; the log says what broke
                print(f"housekeeping: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            idle = time.monotonic() - self.last_request
            self.tick = 0.05 if idle < 30 else 1.0
            if self.idle_seconds and idle > self.idle_seconds:
                print("idle: stopping", flush=True)
                self.stopping.set()
            try:
                await asyncio.wait_for(self.stopping.wait(), self.tick)
            except TimeoutError:
                pass

    def flaky_network(self, *args, **kwargs):
        """fakepve's switch, reseeded now (it seeds only at start), so a test's seed repeats its drops."""
        super().flaky_network(*args, **kwargs)
        if self.network.get("seed") is not None:
            self._random.seed(self.network["seed"])

    async def _do_start(self, vm, user, p):
        vm.start_secs = max(vm.start_secs, self.start_secs)
        return await super()._do_start(vm, user, p)

    # ------------------------------------------------------------------ the control endpoint

    def _build_app(self):
        app = super()._build_app()
        app.middlewares.insert(0, self._lab_middleware)
        return app

    @web.middleware
    async def _lab_middleware(self, request, handler):
        self.last_request = time.monotonic()
        if not request.path.startswith("/_lab/"):
            return await handler(request)
        if not secrets.compare_digest(request.headers.get(ADMIN_HEADER, ""), self.admin_secret):
            return web.json_response({"error": "admin secret required"}, status=403)
        body = await request.json() if request.can_read_body else {}
        try:
            return web.json_response({"data": self._control(request.path, body)})
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)

    def _control(self, path: str, body: dict):
        if path == "/_lab/state":
            self.reconcile()
            return {"vms": json.loads(self.snapshot())["vms"],
                    "hosts": {str(v): {"sshd": h.pid(), "booted": h.booted_file.exists(), "root": str(h.root)}
                              for v, h in self.hosts.items()}}
        if path == "/_lab/call":
            if body["method"] not in ALLOWED_CALLS:
                raise ValueError(f"{body['method']} is not one of {sorted(ALLOWED_CALLS)}")
            getattr(self, body["method"])(*body.get("args", []), **body.get("kwargs", {}))
            return "ok"
        if path == "/_lab/vm":
            vm = self.vm(int(body["vmid"]))
            if vm is None:
                raise KeyError(f"no VM {body['vmid']}")
            if body.get("delete"):
                self.vms.remove(vm)
            for key, value in (body.get("set") or {}).items():
                if key not in VM_FIELDS:
                    raise ValueError(f"{key} is not one of {sorted(VM_FIELDS)}")
                setattr(vm, key, value)
            for key, value in (body.get("config") or {}).items():
                vm.config[key] = value
            self.reconcile()
            self.save()
            return "ok"
        if path == "/_lab/settings":
            if "time_scale" in body:
                self.time_scale = float(body["time_scale"])
            if "ticket_ttl" in body:
                self.ticket_ttl = float(body["ticket_ttl"])
            if "lock_wait" in body:
                self.lock_wait = float(body["lock_wait"])
            if "start_secs" in body:
                self.start_secs = float(body["start_secs"])
            if body.get("clear_faults"):
                self.failures = {}
                self.flaky_network(0.0, 0.0)
                self.slow_network(0.0)
            return "ok"
        if path == "/_lab/stop":
            self.stopping.set()
            return "ok"
        raise KeyError(path)


def _address(config: dict) -> str | None:
    found = _IP.search(str(config.get("ipconfig0", "")))
    return found.group(1) if found else None


def _sshd_delay(config: dict) -> float:
    found = _DELAY.search(str(config.get("description", "")))
    return float(found.group(1)) if found else 0.0


def _interfaces(address: str) -> list[dict]:
    return [{"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
            {"name": "eth0", "hardware-address": "bc:24:11:00:10:01",
             "ip-addresses": [{"ip-address": address, "ip-address-type": "ipv4", "prefix": 8}]}]


def certificate(directory: Path, address: str) -> tuple[Path, Path]:
    """The lab's TLS certificate (also its CA for clients), made anew when missing or near expiry."""
    from fakepve.certs import make_cert

    cert, key = directory / "fakepve.crt", directory / "fakepve.key"
    if cert.exists() and key.exists() and time.time() - cert.stat().st_mtime < 25 * 86400:
        return cert, key
    made_cert, made_key, _ = make_cert(str(directory), hosts=(address,))
    return Path(made_cert), Path(made_key)


async def serve(args) -> None:
    state_dir = Path(args.state_dir).absolute()
    pve = LabPve(state_dir, args.address, args.port, args.boot_seconds, args.idle_minutes,
                 (args.base_vmid, args.base_name))
    pve.dir.mkdir(parents=True, exist_ok=True)
    pve.keys.ensure()
    cert, key = certificate(pve.dir, args.address)
    atomic_write(pve.dir / "admin.secret", pve.admin_secret, 0o600)
    await pve.start(str(cert), str(key))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pve.stopping.set)
    atomic_write(pve.dir / "server.pid", f"{os.getpid()}\n")
    print(f"lab Proxmox listening on {pve.url}", flush=True)
    try:
        await pve.housekeeping()
    finally:
        pve.save()
        pve.stop_hosts()
        await pve.stop()
        _stop_database(state_dir)
        (pve.dir / "server.pid").unlink(missing_ok=True)
        print("lab Proxmox stopped", flush=True)


def _stop_database(state_dir: Path) -> None:
    """The lab's PostgreSQL, if it runs one, stops with it (so it too stops when the lab is idle)."""
    from proxpipe.base.errors import PipelineError
    from proxpipe.lab import database

    try:
        if database.stop(state_dir):
            print("lab PostgreSQL stopped", flush=True)
    except PipelineError as exc:
        print(f"stopping the lab's PostgreSQL: {exc}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m proxpipe.lab.server", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, help="the lab environment's state directory")
    parser.add_argument("--address", default="127.0.10.1")
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--boot-seconds", type=float, default=0.5)
    parser.add_argument("--idle-minutes", type=float, default=120)
    parser.add_argument("--base-vmid", type=int, default=9000)
    parser.add_argument("--base-name", default="debian-12-base")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
