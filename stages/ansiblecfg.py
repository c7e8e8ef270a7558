"""ansible.cfg, read as Ansible reads it, for the settings the pipeline needs: the paths Ansible writes into
(fact cache, retry files, log, local temp) and the role and collection search paths.

Ansible resolves a relative path in ansible.cfg against the file's own directory, and expands ~ and $VARS.
"""

from __future__ import annotations

import configparser
import os
from functools import lru_cache
from pathlib import Path

# [defaults] keys whose value is a path Ansible writes into, and what it writes there.
WRITES = {
    "fact_caching_connection": "Ansible's fact cache",
    "retry_files_save_path": "Ansible's retry files",
    "log_path": "Ansible's log",
    "local_tmp": "Ansible's local temporary files",
}
# Fact cache plugins whose fact_caching_connection is a directory.
FILE_CACHES = ("jsonfile", "yaml", "pickle")


class AnsibleCfg:
    def __init__(self, path: Path | None, defaults: dict[str, str]):
        self.path = path
        self.defaults = defaults

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expandvars(os.path.expanduser(value.strip())))
        return path if path.is_absolute() or self.path is None else self.path.parent / path

    def written(self) -> list[tuple[Path, str]]:
        """(path, why) of every path this configuration makes Ansible write into."""
        found = []
        for key, what in WRITES.items():
            value = self.defaults.get(key)
            if not value:
                continue
            if key == "fact_caching_connection" and self.defaults.get("fact_caching", "memory").rsplit(".", 1)[-1] \
                    not in FILE_CACHES:
                continue  # e.g. redis: the connection is an address, not a path
            found.append((self.resolve(value), f"{what} ({self.path.name} {key})"))
        return found

    def search_path(self, *keys: str) -> list[str] | None:
        """The paths of the first of keys that is set (a pathspec: separated by ':'), resolved; None if unset."""
        for key in keys:
            value = self.defaults.get(key)
            if value:
                return [str(self.resolve(part)) for part in value.split(os.pathsep) if part.strip()]
        return None


def read(path: Path | None) -> AnsibleCfg:
    """The [defaults] of ansible.cfg at path (an empty one when there is none or it cannot be parsed: then
    Ansible itself reports the problem when it runs)."""
    if path is None:
        return AnsibleCfg(None, {})
    try:
        stat = os.stat(path)
    except OSError:
        return AnsibleCfg(None, {})
    return _read(Path(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _read(path: Path, _mtime: int, _size: int) -> AnsibleCfg:
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))  # as Ansible's own ConfigManager
    try:
        parser.read(path)
        defaults = dict(parser["defaults"]) if parser.has_section("defaults") else {}
    except (configparser.Error, OSError, UnicodeDecodeError):
        return AnsibleCfg(path, {})
    return AnsibleCfg(path, defaults)
