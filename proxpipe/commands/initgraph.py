"""The stage graph `proxpipe init` writes for a repository: a build stage per Packer template with a build block, a
provision stage per Terraform root module, a configure stage per playbook, and what each needs:

- a root needs the builds whose templates its template-id variables take (proxpipe.commands.templatematch);
- the base playbook needs the roots that hand off an inventory, and every later playbook needs the base one
  (proxpipe.commands.playorder), so it runs after it on the same inventory.

A kind with one stage keeps its plain name (build, provision, configure); with several, each is named for what it
runs (build-ubuntu, provision-network, configure-base). One of each is today's three-stage chain.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from proxpipe.domain import hcl

from . import discover, inventorynote, playorder, templatematch
from .discover import Found, Guess

# Folder and file names that say nothing about what is in them: a stage is named for the folder above instead.
_GENERIC = {"packer", "templates", "template", "images", "image", "main", "build", "terraform", "tf", "tofu",
            "opentofu", "infra", "infrastructure", "ansible", "playbooks", "src", "root", "sources", "source"}
RANGE_LOW, RANGE_SIZE = 8000, 1000  # template_id_range: VMIDs for new templates, shared out among the builds


class BuildStage(NamedTuple):
    name: str
    template: Guess  # value: the template file
    id_var: Guess  # the Packer variable that takes the allocated VMID
    id_range: tuple[int, int]
    exclude: tuple[str, ...]  # other builds' templates beside it: not its inputs


class ProvisionStage(NamedTuple):
    name: str
    dir: Guess
    output: Guess  # the inventory output
    id_var: Guess  # the template-id variable, as one root alone is guessed
    takes: tuple[templatematch.Match, ...]  # with builds to choose from: which build each variable takes
    vms: tuple[inventorynote.Vm, ...]
    exclude: tuple[str, ...]

    @property
    def inventory(self) -> bool:
        """Whether it hands off hosts to configure: it has an inventory output, or VMs to list in one."""
        return self.output.value is not None or bool(self.vms)


class ConfigureStage(NamedTuple):
    name: str
    playbook: Guess  # value: (project directory, playbook)
    order: str  # why it runs first, or after which one; "" for a playbook alone
    after: str | None  # the base playbook's stage, which it runs after
    exclude: tuple[str, ...]  # the other stages' playbooks beside it: not its inputs


class Plan(NamedTuple):
    builds: tuple[BuildStage, ...]
    provisions: tuple[ProvisionStage, ...]
    configures: tuple[ConfigureStage, ...]
    needs: dict[str, tuple[str, ...]]  # every stage, in the order written
    notes: tuple[str, ...]  # for the user: playbooks left out and why

    @property
    def names(self) -> list[str]:
        return list(self.needs)

    @property
    def chain(self) -> bool:
        """Each stage needs exactly the one before it: what pipeline.yaml says without any needs."""
        names = self.names
        return all(self.needs[name] == tuple(names[i - 1:i]) for i, name in enumerate(names))

    @property
    def single(self) -> bool:
        return len(self.builds) <= 1 and len(self.provisions) <= 1 and len(self.configures) <= 1


def plan(root: Path, paths: list[Path], found: Found, env_name: str | None = None) -> Plan:
    """The graph of the repository's stages; found: discover()'s guesses, which one stage of a kind keeps. Root
    modules under environments/NAME/ are those of environment NAME: env_name's, else the first one's."""
    with_build, _all = discover.templates(paths)
    notes: list[str] = []
    roots = _of_environment(root, discover.root_modules(paths)[0], env_name, notes)
    builds = _builds(root, with_build, found)
    provisions = _provisions(root, roots, found, builds)
    configures = _configures(root, _playbooks(root, paths, with_build, notes), found, notes)
    needs: dict[str, tuple[str, ...]] = {b.name: () for b in builds}
    for stage in provisions:
        needs[stage.name] = _provision_needs(stage, builds, len(provisions))
    feeding = tuple(p.name for p in provisions if p.inventory) or tuple(p.name for p in provisions)
    for stage in configures:
        needs[stage.name] = (stage.after,) if stage.after else feeding
    return Plan(tuple(builds), tuple(provisions), tuple(configures), needs, tuple(notes))


# ----------------------------------------------------------------------------- builds


def _builds(root: Path, templates: list[Path], found: Found) -> list[BuildStage]:
    if len(templates) < 2:
        if found.packer.value is None:
            return []
        return [BuildStage("build", found.packer, found.packer_id_var, (RANGE_LOW, RANGE_LOW + RANGE_SIZE - 1), ())]
    names = unique_names("build", [(t, t.name.split(".")[0]) for t in templates], root)
    step = 100 * max(1, RANGE_SIZE // 100 // len(templates))
    return [BuildStage(names[t], Guess(t, (t,), f"{t.name} has a build block"), discover.packer_id_var(t),
                       (RANGE_LOW + i * step, RANGE_LOW + (i + 1) * step - 1), _beside(t, t.parent, templates))
            for i, t in enumerate(templates)]


def _beside(own: Path, directory: Path, others: list[Path]) -> tuple[str, ...]:
    """What of the other stages lies under directory, relative to it (globs of `exclude:`): their files, and their
    folders below it that do not hold own."""
    found: list[str] = []
    for other in others:
        if other == own or other == directory or not other.is_relative_to(directory):
            continue
        folder = other if other.is_dir() else other.parent
        if folder != directory and not own.is_relative_to(folder):
            glob = f"{folder.relative_to(directory)}/*"
        else:
            glob = str(other.relative_to(directory))
        if glob not in found:
            found.append(glob)
    return tuple(found)


# ----------------------------------------------------------------------------- Terraform roots


def environment(path: Path) -> str | None:
    """NAME when path lies in environments/NAME/."""
    return next((p.name for p in (path, *path.parents) if p.parent.name == "environments"), None)


def _of_environment(root: Path, roots: list[Path], env_name: str | None, notes: list[str]) -> list[Path]:
    """The roots of one environment (and those of none): one pipeline environment does not provision two."""
    named = [environment(d) for d in roots if environment(d)]
    chosen = env_name if env_name in named else named[0] if named else None
    for d in roots:
        if environment(d) not in (None, chosen):
            notes.append(f"{_rel(root, d)}: left out, it is environment {environment(d)}'s (proxpipe init --env "
                         f"{environment(d)} writes that one instead)")
    return [d for d in roots if environment(d) in (None, chosen)]


def _provisions(root: Path, roots: list[Path], found: Found, builds: list[BuildStage]) -> list[ProvisionStage]:
    if len(roots) == 1 and found.terraform.value == roots[0]:
        directories = [(found.terraform, found.output, found.terraform_id_var, "provision")]
    else:
        names = unique_names("provision", [(d, d.name) for d in roots], root) if len(roots) > 1 else \
            {d: "provision" for d in roots}
        directories = [(Guess(d, (d,), f"{d.name}/ has a provider or backend block"), discover.inventory_output(d),
                        discover.terraform_id_var(d), names[d]) for d in roots]
    told = [templatematch.build(b.name, b.template.value) for b in builds] if len(builds) > 1 else []
    return [ProvisionStage(name, guess, output, id_var, _takes(guess.value, told),
                           tuple(inventorynote.vm_resources(guess.value)), _beside(guess.value, guess.value, roots))
            for guess, output, id_var, name in directories]


def _takes(directory: Path, builds: list[templatematch.Build]) -> tuple[templatematch.Match, ...]:
    """With several builds to choose from: which one each template-id variable takes, and how it was found."""
    variables = discover.template_id_vars(directory) if builds else []
    how = dict(variables)
    return tuple(m._replace(why=f"{how[m.var]}; " + (f"it takes {m.build}'s template: {m.why}" if m.build else m.why))
                 for m in templatematch.match(directory, list(how), builds)) if variables else ()


def _provision_needs(stage: ProvisionStage, builds: list[BuildStage], roots: int) -> tuple[str, ...]:
    if stage.takes:
        taken = {m.build for m in stage.takes}
        return tuple(b.name for b in builds if b.name in taken)
    if len(builds) == 1 and (stage.id_var.value is not None or roots == 1):
        return (builds[0].name,)  # the only build, as in the three-stage chain
    return ()


# ----------------------------------------------------------------------------- playbooks


def _playbooks(root: Path, paths: list[Path], templates: list[Path], notes: list[str]) -> list[Path]:
    """The playbooks, without those a Packer template runs (provisioner "ansible"): those configure the image."""
    used = {}
    for template in templates:
        for playbook in _packer_playbooks(template):
            used[playbook] = template
    found = []
    for path in discover.playbooks(paths):
        if path.resolve() in used:
            notes.append(f"{_rel(root, path)}: left out, {used[path.resolve()].name} runs it (provisioner ansible)")
        else:
            found.append(path)
    return found


def _packer_playbooks(template: Path) -> list[Path]:
    found = []
    for block in hcl.parse(template).get("build") or []:
        for provisioner in (block.get("provisioner") or []) if isinstance(block, dict) else []:
            for kind, body in provisioner.items() if isinstance(provisioner, dict) else ():
                file = body.get("playbook_file") if kind in ("ansible", "ansible-local") and isinstance(
                    body, dict) else None
                if isinstance(file, str):
                    file = file.replace("${path.root}", str(template.parent))
                    found.append((template.parent / file).resolve())
    return found


def _configures(root: Path, playbooks: list[Path], found: Found, notes: list[str]) -> list[ConfigureStage]:
    ordered = playorder.order(playbooks)
    for imported, by in ordered.imported.items():
        notes.append(f"{_rel(root, imported)}: no stage of its own, {by.name} imports it")
    if len(ordered.playbooks) < 2:
        if not ordered.playbooks:
            return []
        guess = found.ansible if found.ansible.value and found.ansible.value[1] == ordered.playbooks[0] else \
            _playbook_guess(root, ordered.playbooks[0])
        return [ConfigureStage("configure", guess._replace(candidates=(guess.value,)), "", None, ())]
    names = unique_names("configure", [(p, p.name.split(".")[0]) for p in ordered.playbooks], root)
    stages = []
    for playbook in ordered.playbooks:
        if ordered.base is None:
            order = f"CHECK: {ordered.why}: the playbooks run side by side; say needs: [...] to order them"
        elif playbook == ordered.base:
            order = f"first: {ordered.why}; the other playbooks need it"
        else:
            order = f"after {names[ordered.base]}, on the hosts of the same inventory"
        directory = discover.project_dir(playbook)
        after = names[ordered.base] if ordered.base not in (None, playbook) else None
        stages.append(ConfigureStage(names[playbook], _playbook_guess(root, playbook), order, after,
                                     _beside(playbook, directory, list(ordered.playbooks))))
    return stages


def _playbook_guess(root: Path, playbook: Path) -> Guess:
    value = (discover.project_dir(playbook), playbook)
    return Guess(value, (value,), f"{_rel(root, playbook)} is a playbook (a list of plays with hosts:)")


# ----------------------------------------------------------------------------- names


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-_") or "stage"


def unique_names(prefix: str, items: list[tuple[Path, str]], root: Path) -> dict[Path, str]:
    """prefix-WORD for each (path, its own name): a name that says nothing (main, terraform) gives way to the folder's,
    and names two paths share take their folders' too (provision-prod-vms), then a number."""
    def own(path: Path, name: str) -> str:
        parts = [name] + [p.name for p in path.parents if p.is_relative_to(root) and p != root]
        return next((slug(p) for p in parts if p.lower() not in _GENERIC), slug(name))

    names = {path: own(path, name) for path, name in items}
    shared = {name for name in names.values() if list(names.values()).count(name) > 1}
    for path, name in names.items():
        if name in shared and path.parent != root and path.parent.name.lower() not in _GENERIC:
            names[path] = f"{slug(path.parent.name)}-{name}"
    taken: dict[str, int] = {}
    out = {}
    for path, name in names.items():
        taken[name] = taken.get(name, 0) + 1
        out[path] = f"{prefix}-{name}" + (f"-{taken[name]}" if taken[name] > 1 else "")
    return out


def _rel(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)
