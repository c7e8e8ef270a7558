"""`proxpipe init`: a pipeline.yaml (and the one-line dodo.py) for an existing infrastructure repository, from
what discover() finds in it; or, with `--example lab`, the local lab's demo project in an empty folder.

It shows what it guessed and why, writes the other candidates as comments, and never overwrites a file. With
several templates, root modules or playbooks it writes the graph of their stages (proxpipe.commands.initgraph);
one of each is the three-stage chain build, provision, configure.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import time
from pathlib import Path

from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError

from . import initgraph, inventorynote
from .discover import Found, Guess, discover, walk

DODO = '"""doit entry point: `doit deploy`, `doit validate`, ... run proxpipe\'s tasks of pipeline.yaml."""\n\n' \
       "from proxpipe.wiring.dodo import *  # noqa: F401,F403\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="proxpipe init", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")
    parser.add_argument("--example", metavar="NAME", help="write a demo project instead: lab, the local lab (no "
                                                          "cluster needed); plugins may add others")
    parser.add_argument("--dir", default=".", help="the repository (default: the current directory)")
    parser.add_argument("--env", default=None, help="the environment's name (default: guessed, else production)")
    args = parser.parse_args(argv)
    root = Path(args.dir).absolute()
    try:
        if args.example:
            return example(root, args.example, args.dry_run)
        return init(root, args.env, args.dry_run)
    except PipelineError as exc:
        console.error(str(exc))
        return 1


# ----------------------------------------------------------------------------- an existing repository


def init(root: Path, env_name: str | None, dry_run: bool) -> int:
    if not root.is_dir():
        raise PipelineError(f"--dir {root}: no such directory")
    paths = list(walk(root))
    found = discover(root, paths)
    if found.packer.value is None and found.terraform.value is None and found.ansible.value is None:
        raise PipelineError(f"no Packer template (*.pkr.hcl), Terraform root module or Ansible playbook found under "
                            f"{root}; try `proxpipe init --example lab` for a demo project")
    graph = initgraph.plan(root, paths, found, env_name)
    env_name = env_name or _environment_name(graph)
    text = pipeline_yaml(root, graph, env_name)
    if graph.single:
        show_guesses(root, found, graph)
    else:
        show_graph(root, graph)
    return write(root, {"pipeline.yaml": text, "dodo.py": DODO}, dry_run,
                 f"next: proxpipe status   (and proxpipe doctor, proxpipe docs; environment {env_name})")


def _environment_name(graph: initgraph.Plan) -> str:
    """NAME of the first root module's environments/NAME/ folder, else production."""
    named = next((initgraph.environment(p.dir.value) for p in graph.provisions if initgraph.environment(p.dir.value)),
                 None)
    return named.lower().replace(" ", "-") if named else "production"


def _row(label: str, value: str, why: str, width: int = 26) -> None:
    console.out(f"  {label:<{width}} {value:<48} {why}")


def show_guesses(root: Path, found: Found, graph: initgraph.Plan) -> None:
    """One stage of each kind: what was found for each, and the other candidates."""
    ansible = graph.configures[0].playbook if graph.configures else found.ansible
    rows = [("Packer template", found.packer, _rel(root)), ("its template id variable", found.packer_id_var, str),
            ("Terraform root module", found.terraform, _rel(root)), ("its inventory output", found.output, str),
            ("its template id variable", found.terraform_id_var, str),
            ("Ansible playbook", ansible, lambda v: _rel(root)(v[1]))]
    console.out("found:")
    for label, guess, shown in rows:
        _row(label, shown(guess.value) if guess.value is not None else "-", guess.why)
        for other in guess.candidates[1:]:
            console.out(f"  {'':<26} {'(or ' + shown(other) + ')'}")
    for note in graph.notes:
        console.out(f"  {'':<26} {note}")


def show_graph(root: Path, graph: initgraph.Plan) -> None:
    """Several stages of a kind: each stage, what it runs and why, then what each needs."""
    rel, width = _rel(root), max(26, *(len(name) for name in graph.names))
    row = functools.partial(_row, width=width)
    console.out("found:")
    for build in graph.builds:
        row(build.name, rel(build.template.value), build.template.why)
        row("", f"template id variable {build.id_var.value or '-'}", build.id_var.why)
    for stage in graph.provisions:
        row(stage.name, rel(stage.dir.value), stage.dir.why)
        row("", f"inventory output {stage.output.value or '-'}",
            stage.output.why + ("" if stage.output.value else "; pipeline.yaml shows one to add"))
        for match in stage.takes:
            row("", f"{match.var} <- {match.build or '?'}", match.why)
    for stage in graph.configures:
        row(stage.name, rel(stage.playbook.value[1]), stage.playbook.why)
        if stage.order:
            row("", "", stage.order)
    for note in graph.notes:
        row("", "", note)
    console.out("the graph:")
    for name, needs in graph.needs.items():
        console.out(f"  {name:<{width}} needs {', '.join(needs) if needs else 'nothing'}")


