"""The git repository a project lives in, read from its files without starting git: where its work tree starts and
which commit is checked out (recorded in the history and in plans)."""

from __future__ import annotations

import os
from pathlib import Path


def work_tree(directory: Path) -> Path | None:
    """The top of the git work tree holding directory (a folder with a .git directory or file), or None."""
    for folder in [directory, *directory.parents]:
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return None


def git_dir(directory: Path) -> Path | None:
    """The repository's .git directory (for a linked worktree, the one its .git file names), or None."""
    top = work_tree(Path(directory))
    if top is None:
        return None
    candidate = top / ".git"
    if candidate.is_file():  # a linked worktree: "gitdir: <path>"
        text = candidate.read_text().strip()
        return Path(os.path.join(top, text[8:])) if text.startswith("gitdir: ") else None
    return candidate


def head_commit(directory: Path) -> str | None:
    """The checked-out commit, abbreviated to 12 characters; None outside a repository or before a first commit."""
    git = git_dir(directory)
    if git is None:
        return None
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        return None
    return None
