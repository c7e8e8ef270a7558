"""Issue 27, rule 4: an OSError on the state directory, the logs or the console is one line naming the path and the
errno's meaning, never a traceback, and the handoffs are kept; output falls back to ASCII where the stream cannot
encode it.

How the failures are made, as root or not: a read-only state directory is a read-only bind mount, and a full disk a
small tmpfs, each in a mount namespace of an unprivileged user namespace (`unshare -Urm`), so the kernel itself
refuses the writes (chmod does not stop root); a full console or log is /dev/full. What a command left on the tmpfs
is copied out before the namespace ends, to be compared byte for byte.
"""

import errno
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from proxpipe.base.console import Console, fit_stream
from proxpipe.base.errors import FileError, PipelineError
from proxpipe.base.fsutil import atomic_write, display
from proxpipe.domain.config import Retry
from proxpipe.domain.state.local import LocalStore
from proxpipe.domain.toolrunner import ToolRunner
from tests.badinput import SeededProject, files, one_line
from tests.labproject import REPO
from tests.unit.test_plugins import ShellProject

PROXPIPE = str(Path(sys.executable).parent / "proxpipe")
DOIT = str(Path(sys.executable).parent / "doit")


def _namespaces() -> bool:
    return subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces(), reason="unshare -Urm (user namespaces) is not available")


def read_only(state: Path) -> str:
    return f"mount --bind {state} {state} && mount -o remount,bind,ro {state}"


def full(state: Path, left_kb: int) -> str:
    """state on a tmpfs holding its own files and `left_kb` kilobytes more, then filled up to that."""
    return (f"size=$(du -sk {state} | cut -f1) && cp -a {state}/. \"$SCRATCH\" && "
            f"mount -t tmpfs -o size=$((size + {left_kb} + 64))k tmpfs {state} && cp -a \"$SCRATCH\"/. {state} && "
            f"free=$(df -k {state} | tail -1 | awk '{{print $4}}') && "
            f"{{ dd if=/dev/zero of={state}/.filler bs=1k count=$((free - {left_kb})) 2>/dev/null; true; }}")


def in_namespace(argv: list[str], setup: str, env: dict, cwd: Path, keep: Path | None = None
                 ) -> subprocess.CompletedProcess:
    """argv run after setup in a user and mount namespace; keep: the state directory, copied out afterwards (to
    keep.parent/<name>.after) as the command left it."""
    after = f"cp -a {keep}/. {keep}.after/ && rm -f {keep}.after/.filler" if keep else "true"
    scratch = cwd / "scratch"
    scratch.mkdir(exist_ok=True)
    if keep:
        (keep.parent / f"{keep.name}.after").mkdir(exist_ok=True)
    script = f'{setup} && {{ "$@"; rc=$?; {after}; exit $rc; }}'
    return subprocess.run(["unshare", "-Urm", "sh", "-c", script, "sh", *argv], cwd=cwd, capture_output=True, text=True,
                          env={**env, "SCRATCH": str(scratch)}, timeout=120)


# ----------------------------------------------------------------------------- a read-only state directory


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return SeededProject(tmp_path_factory.mktemp("files") / "project")


@needs_namespaces
@pytest.mark.parametrize("command", [["deploy"], ["configure", "--force"], ["provision", "--template-id", "9100"],
                                     ["plan"], ["destroy"]], ids=" ".join)
def test_a_read_only_state_directory_is_one_line_and_no_tool(lab, command):
    result = in_namespace([DOIT, *command], read_only(lab.state),
                          lab.environ(), lab.root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result) == "error: .pipeline/lab/lock: cannot write: Read-only file system"
    lab.unchanged()


@needs_namespaces
@pytest.mark.parametrize("command", ["status", "history", "report"])
def test_what_only_reads_works_on_a_read_only_state_directory(lab, command):
    result = in_namespace([DOIT, command], read_only(lab.state), lab.environ(),
                          lab.root)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    said = [line for line in result.stderr.splitlines() if line.strip()]  # doit's record of it, at most
    assert len(said) <= 1 and all(".pipeline/lab/" in line and "Read-only file system" in line for line in said), said
    lab.unchanged()


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def shell(tmp_path):
    project = ShellProject(tmp_path)
    assert project.doit("deploy").returncode == 0
    project.state = tmp_path / ".pipeline" / "local"
    project.before = files(project.state)
    return project


