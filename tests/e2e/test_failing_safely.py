"""Failing safely (issue 17), on the real tools in the lab: Ctrl-C (SIGINT) and SIGTERM in the middle of a stage,
and a damaged handoff, which deploy and the stage commands refuse to run on.

The tests share one deployed project; each leaves it deployed and up to date.
"""

import copy
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_reliability import handoffs, wait_for
from tests.labproject import VENV_BIN, _merge, stages_run

pytestmark = pytest.mark.e2e


def start_in_own_group(project, *args):
    """doit as a terminal runs it: in a process group of its own, which a Ctrl-C signals as a whole."""
    return subprocess.Popen([str(VENV_BIN / "doit"), *args], cwd=project.root, env=project.environ(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def new_log(project, stage, old):
    logs = sorted(set(project.state.glob(f"logs/*/{stage}.log")) - old)
    return logs[-1].read_text() if logs else ""


def processes_in(folder: Path) -> list[str]:
    """The command lines of the processes whose working directory is folder (a tool and its children), but for
    SSH's shared connections, which outlive a run on purpose (ControlPersist)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == folder:
                found.append((proc / "cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    return [line for line in found if "[mux]" not in line]


def last_run(project) -> dict:
    return json.loads((project.state / "runs.jsonl").read_text().splitlines()[-1])


# ----------------------------------------------------------------------------- interrupts

SLOW = {
    # The VM's creation sleeps first: Terraform is caught applying, in its local-exec provisioner.
    "provision": ({"vars": {"apply_delay": 300}}, "(local-exec): waiting 300s first", "lab/terraform"),
    # The play sleeps before its task: ansible-playbook is caught in the middle of the play.
    "configure": ({"extra_args": ["-e", "lab_pause=300"]}, "Sleep 300s on the controller", "lab/ansible"),
}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", ["provision", "configure"])
def test_an_interrupt_in_the_middle_of_a_stage(deployed, stage, signum):
    lab = deployed
    name = signal.Signals(signum).name
    settings, marker, folder = SLOW[stage]
    before, saved = handoffs(lab), copy.deepcopy(lab.config)
    _merge(lab.env["stages"][stage], copy.deepcopy(settings))
    lab.write_config()
    if stage == "provision":
        lab.admin("vm", {"vmid": 201, "delete": True})  # the apply re-creates it, slowly
    old_logs = set(lab.state.glob(f"logs/*/{stage}.log"))
    victim = start_in_own_group(lab, "deploy")
    try:
        wait_for(lambda: marker in new_log(lab, stage, old_logs) or victim.poll() is not None,
                 f"{stage} to be in the middle", timeout=120)
        assert victim.poll() is None, f"the deploy ended before it could be interrupted: {victim.communicate()}"
        os.killpg(victim.pid, signum)
        out, err = victim.communicate(timeout=120)
    finally:
        if victim.poll() is None:
            victim.kill()
        lab.config = saved
        lab.write_config()

    assert victim.returncode == 128 + signum, out + err
    assert "Traceback" not in out + err and " done in " not in out + err
    said = [line.strip() for line in (out + err).splitlines() if "interrupted" in line]
    handoff = {"provision": "ansible_inventory.json", "configure": "configure.json"}[stage]
    assert len(said) == 1 and re.fullmatch(
        rf"✗ {stage} interrupted by {name} after [\d.]+s: nothing handed off \(\.pipeline/lab/{handoff} is the "
        rf"previous one\); `doit deploy` resumes at {stage}", said[0]), out + err
    assert handoffs(lab) == before
    assert not (lab.state / "lock.json").exists()
    entry = lab.history()[-1]
    assert (entry["stage"], entry["outcome"], entry["signal"]) == (stage, "interrupted", name)
    run = last_run(lab)
    assert run["interrupted"] == name and run["ok"] is False
    assert {"name": stage, "status": "interrupted"}.items() <= run["stages"][-1].items()
    log = new_log(lab, stage, old_logs)
    # ansible-playbook may miss the first SIGINT (it lands while it forks); the second, 5 s later, stops it
    assert re.search(r"# interrupted: the tool was sent SIGINT; (it did not stop within 5s and was sent SIGINT "
                     r"again; )?it stopped", log), log
    assert processes_in(lab.root / folder) == []  # the tool and what it started are gone
    if stage == "provision":
        assert "Interrupt received" in log  # Terraform stopped the way it stops at Ctrl-C
        assert not (lab.root / folder / ".terraform.tfstate.lock.info").exists()

    old_logs = set(lab.state.glob(f"logs/*/{stage}.log"))
    result = lab.ok("deploy")
    assert stage in stages_run(result) and "taking over the lock" not in result.stderr
    assert "Error acquiring the state lock" not in new_log(lab, "provision", old_logs)  # the state is not locked
    assert json.loads(lab.handoff("configure.json"))["recap"]["jump-01"]["failed"] == 0


# ----------------------------------------------------------------------------- damaged handoffs

DAMAGED = {
    "template_id.txt": ("build", r"the last valid one was template (\d+) \(build [^)]*, still on pve1\)",
                        "doit build --rebuild"),
    "ansible_inventory.json": ("provision", r"the last valid one was 1 host \(jump-01\) \(provision [^)]*\)",
                               "doit provision --force"),
    "configure.json": ("configure", r"the last valid one was 1 host configured, \d+ changed \(configure [^)]*\)",
                       "doit configure --force"),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_handoff_stops_everything_until_it_is_restored(deployed, name):
    lab = deployed
    stage, last, forced = DAMAGED[name]
    before, history = lab.handoff(name), (lab.state / "history.jsonl").read_bytes()
    (lab.state / name).write_text("garbage\n")
    lab.reset_calls()
    for command in ("deploy", stage):
        result = lab.doit(command)
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, command
        said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        assert len(said) == 1 and said[0].startswith(f"error: .pipeline/lab/{name} is damaged: "), said
        assert re.search(last, said[0]) and f"or replace it with `{forced}`; nothing was run" in said[0], said[0]
    assert lab.tool_calls() == []  # no packer, terraform, ansible or ssh
    assert (lab.state / "history.jsonl").read_bytes() == history
    assert f"{name}: INVALID" in lab.ok("status").stdout

    restore = re.search(r"restore it with `doit ([^`]*)`", said[0]).group(1)
    if name == "template_id.txt":
        assert restore == f"rollback --stage build --to {int(before)}"
    lab.ok(*restore.split())
    assert lab.handoff(name) == before
    lab.reset_calls()
    result = lab.ok("deploy")
    assert stages_run(result) == [] and lab.tool_calls() == []


def test_a_forced_run_replaces_a_damaged_handoff(deployed):
    lab = deployed
    for name, (stage, _, forced) in reversed(DAMAGED.items()):
        (lab.state / name).write_text("garbage\n")
        result = lab.ok(*forced.split()[1:])
        assert stages_run(result) == [stage]
        assert f"{name}: INVALID" not in lab.ok("status").stdout
    result = lab.ok("deploy")  # the new template: the VM is re-created from it and configured
    assert stages_run(result) == ["provision", "configure"]
    lab.reset_calls()
    assert stages_run(lab.ok("deploy")) == [] and lab.tool_calls() == []
