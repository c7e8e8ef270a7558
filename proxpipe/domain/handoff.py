"""Handoff files: the interfaces between stages, checked on write and on read, written atomically.

A handoff kind knows its default file name, how to parse and check its text, and how to write a
value. A failed check never replaces a good file: the previous one stays until a valid one
replaces it in one rename.
"""

import json
from pathlib import Path
from typing import Any, NamedTuple

from proxpipe.base.errors import DamagedHandoff, HandoffError
from proxpipe.base.fsutil import display
from proxpipe.domain import inventory

VMID_MIN, VMID_MAX = 100, 999_999_999
PLACEHOLDERS = ("dhcp",)  # an ansible_host that says the address is not known yet (the guest agent will tell)


class HandoffKind(NamedTuple):
    name: str
    title: str  # "a template id", for messages
    filename: str
    format: str  # for the docs
    example: str
    rules: tuple[str, ...]

    def parse(self, text: str) -> Any:
        """The value in text; ValueError with the problem if it fails a rule."""
        return _PARSERS[self.name](text)

    def dump(self, value: Any) -> str:
        return _DUMPERS[self.name](value)

    def summary(self, value: Any) -> str:
        """A short text form for the console, history and notifications."""
        return _SUMMARIES[self.name](value)


def parse_template_id(text: str | int) -> int:
    raw = str(text).strip()
    if not raw.lstrip("-").isdigit() or raw.startswith("+"):
        raise ValueError(f"{_short(raw)} is not a Proxmox VMID (an integer from {VMID_MIN} to {VMID_MAX})")
    value = int(raw)
    if not VMID_MIN <= value <= VMID_MAX:
        raise ValueError(f"{value} is outside the Proxmox VMID range {VMID_MIN}..{VMID_MAX}")
    return value


def parse_inventory(text: str | dict, addresses: bool = True) -> dict:
    """An inventory object from its text; addresses: every host must have one (False: some may be left for the
    guest agent to tell)."""
    data = text
    if isinstance(text, str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if isinstance(data, str):
        # What `terraform output -json` gives for a jsonencode() output: a JSON string holding JSON.
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"a JSON string that does not hold JSON ({exc.msg}); the output must be an "
                             "inventory object or jsonencode() of one") from None
    if not isinstance(data, dict):
        kind = "a string" if isinstance(data, str) else type(data).__name__.replace("dict", "object")
        raise ValueError(f"expected an inventory object, got {kind}")
    try:
        hosts = inventory.parse(data)
    except inventory.InventoryError as exc:
        raise ValueError(str(exc)) from None
    if not hosts:
        raise ValueError("the inventory has no hosts")
    for host in hosts.values() if addresses else ():
        if not host.address or host.address in PLACEHOLDERS:
            raise ValueError(f"host {host.name} has no address (set ansible_host)")
    return data


def parse_configure(text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    missing = [key for key in ("playbook", "recap", "duration", "finished") if key not in data]
    if missing:
        raise ValueError(f"missing field {missing[0]!r}")
    if not isinstance(data["recap"], dict) or not data["recap"]:
        raise ValueError("recap must name at least one host")
    return data


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _inventory_summary(value: dict) -> str:
    hosts = sorted(inventory.parse(value))
    shown = ", ".join(hosts[:3]) + (", ..." if len(hosts) > 3 else "")
    return f"{len(hosts)} host{'s' if len(hosts) != 1 else ''} ({shown})"


def _configure_summary(value: dict) -> str:
    recap = value["recap"]
    changed = sum(int(r.get("changed", 0)) for r in recap.values())
    return f"{len(recap)} host{'s' if len(recap) != 1 else ''} configured, {changed} changed"


_PARSERS = {"template_id": parse_template_id, "inventory": parse_inventory, "configure": parse_configure,
            "file": lambda text: text}
_DUMPERS = {"template_id": lambda value: f"{int(value)}\n", "inventory": _dump_json,
            "configure": _dump_json, "file": str}
_SUMMARIES = {"template_id": lambda value: f"template {value}", "inventory": _inventory_summary,
              "configure": _configure_summary, "file": lambda value: f"{len(value)} bytes"}

TEMPLATE_ID = HandoffKind(
    "template_id", "a template id", "template_id.txt", "one integer and a newline", "8025",
    (f"an integer from {VMID_MIN} to {VMID_MAX} (a Proxmox VMID); blanks around it are ignored",
     "with a Proxmox API configured: the VM exists on the node and is a template"))
INVENTORY = HandoffKind(
    "inventory", "an inventory", "ansible_inventory.json", "an Ansible inventory object (JSON)",
    '{"all": {"children": {"jump_hosts": {"hosts": {\n'
    '  "jump-01": {"ansible_host": "192.168.10.250", "ansible_user": "ansible"}\n}}}}}',
    ("parses as JSON", "an object, not a string; a string holding JSON (what jsonencode() gives) is decoded once",
     "at least one host", "every host has an address (ansible_host, or a host name that is an address)"))
CONFIGURE = HandoffKind(
    "configure", "a play recap", "configure.json", "a JSON object: playbook, recap per host, duration",
    '{"playbook": "site.yml", "duration": 3.1, "finished": "2026-01-01T12:00:00+0000",\n'
    ' "recap": {"jump-01": {"ok": 5, "changed": 0, "unreachable": 0, "failed": 0}}}',
    ("written only when the play succeeded", "names the playbook and at least one host",
     "records the digests of the inventory and playbook inputs it was made from"))
FILE = HandoffKind("file", "a file", "handoff.txt", "any text", "...", ("exists",))

KINDS = {kind.name: kind for kind in (TEMPLATE_ID, INVENTORY, CONFIGURE, FILE)}


def read(kind: HandoffKind, path: Path) -> Any:
    """The checked value of a handoff file given by hand; HandoffError naming the file and problem otherwise."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedHandoff(f"{display(path)}: cannot read: {exc}", Path(path), f"cannot read: {exc}") from None
    return parse_text(kind, text, path)


def parse_text(kind: HandoffKind, text: str | None, path: Path) -> Any:
    """The checked value of a handoff's text (None: there is none); HandoffError naming path otherwise:
    DamagedHandoff when there is a text that fails its checks (damage, not "never made")."""
    if text is None:
        raise HandoffError(f"{display(path)}: missing")
    try:
        return kind.parse(text)
    except ValueError as exc:
        raise DamagedHandoff(f"{display(path)}: {exc}", Path(path), str(exc)) from None


def checked_text(kind: HandoffKind, value: Any, path: Path) -> str:
    """The text of a handoff value, after checking it as a reader will; HandoffError instead of an invalid one."""
    text = kind.dump(value)
    try:
        kind.parse(text)
    except ValueError as exc:
        raise HandoffError(f"{display(path)}: refusing to write an invalid handoff: {exc}") from None
    return text
