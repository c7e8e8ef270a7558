"""The Proxmox VE API through proxmoxer: every call retried with backoff when the cause is passing.

Retried: connection errors and timeouts, 5xx answers (except the ones PVE uses for permanent
problems), a VM locked by another task and a config-lock timeout ("VM is locked (clone)", "can't lock file
'/var/lock/qemu-server/lock-9100.conf' - got timeout": parallel clones of one template), whatever else the
message says, and tasks that end in one of those. A 401 on a password login gets one fresh ticket.
Everything else fails at once with the call and the cause: a host name that does not resolve or a TLS
certificate that does not verify among them. The client counts its retries (retries, lock_retries), for
the history.

It also reads the cluster (nodes, storages, where a template's disks are, linked clones), copies a
template to another node, and asks a VM's guest agent for its address.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError, ProxmoxError
from proxpipe.base.fsutil import atomic_write
from proxpipe.base.retry import Backoff
from proxpipe.domain.config import ProxmoxConfig

if TYPE_CHECKING:
    from proxpipe.domain.cluster import Cluster, Node, Storage, TemplateLocation

# 5xx messages that will not change by retrying.
_PERMANENT = (r"(?i)does not exist|already exists|already running|not running|no such|"
              r"permission|not allowed|invalid|can't convert|you can't|protection|"
              r"can't clone|can't migrate|uses local storage|is not available on node|does not support")
# Task errors that are worth another try: another task held the VM's lock.
_RETRY_TASK = r"(?i)got timeout|is locked|lock.*timeout|temporarily"
# Another task holds the VM's config lock: always worth another try, in an answer or a task.
_LOCKED = r"(?i)can't lock file|\bis locked\b|acquire lock|lock.*got timeout"
# Guest-agent answers that mean "not (yet) there": not configured, not running, not answering, VM stopped.
_NO_AGENT = r"(?i)agent|not running|got timeout"


class Proxmox:
    """One API connection (made on first use) with retried calls."""

    def __init__(self, cfg: ProxmoxConfig, notify: Callable[[str], None] | None = None, prefer_light: bool = False,
                 cache_file: Path | None = None, retry_locks: bool = True,
                 endpoint: Callable[[ProxmoxConfig], ProxmoxConfig] | None = None):
        self.configured = cfg  # as pipeline.yaml says: what the check cache is kept for
        self._endpoint = endpoint
        # retry_locks=False: a config-lock timeout fails at once, as the Terraform providers fail (the lab's
        # pipeline-lab --no-lock-retry, so a test can see the terraform stage retry instead).
        self.retry_locks = retry_locks
        self.retries = 0  # retries of calls and tasks so far, for the history
        self.lock_retries = 0  # of which for a config lock held by another task
        self.node = cfg.node
        self.prefer_light = prefer_light
        self.cache_file = cache_file  # the VM list shared with the next commands (ProxmoxConfig.check_cache)
        self._api = None
        self._light = None
        self._vms: tuple[float, list[dict]] | None = None  # (wall-clock time of the answer, the answer)
        self._notify = notify or console.step

    # ------------------------------------------------------------------ connection

    @cached_property
    def cfg(self) -> ProxmoxConfig:
        """Where to connect. A plugin's endpoint (the lab's, which starts its stand-in) is asked on first use: a
        command the check cache answers starts nothing."""
        return self._endpoint(self.configured) if self._endpoint else self.configured

    def _connect(self):
        from proxmoxer import ProxmoxAPI

        parts = urlsplit(self.cfg.url)
        verify: Any = str(self.cfg.ca_file) if (self.cfg.verify_tls and self.cfg.ca_file) else self.cfg.verify_tls
        common = {"host": parts.hostname, "port": parts.port or 8006, "verify_ssl": verify,
                  "timeout": self.cfg.timeout, "service": "PVE"}
        if self.cfg.token_id:
            user, _, name = self.cfg.token_id.partition("!")
            return ProxmoxAPI(user=user, token_name=name, token_value=self.cfg.token_secret.reveal(), **common)
        return ProxmoxAPI(user=self.cfg.user, password=self.cfg.password.reveal(), **common)

    @property
    def light(self):
        """The standard-library client (API calls need a token; without one it only reaches what needs no login, like
        the lab's control endpoint); see proxpipe.domain.pveapi for why."""
        if self._light is None:
            from proxpipe.domain.pveapi import Client

            token = f"{self.cfg.token_id}={self.cfg.token_secret.reveal()}" if self.cfg.token_id else None
            self._light = Client(self.cfg.url, token, str(self.cfg.ca_file) if self.cfg.ca_file else None,
                                 self.cfg.verify_tls, self.cfg.timeout)
        return self._light

    @property
    def api(self):
        """The client for calls: proxmoxer, or the light one when asked for (and a token is used)."""
        if self.prefer_light and self.cfg.token_id:
            return self.light
        if self._api is None:
            self._api = self.call("login", lambda: None, connect=True)
        return self._api

    # ------------------------------------------------------------------ calls with retries

    def call(self, what: str, fn: Callable[[], Any], connect: bool = False) -> Any:
        """fn() with retries; `what` names the call in messages, e.g. 'GET /cluster/resources'."""
        backoff = Backoff(self.cfg.retry.attempts, self.cfg.retry.max_seconds)
        relogged = False
        while True:
            try:
                return self._connect() if connect else fn()
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001 - classified below; unknown ones fail at once
                cause, retry, unauthorized = _classify(exc)
                if unauthorized and self.cfg.user and not relogged and not connect:
                    relogged = True
                    self._notify(f"{what}: ticket rejected; logging in again")
                    self._api = self.call("login", lambda: None, connect=True)
                    continue
                delay = backoff.next_delay() if self._retryable(cause, retry) else None
                if delay is None:
                    tries = f" after {backoff.attempt} attempts" if backoff.attempt > 1 else ""
                    raise ProxmoxError(f"Proxmox API {self.cfg.url} {what} failed{tries}: {cause}",
                                       refused=unauthorized) from None
                self._count(cause)
                self._notify(f"Proxmox API {what}: {cause}; retrying in {delay:.1f}s "
                             f"(attempt {backoff.attempt} of {self.cfg.retry.attempts})")
                time.sleep(delay)

    def _retryable(self, cause: str, transient: bool) -> bool:
        if re.search(_LOCKED, cause):
            return self.retry_locks
        return transient

    def _count(self, cause: str) -> None:
        self.retries += 1
        if re.search(_LOCKED, cause):
            self.lock_retries += 1

    def task(self, what: str, start: Callable[[], str], timeout: float = 600) -> None:
        """Start a task (start() returns its UPID) and wait for it; retried as a whole on lock timeouts."""
        self.forget_answers()  # a task changes the cluster
        backoff = Backoff(self.cfg.retry.attempts, self.cfg.retry.max_seconds)
        while True:
            upid = self.call(what, start)
            status = self._wait(what, upid, timeout)
            if status == "OK":
                return
            delay = backoff.next_delay() if self._retryable(status, bool(re.search(_RETRY_TASK, status))) else None
            if delay is None:
                raise ProxmoxError(f"Proxmox task {what} ended in TASK ERROR: {status}")
            self._count(status)
            self._notify(f"Proxmox task {what}: {status}; retrying in {delay:.1f}s")
            time.sleep(delay)

    def _wait(self, what: str, upid: str, timeout: float) -> str:
        node = upid.split(":")[1] if upid.startswith("UPID:") else self.node
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            info = self.call(f"{what} (task status)", lambda: self.api.nodes(node).tasks(upid).status.get())
            if info.get("status") == "stopped":
                return str(info.get("exitstatus", "unknown"))
            if time.monotonic() > deadline:
                raise ProxmoxError(f"Proxmox task {what} still running after {timeout:.0f}s ({upid})")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # ------------------------------------------------------------------ what the pipeline asks

    def vms(self, max_age: float = 0.0) -> list[dict]:
        """Every VM of the cluster (templates included), from /cluster/resources; max_age > 0 accepts an
        answer that old (the up-to-date checks of several stages ask one after the other), from this process or,
        with a cache file, from an earlier command."""
        if max_age and self._vms is None:
            self._vms = self._cached()
        if max_age and self._vms and time.time() - self._vms[0] <= max_age:
            return self._vms[1]
        # Looked up on each try: a retry after a refused ticket must use the new login.
        client = (lambda: self.light) if self.cfg.token_id and self._api is None else (lambda: self.api)
        answer = self.call("GET /cluster/resources", lambda: client().cluster.resources.get(type="vm"))
        self._vms = (time.time(), answer)
        if self.cache_file is not None and self.configured.check_cache:  # else no command reads it
            try:
                kept = {"url": self.configured.url, "time": self._vms[0], "vms": answer}
                atomic_write(self.cache_file, json.dumps(kept), durable=False)
            except OSError:
                pass  # a read-only or full state directory: the next command asks the API again
        return answer

    @property
    def check_age(self) -> float:
        """How old an answer the up-to-date checks accept: check_cache, and at least a few seconds within one
        command (several stages ask one after the other)."""
        return max(self.configured.check_cache, 5.0)

    def answered(self) -> str:
        """When the last VM list was fetched, for messages: "" when just now, else ", as of 7s ago"."""
        age = time.time() - self._vms[0] if self._vms else 0
        return f", as of {age:.0f}s ago" if age >= 1 else ""

    def forget_answers(self) -> None:
        """Something changed on the cluster (or may have): the next question asks the API."""
        self._vms = None
        if self.cache_file is not None:
            self.cache_file.unlink(missing_ok=True)

    def _cached(self) -> tuple[float, list[dict]] | None:
        if self.cache_file is None or not self.configured.check_cache:
            return None
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return None
        same_cluster = isinstance(data, dict) and data.get("url") == self.configured.url
        if not same_cluster or not isinstance(data.get("vms"), list):
            return None
        return float(data.get("time", 0)), data["vms"]

    def vm(self, vmid: int, max_age: float = 0.0) -> dict | None:
        """vmid's entry in /cluster/resources, or None."""
        return next((entry for entry in self.vms(max_age) if int(entry.get("vmid", -1)) == int(vmid)), None)

    def used_ids(self) -> set[int]:
        return {int(entry["vmid"]) for entry in self.vms()}

    def template_problem(self, vmid: int, max_age: float = 0.0) -> str | None:
        """None when vmid exists on the node and is a template; otherwise what is wrong."""
        entry = self.vm(vmid, max_age)
        if entry is None:
            return f"template {vmid} does not exist on the cluster"
        if entry.get("node") != self.node:
            return f"VM {vmid} is on node {entry.get('node')}, not {self.node}"
        if not int(entry.get("template", 0)):
            return f"VM {vmid} exists but is not a template"
        return None

    def delete_vm(self, vmid: int, node: str | None = None) -> None:
        node = node or self.node
        self.task(f"DELETE /nodes/{node}/qemu/{vmid}", lambda: self.api.nodes(node).qemu(vmid).delete())

    def agent_addresses(self, vmid: int, node: str | None = None) -> list[str] | None:
        """IP addresses the guest agent reports, or None when the agent does not answer."""
        node = node or self.node
        try:
            data = self.api.nodes(node).qemu(vmid).agent("network-get-interfaces").get()
        except Exception:  # noqa: BLE001 - no agent, agent off, VM stopped: all mean "unknown"
            return None
        result = data.get("result", data) if isinstance(data, dict) else data
        return [addr["ip-address"] for iface in result or [] for addr in iface.get("ip-addresses", [])
                if iface.get("name") != "lo"]

    def version(self) -> str:
        data = self.call("GET /version", lambda: self.api.version.get())
        return str(data.get("version", "unknown"))

    # ------------------------------------------------------------------ the cluster

    def nodes(self) -> tuple[Node, ...]:
        """The cluster's nodes and whether each is online (GET /nodes)."""
        from proxpipe.domain.cluster import parse_nodes

        return parse_nodes(self.call("GET /nodes", lambda: self.api.nodes.get()))

    def storages(self) -> tuple[Storage, ...]:
        """The cluster's storages (GET /storage): shared or not, the nodes each is enabled on, what it holds."""
        from proxpipe.domain.cluster import parse_storages

        return parse_storages(self.call("GET /storage", lambda: self.api.storage.get()))

    def cluster(self) -> Cluster:
        """Nodes and storages: what proxpipe.domain.placement judges."""
        from proxpipe.domain.cluster import Cluster

        return Cluster(self.nodes(), self.storages())

    def vm_config(self, vmid: int, node: str | None = None) -> dict | None:
        """The VM's current config (GET /nodes/{node}/qemu/{vmid}/config); node: where it is, else looked up in the
        cluster's VM list. None when the cluster has no such VM."""
        if node is None:
            entry = self.vm(vmid)
            if entry is None:
                return None
            node = str(entry.get("node") or self.node)
        return self.call(f"GET /nodes/{node}/qemu/{vmid}/config",
                         lambda: self.api.nodes(node).qemu(vmid).config.get()) or {}

    def template_location(self, vmid: int) -> TemplateLocation | None:
        """Where VM vmid is (its node, the storage of each drive) and whether it is a template; None when it does
        not exist. A VM whose node is offline (status unknown) comes with no disks: its config cannot be read."""
        from proxpipe.domain.cluster import TemplateLocation, disk_storages

        entry = self.vm(vmid)
        if entry is None:
            return None
        node = str(entry["node"])
        disks = () if entry.get("status") == "unknown" else disk_storages(self.vm_config(vmid, node))
        return TemplateLocation(int(vmid), node, str(entry.get("name") or ""), bool(int(entry.get("template") or 0)),
                                disks)

    def linked_clone_bases(self, vmids: Iterable[int] | None = None) -> dict[int, frozenset[int] | None]:
        """For each VM that is not a template (of vmids, or all): the templates its disks are linked clones of
        (from their volume names, base-9100-disk-0/vm-201-disk-0); frozenset() for a full clone; None when its
        node is offline, so that its config cannot be read: it may be a linked clone."""
        from proxpipe.domain.cluster import linked_bases

        wanted = None if vmids is None else {int(v) for v in vmids}
        found: dict[int, frozenset[int] | None] = {}
        for entry in self.vms():
            vmid = int(entry["vmid"])
            if int(entry.get("template") or 0) or (wanted is not None and vmid not in wanted):
                continue
            found[vmid] = None if entry.get("status") == "unknown" else \
                linked_bases(self.vm_config(vmid, str(entry["node"])))
        return found

    def copy_template(self, vmid: int, newid: int, node: str, storage: str, name: str) -> None:
        """Make template newid on `node`, its disks on `storage`: a full copy of template vmid (the build stage's
        nodes: option). Proxmox clones onto another node only from shared storage, so this is a full clone on
        the template's own node (into `storage` when that node can write there), moved to `node` by an offline
        migration with targetstorage when it is elsewhere, then converted to a template. A copy that fails
        halfway is deleted again. Raises PipelineError with one line when it cannot be made."""
        from proxpipe.domain.placement import copy_problem

        source = self.template_location(vmid)
        cluster = self.cluster()
        problem = copy_problem(cluster, vmid, source, node, storage)
        if problem:
            raise PipelineError(problem)
        if self.vm(newid) is not None:
            raise PipelineError(f"VMID {newid} is already in use: template {vmid} cannot be copied to it")
        home = source.node
        clone: dict[str, Any] = {"newid": newid, "name": name, "full": 1}
        if cluster.storage(storage).enabled_on(home):
            clone["storage"] = storage
        self.task(f"POST /nodes/{home}/qemu/{vmid}/clone", lambda: self.api.nodes(home).qemu(vmid).clone.post(**clone))
        try:
            if node != home:
                self.task(f"POST /nodes/{home}/qemu/{newid}/migrate", lambda: self.api.nodes(home).qemu(newid).migrate
                          .post(target=node, targetstorage=storage))
            self.task(f"POST /nodes/{node}/qemu/{newid}/template", lambda: self.api.nodes(node).qemu(newid).template
                      .post())
        except PipelineError as exc:
            raise PipelineError(f"copying template {vmid} to {node}: {exc}{self._discard(newid)}") from None

    def _discard(self, vmid: int) -> str:
        """Delete what a failed copy left; "" when done, else what the user must do."""
        try:
            entry = self.vm(vmid)
            if entry is not None:
                self.delete_vm(vmid, str(entry["node"]))
            return ""
        except PipelineError as exc:
            return f"; VM {vmid} was left behind ({exc}): delete it by hand"

    def agent_ipv4(self, vmid: int, node: str, mac: str | None = None) -> str | None:
        """The IPv4 address the VM's guest agent reports for the interface with this MAC (default: the VM's net0),
        not the loopback or a Docker bridge; None while the agent does not answer or reports none. Asks once: the
        caller waits. Raises ProxmoxError when the API refuses (credentials, a VM that does not exist)."""
        from proxpipe.domain.cluster import interface_ipv4, net_mac

        mac = mac or net_mac(self.vm_config(vmid, node).get("net0"))
        if mac is None:
            return None
        what = f"GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"
        try:
            data = self.api.nodes(node).qemu(vmid).agent("network-get-interfaces").get()
        except Exception as exc:  # noqa: BLE001 - classified: not there yet, or refused
            cause, transient, unauthorized = _classify(exc)
            if not unauthorized and (transient or re.search(_NO_AGENT, cause)):
                return None
            raise ProxmoxError(f"Proxmox API {self.cfg.url} {what} failed: {cause}", refused=unauthorized) from None
        return interface_ipv4(data, mac)


def _http(status: int, message: str) -> tuple[str, bool, bool]:
    cause = f"HTTP {status}: {message}"
    if status == 401:
        return cause + " (check the token or password)", False, True
    if status >= 500 and not re.search(_PERMANENT, message):
        return cause, True, False
    return cause, False, False


def _lasting(exc: BaseException) -> str | None:
    """The cause, when exc is or wraps (as requests and urllib3 do) a failure that no retry mends: a host name
    that does not resolve, a TLS certificate that does not verify."""
    import socket
    import ssl

    todo, seen = [exc], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror):
            return f"the host name does not resolve ({item.strerror or item}); check proxmox.url"
        if isinstance(item, ssl.SSLCertVerificationError):
            why = (item.verify_message or item.reason or str(item)).strip().rstrip(".")
            return f"its TLS certificate does not verify ({why}); check proxmox.ca_file or verify_tls"
        linked = [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
        todo += [link for link in linked if isinstance(link, BaseException)]
    return None


def _classify(exc: Exception) -> tuple[str, bool, bool]:
    """(cause, retryable, unauthorized) of an exception raised by proxmoxer, requests or http.client."""
    import http.client
    import ssl

    from proxpipe.domain.pveapi import HTTPStatus

    lasting = _lasting(exc)
    if lasting:
        return lasting, False, False
    if isinstance(exc, HTTPStatus):
        return _http(exc.code, str(exc.reason).strip())
    if isinstance(exc, http.client.HTTPException):
        return f"connection failed: {type(exc).__name__}: {exc}", True, False
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc} (check proxmox.ca_file or verify_tls)", False, False
    if isinstance(exc, TimeoutError):
        return "timed out", True, False
    # requests' exceptions are OSErrors too; they are told apart below.
    if isinstance(exc, OSError) and not type(exc).__module__.startswith(("requests", "urllib3")):
        return f"connection failed: {exc}", True, False
    from proxmoxer.core import AuthenticationError, ResourceException
    from requests import exceptions as rex

    if isinstance(exc, ResourceException):
        message = str(exc.content or exc.status_message).strip()
        return _http(int(exc.status_code), message + (f" ({exc.errors})" if exc.errors else ""))
    if isinstance(exc, AuthenticationError):
        return f"login refused: {exc} (check the user and password)", False, False
    if isinstance(exc, rex.SSLError):
        return f"TLS error: {_short(exc)} (check proxmox.ca_file or verify_tls)", False, False
    if isinstance(exc, rex.Timeout):
        return "timed out", True, False
    if isinstance(exc, rex.ConnectionError | rex.ChunkedEncodingError):
        return f"connection failed: {_short(exc)}", True, False
    return f"{type(exc).__name__}: {exc}", False, False


