"""What `proxpipe init` finds in an existing infrastructure repository: Packer templates, Terraform root
modules with their inventory output, Ansible playbooks, and the variables that take the template id.

Every guess keeps its candidates and the reason it was chosen, so init can show them and write the
others as comments.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from proxpipe.domain import hcl

# Folders that never hold the user's own sources.
SKIP_DIRS = {".git", ".terraform", ".venv", "venv", "node_modules", ".pipeline", "packer_cache", "__pycache__",
             ".tox", ".ansible", ".tools", "collections", "roles-cache"}
PLAYBOOK_NAMES = ("site.yml", "site.yaml", "main.yml", "playbook.yml")


class Guess(NamedTuple):
    value: Any  # the chosen candidate, or None
    candidates: tuple  # everything that could be it, the chosen one first
    why: str  # for the user: why this one

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


NOTHING = Guess(None, (), "nothing found")


class Found(NamedTuple):
    packer: Guess  # the template file
    packer_id_var: Guess
    terraform: Guess  # the root module's directory
    output: Guess  # the output holding the inventory
    terraform_id_var: Guess
    ansible: Guess  # (project directory, playbook)


def walk(root: Path) -> Iterator[Path]:
    """Every file under root, sorted, skipping hidden folders and tool caches."""
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(names):
            yield Path(top) / name


def discover(root: Path) -> Found:
    paths = list(walk(root))
    packer = _packer(paths)
    terraform = _terraform(paths)
    return Found(packer, _packer_id_var(packer.value), terraform, _output(terraform.value),
                 _terraform_id_var(terraform.value), _ansible(root, paths))


# ----------------------------------------------------------------------------- Packer


def _packer(paths: list[Path]) -> Guess:
    templates = [p for p in paths if p.name.endswith(".pkr.hcl")
                 and any(kind in hcl.parse(p) for kind in ("build", "source"))]
    with_build = [p for p in templates if "build" in hcl.parse(p)]
    chosen = with_build or templates
    if not chosen:
        return NOTHING
    return Guess(chosen[0], tuple(chosen), f"{chosen[0].name} has a build block" if with_build
                 else f"{chosen[0].name} has a source block")


def _packer_id_var(template: Path | None) -> Guess:
    """The Packer variable the template gives its builder as vm_id: the new template's VMID."""
    if template is None:
        return NOTHING
    found = []
    for _path, block in hcl.blocks(template.parent, hcl.PACKER, "source"):
        for key, value in hcl.walk(block):
            name = hcl.var_reference(value) if key == "vm_id" else None
            if name and name not in found:
                found.append(name)
    if not found:
        return Guess(None, (), "no source block sets vm_id from a variable")
    return Guess(found[0], tuple(found), f"a source block sets vm_id = var.{found[0]}")


# ----------------------------------------------------------------------------- Terraform


def _is_root_module(directory: Path) -> bool:
    for path in hcl.source_files(directory, hcl.TERRAFORM):
        data = hcl.parse(path)
        if data.get("provider") or any("backend" in (block or {}) for block in data.get("terraform", [])):
            return True
    return False


def _terraform(paths: list[Path]) -> Guess:
    folders = sorted({p.parent for p in paths if p.suffix == ".tf"})
    roots = [d for d in folders if _is_root_module(d)]
    if not roots:
        return NOTHING if not folders else Guess(None, tuple(folders), "no folder of .tf files has a provider or "
                                                                        "backend block (only modules?)")
    return Guess(roots[0], tuple(roots), f"{roots[0].name}/ has a provider or backend block")


def _inventory_like(value: Any) -> str | None:
    """How value builds an Ansible inventory, or None: an object with all/children, or jsonencode() of one."""
    encoded = hcl.call_argument(value, "jsonencode")
    if isinstance(encoded, dict) and ({"all", "children"} & set(encoded)):
        return "jsonencode() of an object with " + "/".join(sorted({"all", "children"} & set(encoded)))
    if isinstance(value, dict) and ({"all", "children"} & set(value)):
        return "an object with " + "/".join(sorted({"all", "children"} & set(value)))
    return None


def _output(directory: Path | None) -> Guess:
    if directory is None:
        return NOTHING
    outputs = hcl.outputs(directory)
    shapes = {name: _inventory_like(value) for name, value in outputs.items()}
    found = sorted((name for name, shape in shapes.items() if shape), key=lambda n: ("inventory" not in n, n))
    if found:
        return Guess(found[0], tuple(found), f"output {found[0]} is {shapes[found[0]]}")
    named = [name for name in outputs if "inventory" in name]
    if named:
        return Guess(named[0], tuple(named), f"output {named[0]} is named like an inventory")
    return Guess(None, tuple(outputs), "no output builds an inventory object")


def _terraform_id_var(directory: Path | None) -> Guess:
    """The variable a VM is cloned from: used as a clone block's vm_id, else named like a template or clone id."""
    if directory is None:
        return NOTHING
    cloned = []
    for _path, block in hcl.blocks(directory, hcl.TERRAFORM, "resource"):
        for key, value in hcl.walk(block):
            if key == "clone":
                for _inner, ref in hcl.walk(value):
                    name = hcl.var_reference(ref)
                    if name and name not in cloned:
                        cloned.append(name)
    if cloned:
        return Guess(cloned[0], tuple(cloned), f"a clone block takes its vm_id from var.{cloned[0]}")
    names = [n for n in hcl.variables(directory, hcl.TERRAFORM)
             if ("template" in n or "clone" in n) and (n.endswith("id") or n.endswith("vmid"))]
    if names:
        return Guess(names[0], tuple(names), f"variable {names[0]} is named like a template or clone id")
    return Guess(None, (), "no variable looks like the template id")


# ----------------------------------------------------------------------------- Ansible


def _ansible(root: Path, paths: list[Path]) -> Guess:
    playbooks = [p for p in paths if p.suffix in (".yml", ".yaml") and _looks_like_playbook(p)
                 and (p.name in PLAYBOOK_NAMES or p.parent.name == "playbooks")]
    if not playbooks:
        return NOTHING
    playbooks.sort(key=lambda p: (p.name not in ("site.yml", "site.yaml"), len(p.parts), str(p)))
    candidates = tuple((_project_dir(p), p) for p in playbooks)
    directory, playbook = candidates[0]
    return Guess(candidates[0], candidates, f"{playbook.relative_to(root)} is a playbook (a list of plays with "
                                            "hosts:)")


def _project_dir(playbook: Path) -> Path:
    """Where ansible-playbook runs: the collection or project folder above playbooks/, else the playbook's own."""
    return playbook.parent.parent if playbook.parent.name == "playbooks" else playbook.parent


def _looks_like_playbook(path: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, list) and bool(data) and all(
        isinstance(play, dict) and ("hosts" in play or "import_playbook" in play or "ansible.builtin.import_playbook"
                                    in play) for play in data)
