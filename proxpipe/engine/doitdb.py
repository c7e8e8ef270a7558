"""doit's dependency database, made safe for a deployment tool.

doit's json backend keeps everything in memory and rewrites the file once, at the end of the run,
in place. A run killed in the middle would forget the stages that had already succeeded, and a
`doit validate` running beside a deploy would overwrite the deploy's state with its own stale
copy. This backend instead writes atomically after every successful task (the reporter calls
`save()`), and writes only the tasks this process changed, merged into what is on disk under a lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from doit.dependency import DatabaseException, JsonDB

from proxpipe.base.console import console
from proxpipe.base.fsutil import atomic_write, failed_in, file_error, on_disk
from proxpipe.engine.uptodate import ALL, forget_locally

# Tasks whose action ran in this process: doit drops a failed task's record too, and that is no `doit forget`.
RAN_HERE: set[str] = set()


class AtomicJsonDB(JsonDB):
    desc = "json, written atomically after each task and merged across processes"

    def __init__(self, name, codec, *, module_name=None):
        self._cache_dir = Path(os.path.dirname(os.path.abspath(name)))
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._told = False  # a file problem is said once, however often doit saves
        super().__init__(name, codec, module_name=module_name)

    def _load(self):
        try:
            return super()._load()
        except DatabaseException:
            # A file from before this backend, cut short by a crash: start afresh (stages rerun).
            return {}

    def set(self, task_id, dependency, value):
        stored = self._db.get(task_id, {}).get(dependency, self)
        if task_id not in self._removed and stored == (list(value) if isinstance(value, tuple) else value):
            return  # unchanged (as JSON gives it back), like the tasks that run every time: no write
        super().set(task_id, dependency, value)
        self._dirty.add(task_id)
        self._removed.discard(task_id)

    def remove(self, task_id):
        super().remove(task_id)
        self._dirty.discard(task_id)
        self._removed.add(task_id)
        if task_id not in RAN_HERE:  # `doit forget STAGE`: the stage runs again here
            self._forget([task_id])

    def remove_all(self):
        self._removed.update(self._db)
        self._dirty.clear()
        super().remove_all()
        self._forget([ALL])

    def _forget(self, tasks: list[str]) -> None:
        known = failed_in(self._cache_dir)
        try:
            forget_locally(self._cache_dir, tasks)
        except OSError as exc:  # a read-only or full state directory
            self._tell(exc, known, "they are not forgotten on this machine")

    def dump(self):
        """Merge what this process changed into the file; a file that cannot be written is told in one line, once,
        and costs only reruns (doit runs this at the end of every run, outside any task)."""
        if not self._dirty and not self._removed:
            return
        known = failed_in(self._cache_dir)
        try:
            self._merge_into_file()
        except OSError as exc:
            self._tell(exc, known, "doit's records of this run are not saved (at worst, stages run again)")
            return
        self._dirty.clear()
        self._removed.clear()

    save = dump

    def _merge_into_file(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.name))
        lock_path = os.path.join(directory, ".doit-db.lock")
        with on_disk(lock_path):
            os.makedirs(directory, exist_ok=True)
            lock = open(lock_path, "w")
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.name) as current:
                    on_disk_now = json.load(current)
            except (OSError, ValueError):
                on_disk_now = {}
            for task_id in self._removed:
                on_disk_now.pop(task_id, None)
            for task_id in self._dirty:
                on_disk_now[task_id] = self._db[task_id]
            atomic_write(self.name, self.codec.encode(on_disk_now), durable=False)  # lost: stages rerun

    def _tell(self, exc: OSError, known: set[int | None], consequence: str) -> None:
        """Warn once, unless the run already failed on this directory for the same reason (a lock that could not
        be taken, a handoff that could not be written): that failure was said, and this is only its echo."""
        if not self._told and exc.errno not in known:
            console.warn(f"{file_error(exc, self.name)}; {consequence}")
        self._told = True
