"""The lab's stand-in for a git server, so that its requirements.yml installs a role from git offline.

A nested git repository cannot be committed, so the lab builds one on first use: a bare repository per
folder of ROLES (lab/galaxy/<name>), under the state directory, with one commit tagged TAG, rebuilt when the
folder changes. git.lab.invalid (a name that never resolves) is mapped onto them by a git configuration file
beside them, which pipeline.yaml hands to the configure stage's tools as GIT_CONFIG_GLOBAL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from proxpipe.base.errors import PipelineError
from proxpipe.base.fsutil import atomic_write
from proxpipe.domain.config import Environment

SOURCES = Path(__file__).parent / "galaxy"
ROLES = ("lab_motd",)
TAG = "v1.0.0"
URL = "https://git.lab.invalid/"
STAMP = "proxpipe-source.digest"
# A fixed author, date and configuration: the same folder always gives the same commit, whatever the user's
# own git configuration says (signing, hooks, default branch).
_GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "proxpipe lab",
            "GIT_AUTHOR_EMAIL": "lab@git.lab.invalid", "GIT_COMMITTER_NAME": "proxpipe lab",
            "GIT_COMMITTER_EMAIL": "lab@git.lab.invalid", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
            "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}


def root(env: Environment) -> Path:
    return env.state_dir / "lab-git"


def ensure(env: Environment) -> None:
    """Every role's repository is there and built from the folder as it is now; the git configuration too."""
    folder = root(env)
    for name in ROLES:
        source, repo = SOURCES / name, folder / f"{name}.git"
        digest = _digest(source)
        try:
            if (repo / STAMP).read_text() == digest:
                continue
        except OSError:
            pass
        _build(source, repo, digest)
    config = f'[url "{folder}/"]\n\tinsteadOf = {URL}\n'
    gitconfig = folder / "gitconfig"
    if not gitconfig.is_file() or gitconfig.read_text() != config:
        atomic_write(gitconfig, config, durable=False)


def _digest(source: Path) -> str:
    digest = hashlib.sha256(TAG.encode())
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(b"\0" + path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _build(source: Path, repo: Path, digest: str) -> None:
    """A bare repository of source with one commit, tagged TAG, swapped in whole."""
    new = repo.with_name(f"{repo.name}.new-{os.getpid()}")
    shutil.rmtree(new, ignore_errors=True)
    git = ["git", f"--git-dir={new}", f"--work-tree={source}"]
    for args in (["git", "init", "-q", "--bare", str(new)], [*git, "add", "-A"], [*git, "commit", "-q", "-m", TAG],
                 [*git, "tag", TAG]):
        try:
            done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **_GIT_ENV})
        except OSError as exc:
            raise PipelineError(f"the lab needs git for its role repositories: {exc.strerror} (apt-get install "
                                "git)") from None
        if done.returncode != 0:
            shutil.rmtree(new, ignore_errors=True)
            raise PipelineError(f"the lab could not build its git repository {repo.name}: "
                                f"{(done.stderr.strip().splitlines() or ['git ' + args[1]])[-1]}")
    atomic_write(new / STAMP, digest, durable=False)
    shutil.rmtree(repo, ignore_errors=True)
    new.rename(repo)
