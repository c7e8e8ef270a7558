"""sha256 of files, remembered by what stat() says about them, so that a no-op run reads no input file twice.

Like git's index: an entry holds while the file's size, mtime, ctime and inode are unchanged. ctime cannot be set
back by a program (touch -d, rsync -t and tar only set mtime), and an entry is only kept for a file that had not
changed for a second when it was hashed, so a write within the same clock tick cannot hide behind it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from proxpipe.base.fsutil import atomic_write, sha256_file

_SETTLED = 1.0  # seconds a file must have been unchanged for its digest to be kept


class DigestCache:
    """sha256 of files by path, kept in a JSON file (a cache: losing it only costs reading the files again)."""

    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, list] | None = None
        self._changed = False

    def sha256(self, path: Path) -> str:
        entries = self._load()
        info = os.stat(path)
        key, stamp = os.path.abspath(path), [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
        entry = entries.get(key)
        if entry is not None and entry[:4] == stamp:
            return entry[4]
        digest = sha256_file(path)
        if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > _SETTLED * 1e9:
            entries[key] = [*stamp, digest]
            self._changed = True
        return digest

    def save(self) -> None:
        """Write the entries added since the last save."""
        if self._changed and self.path.parent.parent.is_dir():  # never creates a state directory of its own
            try:
                self.path.parent.mkdir(exist_ok=True)
                atomic_write(self.path, json.dumps(self._entries), durable=False)
            except OSError:
                pass  # a read-only state directory: hash again next time
            self._changed = False

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text())
                if not isinstance(self._entries, dict):
                    self._entries = {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries
