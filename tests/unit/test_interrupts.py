"""Ctrl-C and SIGTERM (issue 17): the running tool is told to stop with SIGINT and given a grace period, a second
interrupt or the end of the grace period kills it, no tool starts afterwards, a handoff and its history line are
never cut apart, and waits that are not a tool (the SSH wait) end at once.

The signals are real: the tools below send them to this test process, as a terminal or a CI runner would.
"""

import itertools
import os
import signal
import sys
import threading
import time

import pytest

from proxpipe.base import interrupts
from proxpipe.base.fsutil import pid_alive
from proxpipe.base.interrupts import Interrupted
from proxpipe.domain import sshwait
from proxpipe.domain.config import Retry
from proxpipe.domain.inventory import Host
from proxpipe.domain.toolrunner import READER, ToolRunner
from tests.labproject import wait_for


@pytest.fixture
def handled():
    """The pipeline's handlers for SIGINT and SIGTERM, for one test."""
    saved = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    interrupts.install()
    yield
    interrupts.uninstall()
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def tool(tmp_path, on_int: str) -> str:
    """A tool that interrupts the pipeline (its parent) once it runs, then does on_int at SIGINT."""
    script = tmp_path / "tool.sh"
    script.write_text(f"#!/bin/sh\ntrap '{on_int}' INT\necho started\nkill -INT $PPID\n"
                      "while :; do sleep 0.05; done\n")
    script.chmod(0o755)
    return str(script)


def runner(tmp_path, grace=30.0):
    return ToolRunner(tmp_path / "stage.log", tmp_path, {}, 60, Retry(3, 60, ("retry me",)), "stage", grace)


def logged(tmp_path) -> str:
    """The stage log once every reader of a tool's output is done: after an interrupt the runner waits for them
    only a little (a tool's child may hold the pipe), and on a busy machine a reader may still be writing the tool's
    last lines when run() has returned."""
    for thread in threading.enumerate():
        if thread.name.startswith(READER):
            thread.join(60)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(READER)], "a tool's output is still read"
    return (tmp_path / "stage.log").read_text()


def test_the_tool_gets_sigint_and_may_stop_cleanly(handled, tmp_path):
    with pytest.raises(Interrupted) as caught:
        runner(tmp_path).run([tool(tmp_path, "echo stopping cleanly; exit 1")], "terraform apply")
    assert caught.value.code == 130 and caught.value.name == "SIGINT"
    log = logged(tmp_path)
    assert "stopping cleanly" in log and "# interrupted: the tool was sent SIGINT; it stopped (exit 1)" in log


def test_an_interrupt_whose_exception_python_dropped_still_stops_the_run_the_same_way(handled, tmp_path):
    # A signal that lands while a weakref callback runs (or inside the handler of another): Python prints the
    # handler's exception as unraisable and goes on. The signal was recorded and forwarded all the same.
    def dropped(signum, frame):
        interrupts._received.append(signum)
        interrupts.forward(dict(interrupts._tools))

    signal.signal(signal.SIGINT, dropped)
    script = tmp_path / "late.sh"  # the signal comes once the runner waits for the tool, not while it starts it
    script.write_text("#!/bin/sh\ntrap 'echo stopping cleanly; exit 1' INT\nsleep 0.5\nkill -INT $PPID\n"
                      "while :; do sleep 0.05; done\n")
    script.chmod(0o755)
    with pytest.raises(Interrupted):
        runner(tmp_path).run([str(script)], "terraform apply")
    assert "# interrupted: the tool was sent SIGINT; it stopped (exit 1)" in logged(tmp_path)


def test_a_tool_that_does_not_stop_is_killed_after_its_grace_period(handled, tmp_path):
    with pytest.raises(Interrupted):
        runner(tmp_path, grace=0.3).run([tool(tmp_path, "echo ignoring it")], "packer build")
    log = logged(tmp_path)
    assert "ignoring it" in log and "it did not stop within 0.3s" in log


