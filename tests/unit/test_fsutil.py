"""Atomic writes from several threads at once, and the temporary files a killed process leaves behind."""

import os
import threading

from proxpipe.base.fsutil import atomic_write, remove_stale_temps


def test_threads_writing_one_file_at_once_each_succeed_and_leave_no_temporary(tmp_path):
    # validate's checks share one cache file (cluster-vms.json): two writers once shared a temporary name too
    target, errors, start = tmp_path / "cache.json", [], threading.Barrier(8)

    def write(n):
        start.wait()
        try:
            for _ in range(50):
                atomic_write(target, f"{n}\n" * 1000, durable=False)
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(target.read_text().splitlines())) == 1  # one writer's whole file
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead, live = tmp_path / ".a.json.7.tmp-999999999", tmp_path / f".b.json.7.tmp-{os.getpid()}"
    dead.write_text("x")
    live.write_text("x")
    assert remove_stale_temps(tmp_path) == [dead]
    assert live.exists()
