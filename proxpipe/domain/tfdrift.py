"""Terraform's (or OpenTofu's) refresh-only plan, read: what changed outside Terraform.

`terraform plan -refresh-only -out=FILE`, then `terraform show -json FILE`: its `resource_drift` entries are the
resources whose real objects no longer match the state, each with the object as the state has it (`before`) and
as the provider read it now (`after`). Terraform 1.0 leaves `resource_drift` out when nothing drifted; later
versions may write it empty. Values are masked where `before_sensitive` or `after_sensitive` marks them (on both
sides: showing the unmarked side would show the value) and wherever a value of a variable declared
`sensitive = true` appears. The document itself holds every secret of the configuration in clear text: never log
it, read it from the tool's captured output only.
"""

from __future__ import annotations

import json
from typing import Any

from proxpipe.base.errors import ToolError
from proxpipe.domain.drift import RESOURCE, Change, DriftItem, differences

SENSITIVE = "(sensitive value)"  # what Terraform's own plans show
UNKNOWN = "(known after apply)"
READS = ("0", "1")  # the major versions of the plan format read here


class _Hidden:
    """A sensitive value in the trees compared: equal to the same value, shown as SENSITIVE."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return self.value == (other.value if isinstance(other, _Hidden) else other)

    __hash__ = None  # type: ignore[assignment]


def refresh_drift(show_json: str | dict, where: str = "terraform show -json") -> list[DriftItem]:
    """One RESOURCE item per resource that changed outside Terraform (subject: its address), with the attributes
    whose values differ as changes (`disk[0].size`: then = the state's value, now = the real object's), sensitive
    values masked; or "deleted outside Terraform" with no changes. [] when nothing drifted.

    show_json: the output of `terraform show -json PLANFILE` (text or parsed). ToolError, naming `where`, when it
    is not a plan document this reader understands."""
    plan = _document(show_json, where)
    hidden = sensitive_variable_values(plan)
    items = []
    for entry in plan.get("resource_drift") or []:
        item = _resource(entry, hidden, where)
        if item is not None:
            items.append(item)
    return items


def sensitive_variable_values(plan: dict) -> set[str]:
    """The values (as text) of the root module's variables that the configuration declares sensitive."""
    declared = ((plan.get("configuration") or {}).get("root_module") or {}).get("variables") or {}
    values = plan.get("variables") or {}
    found = set()
    for name, declaration in declared.items():
        value = (values.get(name) or {}).get("value")
        if isinstance(declaration, dict) and declaration.get("sensitive") and value not in (None, ""):
            found.update(_strings(value))
    return {text for text in found if len(text) >= 4}  # as secrets.register: shorter ones would mask words


def _document(show_json: str | dict, where: str) -> dict:
    plan = show_json
    if isinstance(show_json, str):
        try:
            plan = json.loads(show_json)
        except json.JSONDecodeError as exc:
            raise ToolError(f"{where}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(plan, dict) or "format_version" not in plan:
        raise ToolError(f"{where}: not a Terraform plan document (no format_version); was it given a saved plan?")
    major = str(plan["format_version"]).split(".")[0]
    if major not in READS:
        raise ToolError(f"{where}: plan format {plan['format_version']} (Terraform "
                        f"{plan.get('terraform_version', '?')}) is newer than proxpipe reads (0.x and 1.x)")
    if not isinstance(plan.get("resource_drift", []), list | None):
        raise ToolError(f"{where}: resource_drift is not a list")
    return plan


def _resource(entry: Any, hidden: set[str], where: str) -> DriftItem | None:
    address = entry.get("address") if isinstance(entry, dict) else None
    change = entry.get("change") if isinstance(entry, dict) else None
    if not isinstance(address, str) or not isinstance(change, dict):
        raise ToolError(f"{where}: a resource_drift entry without an address and a change: {str(entry)[:80]}")
    if change.get("after") is None and "delete" in (change.get("actions") or []):
        return DriftItem(RESOURCE, address, "deleted outside Terraform")
    then = _redacted(change.get("before"), change.get("before_sensitive"), False)
    now = _redacted(change.get("after"), change.get("after_sensitive"), change.get("after_unknown"))
    changes = tuple(_shown(c, hidden) for c in differences(then, now))
    return DriftItem(RESOURCE, address, "changed outside Terraform", changes) if changes else None


def _redacted(value: Any, sensitive: Any, unknown: Any) -> Any:
    """value with each subtree its sensitive tree marks true wrapped in _Hidden, and each its unknown tree marks
    true replaced by UNKNOWN (the trees mirror the value: objects by key, lists by index)."""
    if sensitive is True:
        return _Hidden(value)
    if unknown is True:
        return UNKNOWN
    if isinstance(value, dict):
        return {key: _redacted(item, _under(sensitive, key), _under(unknown, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, _under(sensitive, i), _under(unknown, i)) for i, item in enumerate(value)]
    return value


def _under(tree: Any, key: str | int) -> Any:
    if isinstance(tree, dict) and isinstance(key, str):
        return tree.get(key)
    if isinstance(tree, list) and isinstance(key, int) and key < len(tree):
        return tree[key]
    return None


def _shown(change: Change, hidden: set[str]) -> Change:
    """The change as it may be shown: both sides masked when either is sensitive; a sensitive part of an object
    or list that appeared or vanished as a whole masked in it."""
    if isinstance(change.then, _Hidden) or isinstance(change.now, _Hidden) or _holds(change, hidden):
        return Change(change.path, SENSITIVE, SENSITIVE)
    return Change(change.path, _plain(change.then), _plain(change.now))


def _plain(value: Any) -> Any:
    if isinstance(value, _Hidden):
        return SENSITIVE
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _holds(change: Change, hidden: set[str]) -> bool:
    """True when a side of the change contains a sensitive variable's value (a password pasted into a VM's
    description): both sides are masked then, like a sensitive attribute."""
    return any(secret in text for side in (change.then, change.now) for text in _strings(side) for secret in hidden)


def _strings(value: Any) -> list[str]:
    """The strings in a JSON-like value, numbers as text; not those of a hidden value, which is masked anyway."""
    if isinstance(value, _Hidden):
        return []
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [str(value)]
    return []

