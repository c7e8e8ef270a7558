"""Which build's template each template-id variable of a Terraform root takes, for `proxpipe init`: the words of
the variable's name, description and default against the words that name a build (its file, its folder, its source
and build names, the strings its sources set, the VMID it builds), with the reason for the user.

    ubuntu_template_id <-> ubuntu-2404.pkr.hcl: "its name says ubuntu, as does the file name ubuntu-2404.pkr.hcl"

Words every build shares (a common OS, "minimal") tell nothing apart and do not count. HCL is read with python-hcl2
(proxpipe.domain.hcl); the regular expression here only splits names and values, already parsed, into words.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

from proxpipe.domain import hcl

# Words that say "a template id" or are noise in names, descriptions, URLs and paths, never which build.
_STOP = set("""template templates tpl id ids vmid vmids vm vms clone cloned golden image images base the of a an to
from for var packer proxmox pve source sources build builds built pkr hcl json and or with this that is in on by it
its be new number name names which used use using each per https http www com org net io iso img qcow2 raw cloud
cloudimg cloudinit init amd64 arm64 x86 64 local lvm qemu kvm linux default value passed pipeline stage""".split())
# How much one kind of evidence weighs: a VMID the build makes outweighs a word anywhere.
_WEIGHTS = {"name": 4, "name2": 3, "vmid": 5, "default": 2, "description": 2}


class Build(NamedTuple):
    """What tells one build stage's template apart."""

    name: str  # the stage
    template: Path
    words: dict[str, tuple[str, bool]]  # word -> (where it comes from, for the reason; whether it names the build)
    vmids: dict[int, str]  # a VMID it builds -> where that comes from


class Match(NamedTuple):
    var: str
    build: str | None  # the build stage whose template it takes; None: no build is left for it
    why: str
    others: tuple[str, ...] = ()  # the build stages it could as well take


def words(text: Any) -> list[str]:
    """The words of a name or value, lower case: each run of letters and digits, and its letters and its digits
    apart when both are words (ubuntu2404 -> ubuntu2404, ubuntu, 2404; k8s stays k8s)."""
    found = []
    for run in re.findall(r"[a-z0-9]+", str(text).lower()):
        parts = re.findall(r"[a-z]+|[0-9]+", run)
        found += [run] + (parts if len(parts) > 1 and all(len(part) > 1 for part in parts) else [])
    return [w for w in dict.fromkeys(found) if len(w) > 1 and w not in _STOP]


def build(name: str, template: Path) -> Build:
    """The words and VMIDs of one template: its file and folder, its sources' names and string settings (a
    var.NAME in them read as the variable's default), its build blocks' names."""
    found: dict[str, tuple[str, bool]] = {}
    vmids: dict[int, str] = {}

    def add(text: Any, where: str, names: bool) -> None:
        for word in words(text):
            if word not in found or (names and not found[word][1]):
                found[word] = (where, names)

    add(template.name.split(".")[0], f"the file name {template.name}", True)
    add(template.parent.name, f"its folder {template.parent.name}/", True)
    defaults = {n: v["default"] for n, v in hcl.variables(template.parent, hcl.PACKER).items()
                if isinstance(v.get("default"), (str, int))}
    data = hcl.parse(template)
    for block in data.get("build") or []:
        if isinstance(block, dict) and isinstance(block.get("name"), str):
            add(block["name"], f"build {block['name']} of {template.name}", True)
    for kind, label, body in _sources(data):
        add(label, f"source {kind}.{label} of {template.name}", True)
        for key, value in body.items():
            value = _resolved(value, defaults)
            if key == "vm_id" and isinstance(value, int) and not isinstance(value, bool):
                vmids[value] = f"the vm_id {template.name} builds"
            elif isinstance(value, str):
                add(value, f"{key} {value} of {template.name}", False)
    return Build(name, template, found, vmids)


def _sources(data: dict) -> list[tuple[str, str, dict]]:
    return [(kind, label, body) for block in data.get("source") or [] if isinstance(block, dict)
            for kind, labelled in block.items() if isinstance(labelled, dict)
            for label, body in labelled.items() if isinstance(body, dict)]


def _resolved(value: Any, defaults: dict[str, Any]) -> Any:
    """value with each var.NAME it uses read as that variable's default (exactly `var.NAME`: the default itself)."""
    name = hcl.var_reference(value)
    if name is not None:
        return defaults.get(name)
    if isinstance(value, str) and "${" in value:
        return " ".join([value, *(str(default) for n, default in defaults.items() if f"var.{n}" in value)])
    return value


def distinct(builds: list[Build]) -> list[Build]:
    """The builds without the words all of them share: those tell none apart."""
    if len(builds) < 2:
        return builds
    shared = set.intersection(*(set(b.words) for b in builds))
    return [b._replace(words={w: v for w, v in b.words.items() if w not in shared}) for b in builds]


def _evidence(variable: dict[str, Any], name: str, one: Build) -> list[tuple[int, str]]:
    """(weight, reason) of what ties the variable to the build, at most one of each kind."""
    named = [(_WEIGHTS["name" if one.words[w][1] else "name2"], f"its name says {w}, as does {one.words[w][0]}")
             for w in words(name) if w in one.words]
    hits = [max(named, key=lambda hit: hit[0])] if named else []
    default = variable.get("default")
    if isinstance(default, int) and not isinstance(default, bool) and default in one.vmids:
        hits.append((_WEIGHTS["vmid"], f"its default {default} is {one.vmids[default]}"))
    elif isinstance(default, str):
        word = next((w for w in words(default) if w in one.words), None)
        if word:
            hits.append((_WEIGHTS["default"], f"its default {default!r} says {word}, as does {one.words[word][0]}"))
    word = next((w for w in words(variable.get("description") or "") if w in one.words), None)
    if word:
        hits.append((_WEIGHTS["description"], f"its description says {word}, as does {one.words[word][0]}"))
    return sorted(hits, reverse=True)


def match(directory: Path, names: list[str], builds: list[Build]) -> list[Match]:
    """Each variable (in the order given) with the build whose template it takes: the best evidence first, each
    build to one variable of the root at most; a variable nothing tells apart takes the first build left, and says
    which others it could take."""
    declared = hcl.variables(directory, hcl.TERRAFORM)
    told = distinct(builds)
    scores = {(var, b.name): _evidence(declared.get(var, {}), var, b) for var in names for b in told}
    total = {key: sum(weight for weight, _why in hits) for key, hits in scores.items()}
    ranked = sorted(total, key=lambda key: (-total[key], names.index(key[0]), [b.name for b in told].index(key[1])))
    chosen: dict[str, str] = {}
    for var, stage in ranked:
        if var not in chosen and stage not in chosen.values():
            chosen[var] = stage
    return [_explained(var, chosen.get(var), total, scores, told) for var in names]


def _explained(var: str, stage: str | None, total: dict, scores: dict, builds: list[Build]) -> Match:
    if stage is None:
        return Match(var, None, "no build is left for it: each goes to one of the root's variables")
    score = total[(var, stage)]
    tied = tuple(b.name for b in builds if b.name != stage and total[(var, b.name)] == score)
    if score == 0:
        why = ("it is the only build" if len(builds) == 1 else
               "nothing in its name, default or description tells which build (the first one left)")
    else:
        why = scores[(var, stage)][0][1] + (f", but {', '.join(tied)} match as well" if tied else "")
    return Match(var, stage, why, tied)