def test_a_tool_that_wants_it_gets_sigint_again_when_it_missed_the_first(handled, tmp_path):
    # ansible-playbook can drop the first SIGINT (it lands while it forks a worker); its second one stops it.
    again = ToolRunner(tmp_path / "stage.log", tmp_path, {}, 60, Retry(1, 60), "stage", 3600, again=0.3)
    with pytest.raises(Interrupted):
        again.run([tool(tmp_path, "n=$((n+1)); echo heard $n; [ $n -ge 2 ] && exit 3")], "ansible-playbook")
    log = logged(tmp_path)
    assert "heard 1" in log and "heard 2" in log
    assert "# interrupted: the tool was sent SIGINT; it did not stop within 0.3s and was sent SIGINT again; " \
           "it stopped (exit 3)" in log


def test_what_the_tool_started_in_a_session_of_its_own_does_not_outlive_it(handled, tmp_path):
    # As Ansible's workers: a child in a session of its own, which a signal to the tool's process group misses,
    # left running when the tool stops (by its own choice, as an ansible-playbook whose worker forked just then).
    pidfile = tmp_path / "child.pid"
    child = tmp_path / "child.py"
    child.write_text("import os, signal, sys, time\nos.setsid()\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                     "open(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(300)\n")
    script = tmp_path / "tool.sh"
    script.write_text(f"#!/bin/sh\n{sys.executable} {child} {pidfile} &\n"
                      f"while [ ! -s {pidfile} ]; do sleep 0.05; done\n"
                      "trap 'exit 1' INT\nkill -INT $PPID\nwhile :; do sleep 0.05; done\n")
    script.chmod(0o755)
    with pytest.raises(Interrupted):
        runner(tmp_path).run([str(script)], "ansible-playbook")
    pid = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(pid), "the tool's child in a session of its own to be gone", timeout=10)
    assert "it stopped (exit 1)" in logged(tmp_path)


def test_a_second_interrupt_kills_the_tool_at_once(handled, tmp_path):
    # Grace enough to fail the test by pytest's timeout if the second Ctrl-C were not heeded.
    with pytest.raises(Interrupted):
        runner(tmp_path, grace=3600).run([tool(tmp_path, "echo once more; kill -INT $PPID")], "terraform apply")
    log = logged(tmp_path)
    assert "once more" in log and "a second interrupt came" in log


def test_the_log_gets_the_tools_last_words_however_slow_its_reader(handled, tmp_path, monkeypatch):
    # A busy machine, made: the reader takes the first line at once and the rest long after the runner stopped
    # waiting for it (2 s); the log still gets them, and logged() waits for them.
    read = ToolRunner._read

    def slow(self, stream, *args):
        first = stream.readline()
        time.sleep(2.5)
        return read(self, itertools.chain([first], stream), *args)

    monkeypatch.setattr(ToolRunner, "_read", slow)
    with pytest.raises(Interrupted):
        runner(tmp_path, grace=3600).run([tool(tmp_path, "echo once more; kill -INT $PPID")], "terraform apply")
    log = logged(tmp_path)
    assert "started" in log and "once more" in log and "a second interrupt came" in log


def test_sigterm_exits_with_143(handled, tmp_path):
    script = tmp_path / "term.sh"
    script.write_text("#!/bin/sh\ntrap 'exit 1' INT\nkill -TERM $PPID\nwhile :; do sleep 0.05; done\n")
    script.chmod(0o755)
    with pytest.raises(Interrupted) as caught:
        runner(tmp_path).run([str(script)], "ansible-playbook")
    assert caught.value.code == 143 and caught.value.name == "SIGTERM"


def test_no_tool_starts_after_an_interrupt(handled, tmp_path):
    with pytest.raises(Interrupted):
        runner(tmp_path).run([tool(tmp_path, "exit 1")], "terraform plan")
    with pytest.raises(Interrupted):
        runner(tmp_path).run(["true"], "terraform apply")
    assert "$ true" not in logged(tmp_path)


def test_a_tool_in_another_thread_is_stopped_and_not_retried(handled, tmp_path):
    script = tmp_path / "lint.sh"
    script.write_text("#!/bin/sh\ntrap 'echo retry me; exit 1' INT\necho started\nwhile :; do sleep 0.05; done\n")
    script.chmod(0o755)
    lint = runner(tmp_path)
    ended: list[BaseException] = []

    def gate():
        try:
            lint.run([str(script)], "lint gate")
        except BaseException as exc:  # noqa: BLE001 - what the thread ended with is the point
            ended.append(exc)

    thread = threading.Thread(target=gate)
    thread.start()
    log = tmp_path / "stage.log"
    wait_for(lambda: log.exists() and "started" in log.read_text(), "the lint tool")
    with pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGINT)
        thread.join(30)  # the handler raises here, in the main thread
    thread.join(30)
    assert len(ended) == 1 and isinstance(ended[0], Interrupted)
    assert logged(tmp_path).count("$ ") == 1  # its "retry me" was not retried