def _short(exc: Exception) -> str:
    text = str(exc)
    found = re.search(r"\(Caused by \w+\('?(.*?)'?\)\)?$", text) or re.search(r"(\[Errno [^\]]+\][^'\"]*)", text)
    text = found.group(1) if found else text
    return text if len(text) <= 160 else text[:157] + "..."


def tool_env(cfg: ProxmoxConfig) -> dict[str, str]:
    """Environment variables for tools: those of the bpg/proxmox Terraform provider (PROXMOX_VE_*), of
    Packer's proxmox plugin (PROXMOX_URL, PROXMOX_USERNAME, PROXMOX_TOKEN/PASSWORD), and the CA file and
    node (PIPELINE_PROXMOX_*). Passed in the environment, never on a command line; masked in logs."""
    env = {"PROXMOX_VE_ENDPOINT": cfg.url, "PROXMOX_URL": f"{cfg.url}/api2/json",
           "PROXMOX_VE_INSECURE": "false" if cfg.verify_tls else "true",
           "PROXMOX_INSECURE_SKIP_TLS_VERIFY": "false" if cfg.verify_tls else "true",
           "PIPELINE_PROXMOX_NODE": cfg.node, "PIPELINE_PROXMOX_VERIFY_TLS": "1" if cfg.verify_tls else "0"}
    if cfg.ca_file:
        env["PIPELINE_PROXMOX_CA_FILE"] = str(cfg.ca_file)
    if cfg.token_id:
        secret = cfg.token_secret.reveal()
        env.update(PROXMOX_VE_API_TOKEN=f"{cfg.token_id}={secret}", PROXMOX_USERNAME=cfg.token_id,
                   PROXMOX_TOKEN=secret)
    else:
        password = cfg.password.reveal()
        env.update(PROXMOX_VE_USERNAME=cfg.user, PROXMOX_VE_PASSWORD=password, PROXMOX_USERNAME=cfg.user,
                   PROXMOX_PASSWORD=password)
    return env


