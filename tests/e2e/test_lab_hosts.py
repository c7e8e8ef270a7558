"""A lab VM's sshd (proxpipe.lab.hosts): starting it returns at once, so the lab's API keeps answering while
many VMs start (issue 16), and a VM stopped while its sshd is still starting leaves no sshd behind."""

import time

import pytest

from proxpipe.lab.hosts import LabHost, LabKeys
from tests.labproject import answers_ssh, next_block

pytestmark = pytest.mark.e2e


def test_a_started_sshd_comes_up_and_stops(tmp_path):
    keys = LabKeys(tmp_path)
    keys.ensure()
    host, address = LabHost(tmp_path, 201, keys), f"{next_block()}.11"
    host.start(address)
    deadline = time.monotonic() + 10
    while not (host.running() and answers_ssh(address)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.running() and answers_ssh(address)
    host.stop()
    assert not host.running() and not answers_ssh(address)


def test_a_vm_stopped_as_its_sshd_starts_leaves_none(tmp_path):
    keys = LabKeys(tmp_path)
    keys.ensure()
    host, address = LabHost(tmp_path, 202, keys), f"{next_block()}.12"
    host.start(address)
    host.stop()  # at once: the sshd may not have written its pid file yet
    for _ in range(20):  # nothing comes up later either
        assert not answers_ssh(address) and not host.running()
        time.sleep(0.05)
