"""Which files under a stage's directory are its inputs, and why each thing left out was left out.

Inputs are what the tool reads, never what it writes: left out are the paths an exclude rule names (the
built-in ones, the kind's caches, what the tool's own configuration says it writes, the stage's `exclude`)
and whatever the directory's git repository ignores. Git is asked, never imitated: one `git ls-files`
per process and work tree answers for every stage directory in it, and a directory outside any git work
tree costs no process at all.
"""

import fnmatch
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from proxpipe.domain.gitrepo import work_tree

GIT_IGNORES = "git ignores it"


class Exclude(NamedTuple):
    """A rule that leaves paths out: a glob matched against a path's name and its path relative to the stage's
    directory; or, anchored, exactly one path relative to it (what a tool's configuration names)."""

    pattern: str
    why: str
    anchored: bool = False

    def matches(self, name: str, rel: str) -> bool:
        if self.anchored:
            return rel == self.pattern
        return fnmatch.fnmatch(name, self.pattern) or fnmatch.fnmatch(rel, self.pattern)


@dataclass
class Scan:
    files: list[Path] = field(default_factory=list)
    # (path relative to the directory, with a trailing / for a directory; why it is not an input)
    excluded: list[tuple[str, str]] = field(default_factory=list)


def anchored(top: Path, path: Path | str, why: str) -> list[Exclude]:
    """[an anchored Exclude of path] when path lies under top (and is not top itself), else []."""
    rel = os.path.relpath(os.path.normpath(os.path.join(top, path)), top)
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return []
    return [Exclude(Path(rel).as_posix(), why, anchored=True)]


class _Matcher:
    """The first rule that matches a path, fast: one regular expression tells whether any glob does."""

    def __init__(self, rules: Sequence[Exclude], ignored: frozenset[str]):
        self.rules = rules
        self.exact = {rule.pattern for rule in rules if rule.anchored}
        self.any = _any_of(tuple(rule.pattern for rule in rules if not rule.anchored))
        self.ignored = ignored

    def why(self, name: str, rel: str, slash: str) -> str | None:
        if rel in self.exact or self.any(name) or self.any(rel):
            return next(rule.why for rule in self.rules if rule.matches(name, rel))
        return GIT_IGNORES if rel + slash in self.ignored else None


@lru_cache(maxsize=64)
def _any_of(globs: tuple[str, ...]):
    """A test whether text matches any of the globs. Most are a name, "*.ext" or "name*", told by a set lookup or
    str.endswith/startswith; only the others go through fnmatch. (One regular expression of them all took a no-op
    run tens of milliseconds to compile.)"""
    exact, suffixes, prefixes, others = set(), [], [], []
    for glob in globs:
        head, last = glob[:-1], glob[-1:]
        if not _WILD.search(glob):
            exact.add(glob)
        elif glob.startswith("*") and not _WILD.search(glob[1:]):
            suffixes.append(glob[1:])
        elif last == "*" and not _WILD.search(head):
            prefixes.append(head)
        else:
            others.append(glob)
    ends, starts = tuple(suffixes), tuple(prefixes)
    return lambda text: (text in exact or (ends and text.endswith(ends)) or (starts and text.startswith(starts))
                         or any(fnmatch.fnmatchcase(text, glob) for glob in others))


_WILD = re.compile(r"[*?\[]")


def scan(top: Path, rules: Sequence[Exclude], ignored: frozenset[str] = frozenset(),
         keep: Iterable[Path] = ()) -> Scan:
    """The files under top that no rule excludes and git does not ignore (ignored: paths relative to top,
    directories with a trailing /), plus the files in keep, which are inputs whatever the rules say."""
    result = Scan()
    keep = [Path(path) for path in keep]
    matcher = _Matcher(rules, ignored)
    seen = {os.path.realpath(top)}  # a linked folder (shared roles, say) is read through, once: no link loops
    for folder, dirs, files in os.walk(top, followlinks=True):
        rel_top = os.path.relpath(folder, top)
        rel_top = "" if rel_top == "." else rel_top + "/"
        kept_dirs = []
        for name in sorted(dirs):
            why = matcher.why(name, rel_top + name, "/")
            real = os.path.realpath(os.path.join(folder, name))
            if why is None and real not in seen:
                seen.add(real)
                kept_dirs.append(name)
            else:
                result.excluded.append((rel_top + name + "/", why))
        dirs[:] = kept_dirs
        for name in sorted(files):
            why = matcher.why(name, rel_top + name, "")
            if why is None or Path(folder) / name in keep:
                result.files.append(Path(folder) / name)
            else:
                result.excluded.append((rel_top + name, why))
    listed = set(result.files)
    result.files += [path for path in keep if path.is_file() and path not in listed]
    return result