def _environ(project: ShellProject, extra: dict | None = None) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    return {**environ, "PROXPIPE_PLUGINS": "recorder", "PYTHONPATH": str(REPO / "tests" / "plugins"), "NO_COLOR": "1",
            **(extra or {})}


def _handoffs(state: Path) -> dict[str, bytes]:
    return {name: (state / name).read_bytes() for name in ("make.txt", "upper.txt")}


@needs_namespaces
def test_a_full_disk_before_the_run_is_one_line_and_no_tool(shell):
    marker = shell.root / "started"
    shell.config["environments"]["local"]["stages"]["upper"]["command"] = f"touch {marker}; exit 1"
    shell.write()
    result = in_namespace([DOIT, "-a", "deploy"], full(shell.state, 0),
                          _environ(shell), shell.root, keep=shell.state)
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result) == "error: .pipeline/local/lock.json: cannot write: No space left on device"
    assert not marker.exists()
    assert files(shell.root / ".pipeline" / "local.after") == shell.before


@needs_namespaces
def test_a_disk_that_fills_up_while_the_tool_runs(shell):
    # The tool fills the disk, then prints more than a pipe holds: its log cannot take it, the new handoff neither.
    # (It started, so its stage record is dropped as before any run: rule 5, not this one.)
    command = (f"dd if=/dev/zero of={shell.state}/.filler bs=1k count=100000 2>/dev/null; "
               "for i in $(seq 3000); do echo line $i; done; echo a new one > $PIPELINE_OUTPUT")
    shell.config["environments"]["local"]["stages"]["upper"]["command"] = command
    shell.write()
    result = in_namespace([DOIT, "upper", "--force"], full(shell.state, 40),
                          _environ(shell), shell.root, keep=shell.state)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output and "Exception in thread" not in output, output
    failed = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("✗")]
    assert len(failed) == 1 and failed[0].endswith(": .pipeline/local/upper.txt: cannot write: No space left on device")
    assert ".pipeline/local/upper.txt kept" in result.stdout
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert said[0].startswith("warning: .pipeline/local/logs/") and said[0].endswith(
        "upper.log: cannot write: No space left on device; the log lacks the rest of the tool's output (the tool's "
        "outcome stands)"), said
    assert said[1:] == []  # the failure itself is the stage's ✗ line
    after = shell.root / ".pipeline" / "local.after"
    assert {name: (after / name).read_bytes() for name in ("make.txt", "upper.txt")} == {
        name: shell.before[name] for name in ("make.txt", "upper.txt")}  # kept, byte for byte


# ----------------------------------------------------------------------------- the console


