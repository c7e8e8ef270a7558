"""Ansible inventories in the YAML/JSON format (what `ansible-playbook -i file.json` reads).

Only what the pipeline needs: every host with its variables merged the way Ansible merges them
(all, then parent groups, then child groups, then the host), and the groups it is in.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field
from typing import Any


class InventoryError(ValueError):
    """The object is not a usable inventory; the message says where."""


@dataclass
class Host:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)

    @property
    def address(self) -> str | None:
        explicit = self.vars.get("ansible_host")
        if explicit:
            return str(explicit)
        return self.name if _looks_like_address(self.name) else None

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port") or 22)

    @property
    def user(self) -> str | None:
        return self.vars.get("ansible_user")

    @property
    def key_file(self) -> str | None:
        return self.vars.get("ansible_ssh_private_key_file")

    @property
    def vm_id(self) -> int | None:
        value = self.vars.get("vm_id")
        return int(value) if str(value).isdigit() else None

    @property
    def template_id(self) -> int | None:
        value = self.vars.get("template_id")
        return int(value) if str(value).isdigit() else None

    def ssh_args(self, connect_timeout: float = 5) -> list[str]:
        """Options for OpenSSH's ssh to reach this host as Ansible would (without the command)."""
        args = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(connect_timeout))}",
                "-p", str(self.port)]
        if self.key_file:
            args += ["-i", str(self.key_file)]
        for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            if self.vars.get(key):
                args += shlex.split(str(self.vars[key]))
        target = f"{self.user}@{self.address}" if self.user else str(self.address)
        return args + [target]

    def label(self) -> str:
        return f"{self.name} ({self.address}:{self.port})"


def _looks_like_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return "." in name


def parse(data: Any) -> dict[str, Host]:
    """host name -> Host, from an inventory object; InventoryError if it is not one."""
    if not isinstance(data, dict):
        raise InventoryError(f"expected an inventory object, got {type(data).__name__}")
    hosts: dict[str, Host] = {}
    root = data.get("all") if isinstance(data.get("all"), dict) else {}
    _group("all", root, [], hosts, path="all")
    for name, group in data.items():
        if name != "all":
            _group(str(name), group, ["all"], hosts, path=str(name), inherited=[root.get("vars") or {}])
    return hosts


def _group(name: str, group: Any, parents: list[str], hosts: dict[str, Host], path: str,
           inherited: list[dict] | None = None) -> None:
    if group is None:
        return
    if not isinstance(group, dict):
        raise InventoryError(f"group {path} must be a mapping with hosts, vars or children")
    unknown = set(group) - {"hosts", "vars", "children"}
    if unknown:
        raise InventoryError(f"group {path} has unknown key {sorted(unknown)[0]!r} "
                             "(expected hosts, vars, children)")
    group_vars = group.get("vars") or {}
    if not isinstance(group_vars, dict):
        raise InventoryError(f"group {path}: vars must be a mapping")
    chain = (inherited or []) + [group_vars]
    members = group.get("hosts") or {}
    if not isinstance(members, dict):
        raise InventoryError(f"group {path}: hosts must be a mapping of host name to variables")
    for host_name, host_vars in members.items():
        if host_vars is not None and not isinstance(host_vars, dict):
            raise InventoryError(f"host {host_name} in group {path}: variables must be a mapping")
        host = hosts.setdefault(str(host_name), Host(str(host_name)))
        merged: dict[str, Any] = {}
        for layer in chain:
            merged.update(layer)
        merged.update(host.vars)
        merged.update(host_vars or {})
        host.vars = merged
        host.groups.update(parents + [name])
    children = group.get("children") or {}
    if not isinstance(children, dict):
        raise InventoryError(f"group {path}: children must be a mapping of group names")
    for child_name, child in children.items():
        _group(str(child_name), child, parents + [name], hosts, f"{path}.children.{child_name}", chain)


def by_template(data: Any) -> dict[int, list[str]]:
    """template id -> the names of the inventory's hosts cloned from it (host variable template_id); {} for none."""
    found: dict[int, list[str]] = {}
    for host in (parse(data).values() if data is not None else []):
        if host.template_id:
            found.setdefault(host.template_id, []).append(host.name)
    return found


def in_group(hosts: dict[str, Host], group: str) -> dict[str, Host]:
    return {name: host for name, host in hosts.items() if group in host.groups or group == "all"}


def merge(inventories: dict[str, Any]) -> dict:
    """One inventory from several (source name -> inventory object): groups, children and variables merged, the first
    source winning where two give a variable different values. InventoryError naming both sources when one host
    has different addresses in two of them: Ansible would configure one of the machines twice."""
    seen: dict[str, tuple[str, str | None]] = {}
    for source, data in inventories.items():
        for host in parse(data).values():
            first = seen.setdefault(host.name, (source, host.address))
            if first[1] != host.address:
                raise InventoryError(f"host {host.name} is {first[1]} in the inventory of {first[0]} but "
                                     f"{host.address} in that of {source}: give it one address, or different names")
    merged: dict = {}
    for data in inventories.values():
        _merge_into(merged, data)
    return merged


def _merge_into(target: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        elif key not in target or target[key] is None:
            target[key] = value


def set_address(data: dict, host: str, address: str) -> None:
    """Give host its address (ansible_host) wherever the inventory object defines it."""
    for group in _groups(data):
        members = group.get("hosts") or {}
        if host in members:
            members[host] = {**(members[host] or {}), "ansible_host": address}


def _groups(data: dict) -> list[dict]:
    found = []
    todo = [group for group in data.values() if isinstance(group, dict)]
    while todo:
        group = todo.pop()
        found.append(group)
        todo += [child for child in (group.get("children") or {}).values() if isinstance(child, dict)]
    return found