# ----------------------------------------------------------------------------- git


class _Git:
    """What git ignores under the directories asked about, one process per work tree, for this process."""

    def __init__(self) -> None:
        self.answers: dict[Path, frozenset[str]] = {}
        self.problems: dict[Path, str] = {}  # work tree -> why git could not tell

    def ignored(self, directory: Path, together: Iterable[Path] = ()) -> frozenset[str]:
        directory = Path(os.path.abspath(directory))
        if directory not in self.answers:
            top = work_tree(directory)
            if top is None:
                return frozenset()
            asked = [directory] + [d for d in (Path(os.path.abspath(t)) for t in together)
                                   if d not in self.answers and d != directory and work_tree(d) == top]
            self.answers.update(self._ask(top, asked))
        return self.answers[directory]

    def _ask(self, top: Path, dirs: list[Path]) -> dict[Path, frozenset[str]]:
        """Run git once for dirs (all in the work tree top): each dir -> its ignored paths, relative to it."""
        specs = [os.path.relpath(d, top) for d in dirs]
        try:
            done = subprocess.run(["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard",
                                   "--directory", "--", *specs], cwd=top, capture_output=True,
                                  env={**os.environ, "GIT_LITERAL_PATHSPECS": "1"})
        except OSError as exc:
            self.problems[top] = f"git cannot be started: {exc.strerror}"
            return {d: frozenset() for d in dirs}
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"]
            self.problems[top] = f"git ls-files failed: {lines[-1]}"
            return {d: frozenset() for d in dirs}
        found: dict[Path, set[str]] = {d: set() for d in dirs}
        for raw in done.stdout.decode(errors="surrogateescape").split("\0"):
            if raw:
                _assign(top / raw, raw.endswith("/"), found)
        return {d: frozenset(paths) for d, paths in found.items()}


def _assign(path: Path, is_dir: bool, found: dict[Path, set[str]]) -> None:
    # A path belongs to the deepest asked directory that holds it. A stage directory that git ignores as a
    # whole is not left out whole: the rules apply to what is under it.
    for directory in sorted(found, key=lambda d: len(d.parts), reverse=True):
        if path.is_relative_to(directory) and path != directory:
            found[directory].add(path.relative_to(directory).as_posix() + ("/" if is_dir else ""))
            return


_GIT = _Git()


def ignored_by_git(directory: Path, together: Iterable[Path] = ()) -> frozenset[str]:
    """Paths under directory (relative, directories with a trailing /) that its git repository ignores; empty
    outside a git work tree. The directories in `together` are asked about in the same git process."""
    return _GIT.ignored(directory, together)


def git_problem(directory: Path) -> str | None:
    """Why git could not say what it ignores under directory, if it could not."""
    top = work_tree(Path(os.path.abspath(directory)))
    return _GIT.problems.get(top) if top else None


def explain_ignored(directory: Path, paths: Sequence[str]) -> dict[str, str]:
    """path -> the ignore rule git matched ("<file>:<line>: <pattern>"), for showing; one more git process."""
    top = work_tree(Path(os.path.abspath(directory)))
    if top is None or not paths:
        return {}
    full = [os.path.relpath(Path(directory) / p, top) + ("/" if p.endswith("/") else "") for p in paths]
    try:
        done = subprocess.run(["git", "check-ignore", "-v", "-z", "--stdin"], cwd=top, capture_output=True,
                              input="\0".join(full).encode() + b"\0")
    except OSError:
        return {}
    fields = done.stdout.decode(errors="replace").split("\0")
    rules = {fields[i + 3]: f"{fields[i]}:{fields[i + 1]}: {fields[i + 2]}" for i in range(0, len(fields) - 3, 4)}
    return {p: rules[f] for p, f in zip(paths, full, strict=True) if f in rules}