def test_a_handoff_and_its_history_line_are_not_cut_apart(handled):
    written = []
    with pytest.raises(Interrupted) as caught:
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            written.append("handoff")
            written.append("history line")
    assert written == ["handoff", "history line"] and caught.value.code == 143


def test_the_ssh_wait_ends_at_once_and_kills_its_probes(handled, tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(f"#!/bin/sh\necho $$ > {tmp_path}/ssh.pid\nexec sleep 300\n")
    (fake / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    pid_file = tmp_path / "ssh.pid"

    def interrupt_once_probing():
        wait_for(pid_file.exists, "the probe's ssh")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_probing, daemon=True).start()
    host = Host("jump-01", {"ansible_host": "127.0.0.1"})
    with pytest.raises(Interrupted):
        sshwait.wait_until_ready([host], ["true"], deadline=300, connect_timeout=1)
    pid = int(pid_file.read_text())
    wait_for(lambda: not pid_alive(pid), "the probe's ssh to be killed", timeout=5)
    probing = [t for t in threading.enumerate() if t.name.startswith("readiness:")]
    for thread in probing:
        thread.join(5)
    assert not any(t.is_alive() for t in probing)


# ----------------------------------------------------------------------------- a whole run, on shell stages


def test_an_interrupted_run_ends_in_one_line_with_143_and_tells_the_plugins(tmp_path):
    from tests.unit.test_plugins import ShellProject

    project = ShellProject(tmp_path)
    project.doit("deploy")
    project.events()
    # The second stage's command is cancelled like a CI job: SIGTERM to the pipeline's process, not its group.
    project.config["environments"]["local"]["stages"]["upper"]["command"] = "kill -TERM $PPID; exec sleep 30"
    project.write()
    before = (tmp_path / ".pipeline" / "local" / "upper.txt").read_text()
    result = project.doit("deploy")
    assert result.returncode == 143 and "Traceback" not in result.stdout + result.stderr
    said = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.startswith(("  ✗", "error:"))]
    assert len(said) == 1 and said[0].startswith("✗ upper interrupted by SIGTERM after "), result.stdout
    assert said[0].endswith("nothing handed off (.pipeline/local/upper.txt is the previous one); "
                            "`doit deploy` resumes at upper")
    assert " done in " not in result.stdout and " failed in " not in result.stdout
    assert (tmp_path / ".pipeline" / "local" / "upper.txt").read_text() == before
    assert not (tmp_path / ".pipeline" / "local" / "lock.json").exists()
    events = project.events()
    assert {"hook": "stage_failed", "stage": "upper", "message": "interrupted by SIGTERM"} in events
    assert events[-1] == {"hook": "run_finished", "ok": False, "outcomes": [["make", "skipped"],
                                                                            ["upper", "interrupted"]]}
    logs = [p.read_text() for p in (tmp_path / ".pipeline" / "local" / "logs").glob("*/upper.log")]
    assert any("kill -TERM" in log and "# interrupted: the tool was sent SIGINT; it stopped" in log for log in logs)
