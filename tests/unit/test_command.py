"""The `proxpipe` command: doit's command line on proxpipe's own loader, with doit's own commands, arguments doit
cannot take, and nothing loaded at import time. A pipeline of shell stages (tests/plugins/recorder.py) keeps it
fast."""

import os
import subprocess
import sys

import pytest

from tests.labproject import REPO
from tests.unit.test_plugins import PROXPIPE, ShellProject


@pytest.fixture
def shell(tmp_path):
    return ShellProject(tmp_path)


def proxpipe(project, *args):
    return project.doit(*args, proxpipe=True)


def test_every_task_and_doits_own_commands(shell):
    listed = proxpipe(shell, "list").stdout
    assert {"make", "upper", "deploy", "status", "validate", "docs", "doctor", "history"} <= {
        line.split()[0] for line in listed.splitlines() if line.strip()}
    assert proxpipe(shell, "help", "deploy").returncode == 0
    result = proxpipe(shell, "deploy")
    assert result.returncode == 0 and "deploy done" in result.stdout, result.stdout + result.stderr
    assert "make" in proxpipe(shell, "info", "make").stdout
    assert proxpipe(shell, "--version").stdout.startswith("proxpipe ")


def test_forget_makes_a_stage_run_again_on_this_machine(shell):
    assert proxpipe(shell, "deploy").returncode == 0
    assert proxpipe(shell, "forget", "upper").returncode == 0
    status = proxpipe(shell, "status").stdout
    assert "forgotten on this machine" in next(line for line in status.splitlines() if line.startswith("upper"))
    result = proxpipe(shell, "deploy")
    assert "▶ upper" in result.stdout and "▶ make" not in result.stdout
    assert "▶" not in proxpipe(shell, "deploy").stdout


@pytest.mark.parametrize("argv", [["upper", "--input", ""], ["deploy", ""], ["", "status"]])
def test_an_empty_argument_is_one_line_and_exit_3(shell, argv):
    result = proxpipe(shell, *argv)
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "is empty" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_doitw_gives_the_same_one_line_for_an_empty_argument():
    result = subprocess.run([str(REPO / "doitw"), "provision", "--template-id", ""], capture_output=True, text=True,
                            env={**os.environ, "PROXPIPE_SKIP_INSTALL": "1"}, timeout=60)
    assert result.returncode == 3 and "argument 3 is empty (the value of --template-id)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_options_of_the_loader_may_follow_the_task(shell):
    result = proxpipe(shell, "deploy", "--wait-lock", "5")
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_is_loaded_when_the_command_is_imported(tmp_path):
    code = ("import proxpipe.wiring.cli, proxpipe.wiring.loader, proxpipe.wiring.tasks, proxpipe.api; "
            "import sys; print(sorted(m for m in sys.modules if m.startswith(('yaml', 'jinja2', 'proxmoxer'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_a_missing_pipeline_points_at_proxpipe_init(tmp_path):
    result = subprocess.run([PROXPIPE, "status"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "create one with `proxpipe init`" in result.stderr


def test_ctrl_c_while_starting_is_one_line_and_exit_130(shell):
    # A SIGINT that lands while Python imports (before the pipeline handles signals itself).
    code = ("import os, signal, proxpipe.wiring.cli as cli\n"
            "cli.ProxpipeMain.run = lambda self, argv: os.kill(os.getpid(), signal.SIGINT)\n"
            "raise SystemExit(cli.main(['deploy']))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=shell.root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stderr == "interrupted while starting; nothing was run\n"
