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


def discover(root: Path, paths: list[Path] | None = None) -> Found:
    paths = list(walk(root)) if paths is None else paths
    packer = _packer(paths)
    terraform = _terraform(paths)
    return Found(packer, packer_id_var(packer.value), terraform, inventory_output(terraform.value),
                 terraform_id_var(terraform.value), _ansible(root, paths))


# ----------------------------------------------------------------------------- Packer


def templates(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(the Packer templates with a build block, those with a build or a source block)."""
    found = [p for p in paths if p.name.endswith(".pkr.hcl")
             and any(kind in hcl.parse(p) for kind in ("build", "source"))]
    return [p for p in found if "build" in hcl.parse(p)], found


def _packer(paths: list[Path]) -> Guess:
    with_build, found = templates(paths)
    chosen = with_build or found
    if not chosen:
        return NOTHING
    return Guess(chosen[0], tuple(chosen), f"{chosen[0].name} has a build block" if with_build
                 else f"{chosen[0].name} has a source block")


def packer_id_var(template: Path | None) -> Guess:
    """The Packer variable the template gives its builder as vm_id: the new template's VMID."""
    if template is None:
        return NOTHING
    found = []
    own = hcl.parse(template).get("source") or []  # `packer build FILE` reads that file's sources
    own = own if isinstance(own, list) else [own]
    for block in own or [block for _path, block in hcl.blocks(template.parent, hcl.PACKER, "source")]:
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


def root_modules(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(the folders of .tf files with a provider or backend block, every folder of .tf files)."""
    folders = sorted({p.parent for p in paths if p.suffix == ".tf"})
    return [d for d in folders if _is_root_module(d)], folders


def _terraform(paths: list[Path]) -> Guess:
    roots, folders = root_modules(paths)
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


def inventory_output(directory: Path | None) -> Guess:
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


def terraform_id_var(directory: Path | None) -> Guess:
    """The variable a VM is cloned from: used as a clone block's vm_id, else named like a template or clone id."""
    if directory is None:
        return NOTHING
    found = template_id_vars(directory)
    if not found:
        return Guess(None, (), "no variable looks like the template id")
    return Guess(found[0][0], tuple(name for name, _how in found), found[0][1])


def template_id_vars(directory: Path) -> list[tuple[str, str]]:
    """(name, how it was found) of the variables that take a template id: those a clone block takes its vm_id
    from, else those named like a template or clone id."""
    cloned: list[str] = []
    for _path, block in hcl.blocks(directory, hcl.TERRAFORM, "resource"):
        for key, value in hcl.walk(block):
            if key == "clone":
                for _inner, ref in hcl.walk(value):
                    name = hcl.var_reference(ref)
                    if name and name not in cloned:
                        cloned.append(name)
    if cloned:
        return [(name, f"a clone block takes its vm_id from var.{name}") for name in cloned]
    return [(n, f"variable {n} is named like a template or clone id") for n in hcl.variables(directory, hcl.TERRAFORM)
            if ("template" in n or "clone" in n) and (n.endswith("id") or n.endswith("vmid"))]


# ----------------------------------------------------------------------------- Ansible


def playbooks(paths: list[Path]) -> list[Path]:
    """The Ansible playbooks, site.yml first, then the shallower: YAML files that are lists of plays, named like a
    playbook (site.yml, ...) or beside one, in a playbooks/ or ansible/ folder, or beside an ansible.cfg."""
    named = [p for p in paths if p.name in PLAYBOOK_NAMES and _looks_like_playbook(p)]
    folders = {p.parent for p in named} | {p.parent for p in paths if p.name == "ansible.cfg"}
    found = [p for p in paths if p.suffix in (".yml", ".yaml") and "molecule" not in p.parts
             and (p in named or ((p.parent.name in ("playbooks", "ansible") or p.parent in folders)
                                 and _looks_like_playbook(p)))]
    return sorted(found, key=lambda p: (p.name not in ("site.yml", "site.yaml"), len(p.parts), str(p)))


def _ansible(root: Path, paths: list[Path]) -> Guess:
    found = playbooks(paths)
    if not found:
        return NOTHING
    candidates = tuple((project_dir(p), p) for p in found)
    directory, playbook = candidates[0]
    return Guess(candidates[0], candidates, f"{playbook.relative_to(root)} is a playbook (a list of plays with "
                                            "hosts:)")


def project_dir(playbook: Path) -> Path:
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