def test_a_console_that_cannot_be_written_is_one_line_on_the_other(shell):
    with open("/dev/full", "w") as stdout:
        result = subprocess.run([PROXPIPE, "status"], cwd=shell.root, env=_environ(shell), stdout=stdout,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 1
    assert one_line(result) == ("error: stdout (/dev/full): cannot write: No space left on device; the rest of its "
                                "output is lost")
    shell.config["environments"]["local"]["stages"]["make"]["command"] = "echo again > $PIPELINE_OUTPUT"
    shell.write()
    with open("/dev/full", "w") as stdout:  # a deploy goes on without its console: the work is done all the same
        result = subprocess.run([PROXPIPE, "deploy"], cwd=shell.root, env=_environ(shell), stdout=stdout,
                                stderr=subprocess.PIPE, text=True, timeout=60)
    assert "cannot write: No space left on device" in one_line(result)
    assert (shell.state / "upper.txt").read_text() == "AGAIN\n"


@pytest.mark.parametrize("environ", [{"PYTHONIOENCODING": "ascii"},
                                     {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}],
                         ids=["PYTHONIOENCODING=ascii", "LC_ALL=C"])
def test_a_console_that_cannot_encode_the_symbols_gets_ascii(shell, environ):
    # The tool's own output holds what ASCII cannot (é, │); its command line cannot, in a C locale.
    printing = r"printf 'caf\303\251 \342\224\202 broken\n'; exit 3"
    shell.config["environments"]["local"]["stages"]["upper"]["command"] = printing
    shell.write()
    for command, code in (("status", 0), ("deploy", 1), ("history", 0)):
        result = subprocess.run([DOIT, command], cwd=shell.root,
                                env=_environ(shell, environ), capture_output=True, timeout=60)
        stdout, stderr = result.stdout.decode("ascii"), result.stderr.decode("ascii")  # nothing else in them
        assert result.returncode == code and "Traceback" not in stdout + stderr, stdout + stderr
        if command == "deploy":
            assert "- make  up to date" in stdout and "> upper  shell - work" in stdout
            assert "  x upper failed after" in stdout and "    | caf? | broken" in stdout


# ----------------------------------------------------------------------------- the same, function by function


def test_an_atomic_write_that_fails_keeps_the_file_and_says_which(tmp_path, monkeypatch):
    target = tmp_path / "state" / "ansible_inventory.json"
    atomic_write(target, "before\n")

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))

    monkeypatch.setattr(os, "replace", full_disk)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileError) as caught:
        atomic_write(target, "after\n")
    assert str(caught.value) == "state/ansible_inventory.json: cannot write: No space left on device"
    assert isinstance(caught.value, OSError) and isinstance(caught.value, PipelineError)
    assert caught.value.errno == errno.ENOSPC and caught.value.strerror == "No space left on device"
    assert target.read_text() == "before\n" and os.listdir(target.parent) == ["ansible_inventory.json"]


def test_a_history_line_that_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "history.jsonl").symlink_to("/dev/full")
    with pytest.raises(FileError, match=r"^lab/history\.jsonl: cannot write: No space left on device$"):
        LocalStore(tmp_path / "lab", "lab").append("history", json.dumps({"stage": "build"}))


def test_a_log_that_cannot_be_written_starts_no_tool(tmp_path):
    marker = tmp_path / "started"
    runner = ToolRunner(Path("/dev/full"), tmp_path, {}, 60, Retry(1, 60), "stage")
    with pytest.raises(FileError, match=r"^/dev/full: cannot write: No space left on device$"):
        runner.run(["touch", str(marker)], "terraform apply")
    assert not marker.exists()


def test_a_log_that_fills_up_while_the_tool_runs_still_drains_it(tmp_path, monkeypatch, capsys):
    crashed: list = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    runner = ToolRunner(tmp_path / "stage.log", tmp_path, {}, 60, Retry(1, 60), "stage")
    monkeypatch.setattr(runner, "_open_log", lambda: open("/dev/full", "a"))  # the disk is full from here on
    result = runner.run(["sh", "-c", "for i in $(seq 20000); do echo line $i; done"], "ansible-playbook")
    assert result.returncode == 0 and result.output.splitlines()[-1] == "line 20000" and crashed == []
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert warnings == [f"warning: {display(runner.log_path)}: cannot write: No space left on device; the log "
                        "lacks the rest of the tool's output (the tool's outcome stands)"]


def test_the_console_says_once_that_a_stream_cannot_be_written(capsys):
    console = Console()
    with open("/dev/full", "w") as stream:
        console.out("▶ build", stream)
        console.out("  ✓ build", stream)
    assert capsys.readouterr().err == ("error: stdout (/dev/full): cannot write: No space left on device; the rest of "
                                       "its output is lost\n")


def test_symbols_the_stream_cannot_encode_become_ascii():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    fit_stream(stream)
    stream.write("▶ build · ✓ ✗ │ ↶ ↻ … café \udcff\n")
    stream.flush()
    assert raw.getvalue() == b"> build - + x | < ~ ... caf? \xff\n"
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    fit_stream(utf8)
    assert utf8.errors == "strict"  # nothing changes where everything can be shown

