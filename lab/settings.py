"""The `lab:` section of an environment in pipeline.yaml, contributed by the lab plugin."""

from pathlib import Path
from typing import NamedTuple

from proxpipe.api import Field, schema
from proxpipe.base.addresses import is_loopback


def _loopback(value: str) -> str | None:
    return None if is_loopback(value) else f"{value!r} is not a loopback address; the lab only listens on 127.0.0.0/8"


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
    "dir": Field(schema.PATH, "Where the lab keeps its services' files, its SSH keys and its VMs. Checkouts that name "
                              "the same folder (and address) share one lab. Default: the environment's state_dir."),
    "postgres": Field(schema.BOOL, "Also run a PostgreSQL server of the lab's own for the environment's shared "
                                   "state, at the loopback address, port, user, password and database of state.url "
                                   "(Debian's postgresql package).", default=False),
}


class LabConfig(NamedTuple):
    address: str
    port: int
    base_template_id: int
    base_template_name: str
    boot_seconds: float
    idle_minutes: float
    dir: Path | None = None
    postgres: bool = False


def lab_config(environment) -> LabConfig | None:
    """The environment's `lab:` settings, or None when it is not a lab environment."""
    data = environment.extras.get("lab")
    if data is None:
        return None
    base = data["base_template"]
    return LabConfig(data["address"], data["port"], base["vmid"], base["name"], data["boot_seconds"],
                     data["idle_minutes"], data["dir"], data["postgres"])