def _rel(root: Path):
    return lambda path: str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else str(path)


def pipeline_yaml(root: Path, graph: initgraph.Plan, env_name: str) -> str:
    rel = _rel(root)
    lines = [
        f"# proxpipe: Packer -> Terraform -> Ansible for Proxmox VE. Written by `proxpipe init` on "
        f"{time.strftime('%Y-%m-%d')}:",
        "# check every value marked CHECK. `proxpipe status` shows what is stale and why; every key is described",
        "# in proxpipe's docs/configuration.md. Secrets are ${ENV_VAR} references, never literal values.",
        "",
        f"default_environment: {env_name}",
        "",
        "environments:",
        f"  {env_name}:",
        f"    description: {_q(f'{env_name} on a Proxmox VE cluster')}",
        "    proxmox:",
        "      url: ${PROXMOX_URL:-https://pve.example.com:8006}   # CHECK",
        "      node: ${PROXMOX_NODE:-pve}",
        "      token_id: ${PROXMOX_TOKEN_ID:-terraform@pve!pipeline}",
        "      token_secret: ${PROXMOX_TOKEN_SECRET}",
    ]
    if len(graph.builds) > 1:
        lines.append("    # limits: {packer: 1}   # one Packer build at a time, e.g. when the builds share a node")
    lines.append("    stages:")
    for build in graph.builds:
        lines += _build(build, graph, rel)
    for stage in graph.provisions:
        lines += _provision(stage, graph, rel)
    for stage in graph.configures:
        lines += _configure(stage, graph, rel)
    return "\n".join(lines) + "\n"


def _build(stage: initgraph.BuildStage, graph: initgraph.Plan, rel) -> list[str]:
    template = stage.template.value
    lines = [f"      {stage.name}:", "        kind: packer", f"        dir: {_q(rel(template.parent))}",
             *_why(stage.template, rel), f"        template: {_q(template.name)}",
             *_graph(stage.name, stage.exclude, graph)]
    if graph.provisions and not any(stage.name in graph.needs[p.name] for p in graph.provisions):
        lines.append("        # CHECK: no root module takes its template: none of their template id variables was "
                     "matched to it")
    lines += _id_var(stage.id_var, "template_id_var")
    apart = " and apart from the other builds'" if len(graph.builds) > 1 else ""
    low, high = stage.id_range
    return lines + [f"        template_id_range: [{low}, {high}]   # CHECK: VMIDs for new templates, free on the "
                    f"cluster{apart}", "        keep_templates: 3"]


def _provision(stage: initgraph.ProvisionStage, graph: initgraph.Plan, rel) -> list[str]:
    lines = [f"      {stage.name}:", "        kind: terraform", f"        dir: {_q(rel(stage.dir.value))}",
             *_why(stage.dir, rel), *_graph(stage.name, stage.exclude, graph)]
    if stage.output.value is not None:
        lines += [*_why(stage.output, str), f"        output: {_q(stage.output.value)}"]
    else:
        lines += [f"        # CHECK: {stage.output.why}; name the output that holds the Ansible inventory",
                  "        output: ansible_inventory", *_inventory_note(stage, rel)]
    return lines + _template_vars(stage, graph, rel)


def _inventory_note(stage: initgraph.ProvisionStage, rel) -> list[str]:
    """The output to add, as HCL: one group per VM resource of the root."""
    directory = stage.dir.value
    file = f"{rel(directory / 'outputs.tf')}" + ("" if (directory / "outputs.tf").exists() else ", a new file")
    if stage.vms:
        head = [f"        # add it to {file} (one group per VM resource; with vm_id and node, proxpipe asks",
                "        # the guest agent for an address the output does not give, or gives as dhcp):"]
    else:
        head = [f"        # CHECK: no VM resource ({', '.join(inventorynote.VM_KINDS)}) in {rel(directory)}:",
                "        # if it makes none, the configure stages do not need it; if it makes VMs, add an output",
                f"        # like this one to {file}, with the resource that makes them:"]
    return head + [f"        #   {line}" for line in inventorynote.output_hcl("ansible_inventory", list(stage.vms))]


