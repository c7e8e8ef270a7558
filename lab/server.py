"""The lab's Proxmox VE: fakepve on a loopback address, plus what a real cluster also does.

* A three-node cluster with local and shared storage, and PVE's rules for clones and migrations across
  nodes where fakepve is lenient (lab.cluster).
* State survives restarts: the VMs, nodes, storages and DHCP leases are saved to fake-pve/state.json whenever
  they change (a state.json from before the cluster, with VMs only, loads into the default cluster).
* It is the lab's hypervisor: a running VM with a loopback address in its ipconfig0 (or ip=dhcp: a lease from
  the lab's pool) gets its own sshd (lab.hosts), started `sshd_delay` seconds after the VM starts (from its
  description, `-1` never), and marks itself booted `boot_seconds` later; stopping or deleting the VM stops
  it. The guest agent reports the VM's address on the interface with the VM's net0 MAC, beside lo and a
  docker0 bridge, `agent_delay` seconds after power-on (description or /_lab/vm; `-1` never) (lab.guest).
* Faults on demand for tests: POST /_lab/call with the admin secret calls fakepve's own switches
  (flaky_network, fail, revoke_tickets, set_node_offline, ...), /_lab/vm edits a VM, /_lab/settings sets
  time_scale, lock_wait, clone_lock_failures ({rate, seed, mode}: a share of clones fails on PVE's
  config-lock timeout, counted in /_lab/state), ...
* It stops by itself after `idle_minutes` without a request, and on SIGTERM, stopping its sshds.

Run by lab.control; `python -m proxpipe.lab.server --help` for the options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from aiohttp import web
from fakepve import FakePve
from fakepve.model import TaskError

from proxpipe.base.fsutil import atomic_write
from proxpipe.lab import guest
from proxpipe.lab.cluster import ClusterRules
from proxpipe.lab.hosts import LabHost, LabKeys

ADMIN_HEADER = "X-Lab-Admin"
# fakepve switches a test may pull through /_lab/call.
ALLOWED_CALLS = {"flaky_network", "slow_network", "fail", "revoke_tickets", "snapshot_lock", "unlock",
                 "set_node_offline", "lose_quorum", "regain_quorum"}
VM_FIELDS = {"status", "qmpstatus", "lock", "start_secs", "stop_secs", "start_error", "agent_hangs", "template",
             "name", "agent_delay"}


class LabPve(ClusterRules, FakePve):
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
        self.setup_cluster(host)
        self.leases = guest.Leases(host.rpartition(".")[0])
        self._saved = ""
        self._load(base_template)

    # ------------------------------------------------------------------ persistence

    def _load(self, base_template: tuple[int, str]) -> None:
        state_file = self.dir / "state.json"
        if not state_file.exists():
            self.add_base_template(*base_template)
            return
        state = json.loads(state_file.read_text())
        if state.get("nodes"):
            self.nodes = state["nodes"]
        if state.get("storages"):
            self.storages = {name: dict(store, files=set(store.get("files", ())))
                             for name, store in state["storages"].items()}
        self.leases = guest.Leases(self.leases.block, state.get("leases"))
        for item in state["vms"]:
            vm = self.add_vm(item["vmid"], item["name"], node=item["node"], status=item["status"],
                             config=item["config"], template=item["template"], lock=item.get("lock"))
            if item.get("agent_delay") is not None:
                vm.agent_delay = item["agent_delay"]

    def snapshot(self, indent: int | None = 1) -> str:
        vms = [{"vmid": vm.vmid, "name": vm.name, "node": vm.node, "status": vm.status,
                "template": bool(vm.template), "config": vm.config, "lock": vm.lock,
                **({"agent_delay": vm.agent_delay} if getattr(vm, "agent_delay", None) is not None else {})}
               for vm in sorted(self.vms, key=lambda v: v.vmid)]
        storages = {name: dict(store, files=sorted(store.get("files", ()))) for name, store in self.storages.items()}
        return json.dumps({"vms": vms, "nodes": self.nodes, "storages": storages, "leases": self.leases.to_json()},
                          indent=indent, sort_keys=True, default=str)

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
        """Make the SSH hosts and guest agents follow the VMs. An sshd starts once per power-on, like a real guest's:
        one that dies (or is killed by a test) stays down until the VM is restarted."""
        now = time.monotonic()
        live = {vm.vmid: vm for vm in self.vms if not vm.template}
        self.leases.keep(set(live))
        for vmid, vm in live.items():
            host = self.hosts.setdefault(vmid, LabHost(self.state_dir, vmid, self.keys))
            address = self.address_of(vm) if vm.status == "running" else None
            if address is None:
                self.powered_on.pop(vmid, None)
                self.sshd_up.pop(vmid, None)
                vm.agent = None
                if host.running():
                    host.stop()
                continue
            powered = self.powered_on.setdefault(vmid, now)
            vm.agent = self._agent_answers(vm, address, now - powered)
            if vmid not in self.sshd_up:
                delay = guest.delay(vm.config, "sshd_delay")
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

    def address_of(self, vm) -> str | None:
        """The VM's address: static from its ipconfig0, or its DHCP lease; None without either."""
        static = guest.static_address(vm.config)
        if static or not guest.wants_dhcp(vm.config):
            return static
        taken = {address for other in self.vms if (address := guest.static_address(other.config))}
        return self.leases.address(vm.vmid, taken)

    @staticmethod
    def _agent_answers(vm, address: str, uptime: float) -> dict | None:
        """The guest agent's answers (fakepve's vm.agent), or None while it is not running."""
        delay = getattr(vm, "agent_delay", None)
        delay = guest.delay(vm.config, "agent_delay") if delay is None else float(delay)
        if not guest.agent_enabled(vm.config) or delay < 0 or uptime < delay:
            return None
        return {"interfaces": guest.interfaces(address, guest.mac_of(vm.config), vm.vmid)}

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
        elsewhere = self.disk_not_here(vm)
        if elsewhere:
            async def refused():
                raise TaskError(elsewhere)
            return await self.task(vm.node, "qmstart", vm.vmid, user, refused, vm=vm)
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
            state = json.loads(self.snapshot())
            return {**state, "clone_lock_failures": {**self.clone_lock_failures, "count": self.clone_lock_count},
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
            if "clone_lock_failures" in body:
                self.set_clone_lock_failures(body["clone_lock_failures"])
            if body.get("clear_faults"):
                self.set_clone_lock_failures(None)
                self.failures = {}
                self.flaky_network(0.0, 0.0)
                self.slow_network(0.0)
            return "ok"
        if path == "/_lab/stop":
            self.stopping.set()
            return "ok"
        raise KeyError(path)


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
