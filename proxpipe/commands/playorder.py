"""The order of a repository's playbooks, for `proxpipe init`: which one is the base play that the others run after,
where that can be told (it imports others, its plays run on hosts: all, it is named like base, common or site), and
which playbooks are only imported by another one (they run inside it, not as stages of their own).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

BASE_NAMES = ("base", "common", "site", "bootstrap", "baseline", "setup", "prepare", "all")
_IMPORT_KEYS = ("import_playbook", "ansible.builtin.import_playbook")


class Order(NamedTuple):
    playbooks: tuple[Path, ...]  # the stages' playbooks, the base one first
    base: Path | None  # the one the others need, when one can be told
    why: str  # why that one is the base, or why none is
    imported: dict[Path, Path]  # a playbook another one imports -> that one


def plays(path: Path) -> list[dict]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    return [play for play in data if isinstance(play, dict)] if isinstance(data, list) else []


def imports(path: Path) -> list[Path]:
    """The playbook files it imports (import_playbook with a plain file name, relative to it)."""
    found = []
    for play in plays(path):
        for key in _IMPORT_KEYS:
            name = play.get(key)
            if isinstance(name, str) and "{{" not in name and (path.parent / name).is_file():
                found.append((path.parent / name).resolve())
    return found


def _hosts_all(play: dict) -> bool:
    hosts = play.get("hosts")
    return hosts in ("all", "*") or (isinstance(hosts, list) and ("all" in hosts or "*" in hosts))


def _base_reasons(path: Path, imported: list[Path]) -> tuple[int, list[str]]:
    """(how strongly it looks like the base playbook, the reasons)."""
    score, why = 0, []
    if imported:
        score, why = 3, [f"it imports {', '.join(p.name for p in imported)}"]
    runs = [play for play in plays(path) if "hosts" in play]
    if runs and all(_hosts_all(play) for play in runs):
        score, why = score + 2, [*why, "its plays run on hosts: all"]
    elif runs and _hosts_all(runs[0]):
        score, why = score + 1, [*why, "its first play runs on hosts: all"]
    stem = path.name.split(".")[0].lower()
    if stem in BASE_NAMES:
        score, why = score + 2, [*why, f"it is named {path.name}"]
    return score, why


def order(playbooks: list[Path]) -> Order:
    """The playbooks a stage each (not those another of them imports), the base one first, then as found."""
    resolved = {p.resolve(): p for p in playbooks}
    imported = {resolved[i]: p for p in playbooks for i in imports(p) if i in resolved and resolved[i] != p}
    staged = [p for p in playbooks if p not in imported] or list(playbooks)  # a cycle of imports: keep them all
    if len(staged) < 2:
        return Order(tuple(staged), None, "", imported)
    reasons = {p: _base_reasons(p, [i for i, by in imported.items() if by == p]) for p in staged}
    best = max(staged, key=lambda p: (reasons[p][0], -_name_rank(p), -staged.index(p)))
    if reasons[best][0] == 0:
        return Order(tuple(staged), None, "no playbook looks like a base one (importing others, hosts: all, named "
                                          f"{'/'.join(BASE_NAMES[:3])})", imported)
    return Order((best, *(p for p in staged if p != best)), best, "; ".join(reasons[best][1]), imported)


def _name_rank(path: Path) -> int:
    stem = path.name.split(".")[0].lower()
    return BASE_NAMES.index(stem) if stem in BASE_NAMES else len(BASE_NAMES)
