"""`proxpipe init`: a pipeline.yaml (and the one-line dodo.py) for an existing infrastructure repository, from
what discover() finds in it; or, with `--example lab`, the local lab's demo project in an empty folder.

It shows what it guessed and why, writes the other candidates as comments, and never overwrites a file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from proxpipe.base.console import console
from proxpipe.base.errors import PipelineError

from .discover import Found, Guess, discover

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
    found = discover(root)
    if found.packer.value is None and found.terraform.value is None and found.ansible.value is None:
        raise PipelineError(f"no Packer template (*.pkr.hcl), Terraform root module or Ansible playbook found under "
                            f"{root}; try `proxpipe init --example lab` for a demo project")
    env_name = env_name or _environment_name(found)
    text = pipeline_yaml(root, found, env_name)
    show_guesses(root, found)
    return write(root, {"pipeline.yaml": text, "dodo.py": DODO}, dry_run,
                 f"next: proxpipe status   (and proxpipe doctor, proxpipe docs; environment {env_name})")


def _environment_name(found: Found) -> str:
    folder = found.terraform.value
    if folder is not None and folder.parent.name == "environments":
        return folder.name.lower().replace(" ", "-")
    return "production"


def show_guesses(root: Path, found: Found) -> None:
    rows = [("Packer template", found.packer, _rel(root)), ("its template id variable", found.packer_id_var, str),
            ("Terraform root module", found.terraform, _rel(root)), ("its inventory output", found.output, str),
            ("its template id variable", found.terraform_id_var, str),
            ("Ansible playbook", found.ansible, lambda v: _rel(root)(v[1]))]
    console.out("found:")
    for label, guess, shown in rows:
        value = shown(guess.value) if guess.value is not None else "-"
        console.out(f"  {label:<26} {value:<48} {guess.why}")
        for other in guess.candidates[1:]:
            console.out(f"  {'':<26} {'(or ' + shown(other) + ')'}")


def _rel(root: Path):
    return lambda path: str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else str(path)


def pipeline_yaml(root: Path, found: Found, env_name: str) -> str:
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
        "    stages:",
    ]
    if found.packer.value is not None:
        template = found.packer.value
        lines += ["      build:", "        kind: packer", f"        dir: {_q(rel(template.parent))}",
                  *_why(found.packer, rel), f"        template: {_q(template.name)}"]
        lines += _id_var(found.packer_id_var, "template_id_var")
        lines += ["        template_id_range: [8000, 8999]   # CHECK: VMIDs for new templates, free on the cluster",
                  "        keep_templates: 3"]
    if found.terraform.value is not None:
        lines += ["      provision:", "        kind: terraform", f"        dir: {_q(rel(found.terraform.value))}",
                  *_why(found.terraform, rel)]
        if found.output.value is not None:
            lines += [*_why(found.output, str), f"        output: {_q(found.output.value)}"]
        else:
            lines += [f"        # CHECK: {found.output.why}; name the output that holds the Ansible inventory",
                      "        output: ansible_inventory"]
        lines += _id_var(found.terraform_id_var, "template_id_var")
    if found.ansible.value is not None:
        directory, playbook = found.ansible.value
        lines += ["      configure:", "        kind: ansible", f"        dir: {_q(rel(directory))}",
                  *_why(found.ansible, lambda v: rel(v[1])),
                  f"        playbook: {_q(str(playbook.relative_to(directory)))}"]
    return "\n".join(lines) + "\n"


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
