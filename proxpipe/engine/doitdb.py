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

from proxpipe.base.fsutil import atomic_write
from proxpipe.engine.uptodate import ALL, forget_locally

# Tasks whose action ran in this process: doit drops a failed task's record too, and that is no `doit forget`.
RAN_HERE: set[str] = set()


class AtomicJsonDB(JsonDB):
    desc = "json, written atomically after each task and merged across processes"

    def __init__(self, name, codec, *, module_name=None):
        self._cache_dir = Path(os.path.dirname(os.path.abspath(name)))
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
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
            forget_locally(self._cache_dir, [task_id])

    def remove_all(self):
        self._removed.update(self._db)
        self._dirty.clear()
        super().remove_all()
        forget_locally(self._cache_dir, [ALL])

    def dump(self):
        if not self._dirty and not self._removed:
            return
        directory = os.path.dirname(os.path.abspath(self.name))
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, ".doit-db.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.name) as current:
                    on_disk = json.load(current)
            except (OSError, ValueError):
                on_disk = {}
            for task_id in self._removed:
                on_disk.pop(task_id, None)
            for task_id in self._dirty:
                on_disk[task_id] = self._db[task_id]
            atomic_write(self.name, self.codec.encode(on_disk), durable=False)  # lost: stages rerun
        self._dirty.clear()
        self._removed.clear()

    save = dump