def _template_vars(stage: initgraph.ProvisionStage, graph: initgraph.Plan, rel) -> list[str]:
    """Which variable takes which build's template id: template_id_var for one build, template_ids for several."""
    if not stage.takes:
        if graph.builds and not graph.needs[stage.name] and stage.id_var.value is None:
            return [f"        # found: {stage.id_var.why}: it needs no build"]
        return _id_var(stage.id_var, "template_id_var")
    templates = {b.name: rel(b.template.value) for b in graph.builds}
    lines = []
    for match in stage.takes:
        if match.build is None:
            lines.append(f"        # CHECK: {match.why}: give it a value in vars")
            continue
        lines.append(f"        # {'CHECK: ' if match.others else 'found: '}{match.why}")
        if match.others:
            lines.append("        # other candidates: " + ", ".join(f"{templates[o]} ({o})" for o in match.others))
    matched = sorted((m for m in stage.takes if m.build), key=lambda m: graph.names.index(m.build))
    if len(matched) == 1:
        return lines + [f"        template_id_var: {_q(matched[0].var)}"]
    return lines + ["        template_ids:", *(f"          {m.build}: {_q(m.var)}" for m in matched)]


def _configure(stage: initgraph.ConfigureStage, graph: initgraph.Plan, rel) -> list[str]:
    directory, playbook = stage.playbook.value
    lines = [f"      {stage.name}:", "        kind: ansible", f"        dir: {_q(rel(directory))}",
             *_why(stage.playbook, lambda v: rel(v[1])),
             f"        playbook: {_q(str(playbook.relative_to(directory)))}"]
    if stage.order:
        lines.append(f"        # {'' if stage.order.startswith('CHECK') else 'found: '}{stage.order}")
    return lines + _graph(stage.name, stage.exclude, graph)


def _graph(name: str, exclude: tuple[str, ...], graph: initgraph.Plan) -> list[str]:
    """needs (unless the stages are a chain, which pipeline.yaml says without it), and the other stages' files."""
    lines = [] if graph.chain else [f"        needs: [{', '.join(graph.needs[name])}]"]
    if exclude:
        lines.append(f"        exclude: [{', '.join(_q(glob) for glob in exclude)}]   # other stages' files: a change "
                     "to them reruns those")
    return lines


def _why(guess: Guess, shown) -> list[str]:
    lines = [f"        # found: {guess.why}"]
    if guess.ambiguous:
        lines.append("        # other candidates: " + ", ".join(shown(c) for c in guess.candidates[1:]))
    return lines


def _id_var(guess: Guess, key: str) -> list[str]:
    if guess.value is None:
        return [f"        # CHECK: {guess.why}; name the variable that takes the template id",
                f"        {key}: template_id"]
    lines = [f"        # found: {guess.why}"]
    if guess.ambiguous:
        lines.append("        # other candidates: " + ", ".join(guess.candidates[1:]))
    return lines + [f"        {key}: {_q(guess.value)}"]


def _q(value: str) -> str:
    """A YAML scalar: plain when that is safe, else a JSON string (valid YAML)."""
    plain = value.replace("-", "").replace("_", "").replace("/", "").replace(".", "").replace(" ", "")
    return value if plain.isalnum() and not value[0].isdigit() else json.dumps(value)


# ----------------------------------------------------------------------------- writing


def write(root: Path, contents: dict[str, str | Path], dry_run: bool, next_step: str) -> int:
    """Write each file (text, or a packaged file to copy) under root; refuse if any of them exists."""
    existing = [name for name in contents if (root / name).exists()]
    if existing:
        raise PipelineError(f"{existing[0]} already exists in {root}; proxpipe init never overwrites a file "
                            "(move it away, or edit it by hand)")
    for name, content in contents.items():
        if dry_run:
            console.out(f"would write {name}" + (f":\n{content}" if isinstance(content, str) and
                                                  name.endswith(".yaml") else ""))
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content)
        else:
            shutil.copyfile(content, target)
    if not dry_run:
        console.out(f"wrote {len(contents)} file{'s' if len(contents) != 1 else ''} in {root}; {next_step}")
        console.out("add .pipeline/ (the state directory) to .gitignore")
    return 0


# ----------------------------------------------------------------------------- demo projects


def example(root: Path, name: str, dry_run: bool) -> int:
    """A demo project that a plugin contributes (register_examples), e.g. the local lab's."""
    from proxpipe.base import schema
    from proxpipe.engine.plugin_manager import Plugins

    examples = Plugins.load({}, schema.Context("pipeline.yaml", root)).examples()
    if name not in examples:
        raise PipelineError(f"--example {name}: no such example (installed: {', '.join(sorted(examples)) or 'none'})")
    chosen = examples[name]
    console.out(f"example {name}: {chosen.doc}")
    result = write(root, {"dodo.py": DODO, **chosen.files()}, dry_run, "next: proxpipe deploy")
    if not dry_run and chosen.prepare is not None:
        for line in chosen.prepare(root):
            console.out(line)
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
