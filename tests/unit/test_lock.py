"""One run per environment: a second one fails at once and names the holder; a dead holder's lock is taken over."""

import getpass
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from proxpipe.base.errors import LockedError
from proxpipe.domain import lock

HOLD = textwrap.dedent("""
    import sys, time
    from proxpipe.domain import lock
    lock.acquire(sys.argv[1], "lab", "deploy")
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_run_fails_at_once_naming_the_holder(tmp_path, holder):
    with pytest.raises(LockedError) as caught:
        lock.acquire(tmp_path, "lab", "build")
    message = str(caught.value)
    assert message.startswith(f"environment lab is locked by {getpass.getuser()}@{socket.gethostname()} "
                              f"pid {holder.pid} (deploy, since ")
    assert "wait for it to finish, or pass --wait-lock SECONDS" in message


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, holder, capsys):
    holder.kill()
    holder.wait()
    lock.acquire(tmp_path, "lab", "deploy")
    try:
        assert f"taking over the lock of environment lab left by {getpass.getuser()}@{socket.gethostname()} " \
               f"pid {holder.pid} (deploy" in capsys.readouterr().err
        assert json.loads((tmp_path / "lock.json").read_text())["pid"] == os.getpid()
    finally:
        lock.release(tmp_path)
    assert not (tmp_path / "lock.json").exists()


def test_acquiring_twice_in_one_process_is_fine(tmp_path):
    lock.acquire(tmp_path, "lab", "deploy")
    lock.acquire(tmp_path, "lab", "deploy")
    lock.release(tmp_path)
