"""The local state store, the embedded default: plain files under .pipeline/<env>/, readable by the owner only.

    template_id.txt, ansible_inventory.json, configure.json    the handoffs
    history.jsonl, runs.jsonl                                  the logs (append-only): <log>.jsonl
    stages.json                                                what each stage's last success was made from
    template-ids.json                                          template ids reserved by builds in progress
    lock, lock.json                                            the environment's lock and who holds it
    plans/, plan-files/, ...                                   documents (a folder per kind, marked .document-kind)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from proxpipe.base.fsutil import atomic_write, display, on_disk, pid_alive
from proxpipe.domain import lock
from proxpipe.domain.state.store import HISTORY, LOGS, Snapshot, StateStore

_DURABLE = {HISTORY}  # fsync every line of the history; the run log can do without
_KIND_MARK = ".document-kind"  # marks a folder of the state directory as a kind of documents


class LocalStore(StateStore):
    def __init__(self, state_dir: Path, environment: str):
        self.cache_dir = Path(state_dir)
        self.environment = environment
        self.where = f"the state directory {display(self.cache_dir)}"

    # ------------------------------------------------------------------ handoffs

    def read_handoff(self, name: str) -> str | None:
        path = self.cache_dir / name
        with on_disk(path, "read"):
            try:
                return path.read_text()
            except FileNotFoundError:
                return None
            except UnicodeDecodeError:
                return path.read_bytes().decode(errors="replace")

    def write_handoff(self, name: str, text: str) -> bool:
        if self.read_handoff(name) == text:
            return False
        atomic_write(self.cache_dir / name, text, 0o600)
        return True

    def delete_handoff(self, name: str) -> None:
        with on_disk(self.cache_dir / name, "remove"):
            (self.cache_dir / name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ logs

    def append(self, log: str, line: str) -> None:
        path = self.cache_dir / f"{log}.jsonl"
        with on_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_size and not _ends_with_newline(path):
                    line = "\n" + line  # a crash cut the last line short; keep ours whole
                _write_all(fd, (line + "\n").encode(), os.fstat(fd).st_size)
                if log in _DURABLE:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def log_label(self, log: str) -> str:
        return display(self.cache_dir / f"{log}.jsonl")

    def lines(self, log: str) -> list[str]:
        path = self.cache_dir / f"{log}.jsonl"
        with on_disk(path, "read"):
            try:
                return path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                return []

    # ------------------------------------------------------------------ stage records

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return _read_json(self.cache_dir / "stages.json").get(stage)

    def save_stage_record(self, stage: str, record: dict[str, Any]) -> None:
        with self._edit("stages.json") as records:
            records[stage] = record

    def forget_stages(self, stages: list[str]) -> None:
        if any(self.stage_record(stage) is not None for stage in stages):
            with self._edit("stages.json") as records:
                for stage in stages:
                    records.pop(stage, None)

    # ------------------------------------------------------------------ template ids

    def allocate_template_id(self, scope: str, low: int, high: int, used: Callable[[], set[int]]) -> int | None:
        with self._edit("template-ids.json") as reserved:
            mine = reserved.setdefault(scope, {})
            for vmid, holder in list(mine.items()):
                if not pid_alive(int(holder.get("pid", 0))):
                    del mine[vmid]  # its build was killed
            taken = used() | {int(vmid) for vmid in mine}
            chosen = next((vmid for vmid in range(low, high + 1) if vmid not in taken), None)
            if chosen is not None:
                mine[str(chosen)] = lock.holder_info("build")
            return chosen

    def release_template_id(self, scope: str, vmid: int) -> None:
        with self._edit("template-ids.json") as reserved:
            reserved.get(scope, {}).pop(str(vmid), None)

    # ------------------------------------------------------------------ lock

    def acquire(self, command: str, wait: float = 0.0) -> None:
        lock.acquire(self.cache_dir, self.environment, command, wait)

    def release(self) -> None:
        lock.release(self.cache_dir)

    # ------------------------------------------------------------------ documents

    def put_document(self, kind: str, name: str, data: bytes) -> None:
        folder = self.cache_dir / kind
        with on_disk(folder / name):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (folder / _KIND_MARK).exists():
            atomic_write(folder / _KIND_MARK, "", 0o600, durable=False)
        atomic_write(folder / name, data, 0o600)

    def get_document(self, kind: str, name: str) -> bytes | None:
        try:
            return (self.cache_dir / kind / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def delete_document(self, kind: str, name: str) -> None:
        with on_disk(self.cache_dir / kind / name, "remove"):
            (self.cache_dir / kind / name).unlink(missing_ok=True)

    def document_names(self, kind: str) -> list[str]:
        folder = self.cache_dir / kind
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
        return [p.name for p in sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))]

    def document_kinds(self) -> list[str]:
        return sorted(p.parent.name for p in self.cache_dir.glob(f"*/{_KIND_MARK}"))

    # ------------------------------------------------------------------ copying

    def import_state(self, snapshot: Snapshot, handoffs: list[str]) -> None:
        for name in handoffs:
            if name in snapshot.handoffs:
                atomic_write(self.cache_dir / name, snapshot.handoffs[name], 0o600)
            else:
                self.delete_handoff(name)
        for log in {*LOGS, *snapshot.logs}:
            lines = snapshot.logs.get(log) or []
            path = self.cache_dir / f"{log}.jsonl"
            if lines:
                atomic_write(path, "".join(line + "\n" for line in lines), 0o600)
            else:
                path.unlink(missing_ok=True)
        with self._edit("stages.json") as records:
            records.clear()
            records.update(snapshot.stages)
        if not snapshot.stages:
            (self.cache_dir / "stages.json").unlink()
        for kind in self.document_kinds():
            for name in self.document_names(kind):
                self.delete_document(kind, name)
        for (kind, name), data in snapshot.documents.items():
            self.put_document(kind, name, data)

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def _edit(self, name: str) -> Iterator[dict]:
        """Read-modify-write of a small JSON file, under a lock so concurrent writers merge."""
        path = self.cache_dir / name
        with on_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            guard = os.fdopen(os.open(self.cache_dir / f".{name}.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w")
        with guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            data = _read_json(path)
            yield data
            atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n", 0o600)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_all(fd: int, data: bytes, size: int) -> None:
    """Append data whole, or not at all: a disk that fills up half-way must not leave half a line."""
    try:
        written = os.write(fd, data)
        if written != len(data):  # a short write: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        with contextlib.suppress(OSError):  # what cannot be cut off (a device) was not half-written either
            os.ftruncate(fd, size)
        raise


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as src:
        src.seek(-1, os.SEEK_END)
        return src.read(1) == b"\n"