def config_from_tool_env(environ: dict[str, str]) -> ProxmoxConfig:
    """The inverse of tool_env(), for programs the tools run (the lab's pipeline-lab)."""
    from proxpipe.base.secrets import Secret
    from proxpipe.domain.config import Retry

    url = environ.get("PROXMOX_VE_ENDPOINT")
    if not url:
        raise PipelineError("PROXMOX_VE_ENDPOINT is not set: run this through the pipeline (doit), which sets it")
    token = environ.get("PROXMOX_VE_API_TOKEN")
    token_id, _, secret = token.partition("=") if token else (None, "", None)
    return ProxmoxConfig(
        url=url.rstrip("/"), node=environ.get("PIPELINE_PROXMOX_NODE", "pve1"), token_id=token_id,
        token_secret=Secret(secret, "PROXMOX_VE_API_TOKEN", "environment") if token else None,
        user=None if token else environ.get("PROXMOX_VE_USERNAME"),
        password=None if token else Secret(environ.get("PROXMOX_VE_PASSWORD"), "PROXMOX_VE_PASSWORD", "environment"),
        ca_file=Path(environ["PIPELINE_PROXMOX_CA_FILE"]) if environ.get("PIPELINE_PROXMOX_CA_FILE") else None,
        verify_tls=environ.get("PIPELINE_PROXMOX_VERIFY_TLS", "1") == "1", timeout=10.0, retry=Retry(6, 60))
