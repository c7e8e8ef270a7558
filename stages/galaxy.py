"""The ansible-galaxy step: a project's requirements (collections and roles) installed before the tool runs.

They go into a directory of the stage under the state directory, never into ~/.ansible or the project:
`ansible-galaxy install -r FILE` (collections and roles at once) with ANSIBLE_COLLECTIONS_PATH and
ANSIBLE_ROLES_PATH starting with that directory, followed by the user's own paths, which the tool then gets
too. The step runs only when a requirements file (or the program, or the stage's environment) changed, or the
install is missing: a digest file is kept inside the install. A new install is made beside the old one and
swapped in whole, so a failed one leaves the last good one as it was.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.base.errors import ToolError
from proxpipe.base.fsutil import atomic_write, display, make_private
from proxpipe.stages.ansiblecfg import AnsibleCfg

if TYPE_CHECKING:
    from proxpipe.api import toolrunner

# Where Ansible projects keep their requirements, relative to the project directory.
CONVENTIONAL = ("requirements.yml", "requirements.yaml", "collections/requirements.yml",
                "collections/requirements.yaml", "roles/requirements.yml", "roles/requirements.yaml")
# A Galaxy server (or a git host) that does not answer, or answers that it is overloaded: worth another try.
RETRY_PATTERNS = (
    r"Unknown error when attempting to call Galaxy at .*(?:refused|timed out|reset|Temporary failure)",
    r"HTTP Code: (?:408|429|50[0234])",
    r"Failed to download collection tar from .*(?:timed out|refused|reset|HTTP Error 5)",
    r"fatal: unable to access .*(?:Failed to connect|timed out|returned error: 5)",
)
DIGEST_FILE = "requirements.digest"
# Ansible's default search paths besides ANSIBLE_HOME's (ansible/config/base.yml).
_DEFAULTS = {"collections": ["/usr/share/ansible/collections"],
             "roles": ["/usr/share/ansible/roles", "/etc/ansible/roles"]}
_SETTINGS = {"collections": (("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"),
                             ("collections_path", "collections_paths")),
             "roles": (("ANSIBLE_ROLES_PATH",), ("roles_path",))}


def requirement_files(directory: Path, configured: Sequence[Path] | None) -> list[Path]:
    """The requirements files of a project: the configured ones, else those of CONVENTIONAL that exist."""
    if configured is not None:
        return [Path(path) for path in configured]
    return [Path(directory, name) for name in CONVENTIONAL if os.path.isfile(os.path.join(directory, name))]


def beside(program: str, name: str = "ansible-galaxy") -> str:
    """The Ansible program `name` from the same place as `program` (e.g. ansible-playbook)."""
    head, _, tail = program.rpartition("/")
    return f"{head}/{name}" if head and tail.startswith("ansible") else name


def user_paths(kind: str, environ: Mapping[str, str], cfg: AnsibleCfg, ansible_home: str) -> list[str]:
    """The search path of kind (collections or roles) Ansible would use without us: its environment variable,
    else ansible.cfg's setting, else Ansible's default."""
    env_names, cfg_keys = _SETTINGS[kind]
    for name in env_names:
        if environ.get(name):
            return [part for part in environ[name].split(os.pathsep) if part]
    from_cfg = cfg.search_path(*cfg_keys)
    if from_cfg is not None:
        return from_cfg
    return [os.path.join(ansible_home, kind), *_DEFAULTS[kind]]


@dataclass
class Galaxy:
    directory: Path  # the project: ansible-galaxy runs there, so relative sources in requirements resolve
    files: list[Path]
    root: Path  # the install: root/collections, root/roles and the digest file
    user_collections: list[str]
    user_roles: list[str]

    def env(self, root: Path | None = None) -> dict[str, str]:
        """The search paths for Ansible: the install first, then the user's own."""
        root = root or self.root
        if not self.files:
            return {}
        return {"ANSIBLE_COLLECTIONS_PATH": os.pathsep.join([str(root / "collections"), *self.user_collections]),
                "ANSIBLE_ROLES_PATH": os.pathsep.join([str(root / "roles"), *self.user_roles])}

    def digest(self, program: str, environ: Mapping[str, str]) -> str:
        """What the install depends on: the requirements files (names and contents), the program, the stage's
        environment and the user's search paths (a requirement found there is not installed again)."""
        digest = hashlib.sha256(f"{program}\0{sorted(environ.items())}\0{self.env()}".encode())
        for path in self.files:
            digest.update(f"\0{os.path.relpath(path, self.directory)}\0".encode() + path.read_bytes())
        return digest.hexdigest()

    def current(self, digest: str) -> bool:
        marker = self.root / DIGEST_FILE
        return marker.is_file() and marker.read_text() == digest

    def install(self, runner: toolrunner.ToolRunner, program: str, home: Path, environ: Mapping[str, str]) -> str:
        """Install the requirements unless the install is current; what happened, for the history."""
        digest = self.digest(program, environ)
        if self.current(digest):
            return "skipped (requirements unchanged)"
        new = self.root.with_name(self.root.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        env = {"ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", **self.env(new)}
        names = [os.path.relpath(path, self.directory) for path in self.files]
        for path, name in zip(self.files, names, strict=True):
            try:
                runner.run([program, "install", "-r", name], f"ansible-galaxy install -r {name}", env=env)
            except ToolError as exc:
                shutil.rmtree(new, ignore_errors=True)
                raise ToolError(failure(path, name, exc), exc.tail, exc.log) from None
        atomic_write(new / DIGEST_FILE, digest, durable=False)
        make_private(new, everything=True)  # ansible-galaxy unpacks with the archive's own modes
        _swap(new, self.root)
        return f"installed from {', '.join(names)}"


def _swap(new: Path, root: Path) -> None:
    old = root.with_name(root.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        root.rename(old)
    new.rename(root)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- failures

_NOT_INSTALLED = r"- (\S+) was NOT installed successfully: (.*)"
_ERROR = r"^(?:\[ERROR\]:|ERROR!)\s*(.*)"


def failure(path: Path, name: str, exc: ToolError) -> str:
    """One line for a failed install: the requirements file, the requirement that failed, and why."""
    lines = [line.strip() for line in exc.tail]
    culprit, reason = _reason(lines, str(exc))
    culprit = culprit or _requirement_named(path, "\n".join(lines))
    what = f"requirement {culprit!r}" if culprit else "a requirement"
    return (f"ansible-galaxy could not install {what} of {display(path)}: {reason.rstrip('.')}; fix {name} "
            "(or what it points at) and run again")


def _reason(lines: list[str], fallback: str) -> tuple[str | None, str]:
    """(the requirement ansible-galaxy names, if it does; why it failed) from the tail of its output."""
    for line in lines:
        found = re.search(_NOT_INSTALLED, line)
        if found:  # roles: "- NAME was NOT installed successfully: WHY"
            culprit, reason = found.group(1), found.group(2)
            break
    else:
        culprit = None
        errors = (re.match(_ERROR, line) for line in lines)
        reason = next((m.group(1) for m in errors if m and not m.group(1).startswith("- you can")), fallback)
    git = next((line for line in lines if line.startswith("fatal: ")), None)
    if git and "command" in reason and "git" in reason:  # git's own words say more than ansible-galaxy's
        reason = f"git: {git[len('fatal: '):]}"
    return culprit, reason


def _requirement_named(path: Path, output: str) -> str | None:
    """The requirement of the file that the output mentions, if one is."""
    for requirement in requirement_names(path):
        if requirement in output:
            return requirement
    return None


def requirement_names(path: Path) -> list[str]:
    """The name (or source) of every collection and role in a requirements file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return []
    if isinstance(data, dict):
        sections = [data.get("collections"), data.get("roles")]
    else:
        sections = [data]  # the old format: a list of roles
    names = []
    for entry in (item for section in sections if isinstance(section, list) for item in section):
        if isinstance(entry, str):
            names.append(entry.split(",")[0])
        elif isinstance(entry, dict):
            names += [str(entry[key]) for key in ("name", "role", "src") if entry.get(key)]
    return names
