"""The local lab as a plugin: an environment with a `lab:` section gets its Proxmox API from the lab's stand-in
(started on first use), `doit lab-stop`, and the lab's programs in `doit doctor`. The core never imports the lab;
it is registered like any plugin (proxpipe.engine.plugins.DEFAULT_PLUGINS)."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from proxpipe.api import Command, Field, ToolSpec, hookimpl, schema


def _loopback(value: str) -> str | None:
    try:
        ok = ipaddress.ip_address(value).is_loopback
    except ValueError:
        ok = False
    return None if ok else f"{value!r} is not a loopback address; the lab only listens on 127.0.0.0/8"


LAB_FIELDS = {
    "address": Field(schema.STR, "Loopback address of the Proxmox API stand-in.", default="127.0.10.1",
                     check=_loopback),
    "port": Field(schema.INT, "Its port.", default=8006, minimum=1, maximum=65535),
    "base_template": Field(schema.MAP, "The template the lab starts with (what a real cluster already has).",
                           default={}, fields={
                               "vmid": Field(schema.INT, "Its VMID.", default=9000, minimum=100),
                               "name": Field(schema.STR, "Its name.", default="debian-12-base"),
                           }),
    "boot_seconds": Field(schema.NUMBER, "Seconds a lab VM takes to mark itself booted after its sshd starts.",
                          default=0.2, minimum=0),
    "idle_minutes": Field(schema.NUMBER, "Stop the lab's services after this long without an API request "
                                         "(0: never).", default=120, minimum=0),
}


class LabConfig(NamedTuple):
    address: str
    port: int
    base_template_id: int
    base_template_name: str
    boot_seconds: float
    idle_minutes: float


def lab_config(environment) -> LabConfig | None:
    """The environment's `lab:` settings, or None when it is not a lab environment."""
    data = environment.extras.get("lab")
    if data is None:
        return None
    base = data["base_template"]
    return LabConfig(data["address"], data["port"], base["vmid"], base["name"], data["boot_seconds"],
                     data["idle_minutes"])


@hookimpl
def environment_fields():
    return {"lab": Field(schema.MAP, "Run the embedded local lab (omit for a real cluster).", fields=LAB_FIELDS)}


@hookimpl
def proxmox_endpoint(environment, proxmox):
    if lab_config(environment) is None:
        return None
    from . import control

    control.ensure(environment)
    return proxmox if proxmox.ca_file else proxmox._replace(ca_file=control.ca_file(environment))


@hookimpl
def register_commands(register):
    register(Command("lab-stop", "stop the local lab's services (the Proxmox stand-in and the VMs' sshd)", _stop))


def _stop(pipeline) -> None:
    from . import control

    control.stop(pipeline.env, verbose=True)


@hookimpl
def docs_context(environment):
    lab = lab_config(environment)
    return {"lab": lab._asdict()} if lab else None


@hookimpl
def doctor_tools(environment):
    if lab_config(environment) is None:
        return None
    return [ToolSpec("sshd", (), "", "", "apt-get install openssh-server", "the lab"),
            ToolSpec("ssh-keygen", (), "", "", "apt-get install openssh-client", "the lab")]
