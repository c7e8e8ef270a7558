"""Ansible's check mode read for drift (stages/ansible_output.py), on the output of the real ansible-playbook: a play
run once, files then changed by hand, and `--check --diff` of it. The hosts are local connections to folders under
the test's own directory; one more host behind a closed port is unreachable."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxpipe.domain.drift import HOST, DriftItem
from proxpipe.stages.ansible_output import check_drift, check_problem, stage_drift

PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: Make the folder
      file: {path: "{{ root }}", state: directory, mode: "0755"}
    - name: Write the config
      copy: {dest: "{{ root }}/app.conf", content: "port = 80\\nname = {{ inventory_hostname }}\\n", mode: "0644"}
      notify: reload app
    - name: Write the parts
      copy: {dest: "{{ root }}/{{ item }}.part", content: "{{ item }}\\n", mode: "0644"}
      loop: [a, b]
    - name: Write the long file
      copy: {dest: "{{ root }}/long.txt", content: "{{ range(100) | join('\\n') }}\\n", mode: "0644"}
    - name: A task that hides its output
      copy: {dest: "{{ root }}/secret", content: "hidden-s3cret\\n", mode: "0600"}
      no_log: true
    - name: Only on web-02
      copy: {dest: "{{ root }}/warned", content: "w\\n", mode: "0644"}
      when: inventory_hostname == "web-02"
  handlers:
    - name: reload app
      copy: {dest: "{{ root }}/reloaded", content: "yes\\n", mode: "0644"}
"""


class Play:
    def __init__(self, root: Path, hosts: list[str], unreachable: list[str] = ()):
        self.root = root
        python = sys.executable
        lines = ["all:", "  hosts:"]
        lines += [f"    {h}: {{ansible_connection: local, ansible_python_interpreter: {python}, root: {root / h}}}"
                  for h in hosts]
        lines += [f"    {h}: {{ansible_host: 127.0.0.1, ansible_port: 1, root: {root / h}}}" for h in unreachable]
        (root / "inventory.yml").write_text("\n".join(lines) + "\n")
        (root / "site.yml").write_text(textwrap.dedent(PLAYBOOK))
        home = root / ".ansible-home"
        self.env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_HOME": str(home),
                    "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_RETRY_FILES_ENABLED": "false",
                    "ANSIBLE_HOST_KEY_CHECKING": "false", "ANSIBLE_SSH_ARGS": "-o ConnectTimeout=5"}

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventory.yml",
                               "site.yml", *extra], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=120)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """The play applied to web-01 and web-02, then changed by hand; the output of --check --diff."""
    root = tmp_path_factory.mktemp("play")
    play = Play(root, ["web-01", "web-02"])
    assert play.run().returncode == 0
    (root / "web-01" / "app.conf").write_text("port = 8080\n")  # edited by hand
    (root / "web-02" / "b.part").unlink()  # deleted by hand
    (root / "web-02" / "long.txt").write_text("")  # emptied
    (root / "web-01" / "secret").write_text("changed\n")
    (root / "web-01" / "reloaded").unlink()  # so that the handler, notified by the config's change, would change it
    result = play.run("--check", "--diff")
    assert result.returncode == 0, result.stdout + result.stderr
    # check mode changed nothing
    assert (root / "web-01" / "app.conf").read_text() == "port = 8080\n" and not (root / "web-02" / "b.part").exists()
    return result


def test_which_tasks_would_change_which_hosts(drifted):
    items = check_drift(drifted.stdout)
    assert [(i.subject, i.summary) for i in items] == [
        ("web-01", "Write the config"), ("web-02", "Write the parts (item=b)"), ("web-02", "Write the long file"),
        ("web-01", "A task that hides its output"), ("web-01", "handler: reload app")]
    assert all(item.kind == HOST for item in items)


def test_each_item_has_its_hosts_own_diff(drifted):
    config, part = check_drift(drifted.stdout)[:2]
    assert config.lines == (f"--- before: {drifted_root(drifted)}/web-01/app.conf",
                            f"+++ after: {drifted_root(drifted)}/web-01/app.conf", "@@ -1 +1,2 @@",
                            "-port = 8080", "+port = 80", "+name = web-01")
    assert part.lines[0] == "--- before" and part.lines[-1] == "+b"


def test_a_long_diff_is_cut_with_a_count(drifted):
    long = next(i for i in check_drift(drifted.stdout) if i.summary == "Write the long file")
    assert len(long.lines) == 41 and long.lines[-1] == "... and 63 more lines"
    assert check_drift(drifted.stdout, diff_lines=5)[2].lines[-1] == "... and 98 more lines"


def test_a_task_with_no_log_shows_no_diff(drifted):
    hidden = next(i for i in check_drift(drifted.stdout) if i.summary == "A task that hides its output")
    assert "hidden-s3cret" not in drifted.stdout and not any("s3cret" in line for line in hidden.lines)


def test_every_host_checked_is_no_problem(drifted):
    assert check_problem(drifted.stdout, drifted.returncode) is None
    drift = stage_drift("configure", "ansible", drifted.stdout, drifted.returncode)
    assert drift.status == "drifted" and drift.summary() == "drifted: 2 hosts"


def test_in_sync_after_the_play_has_run_again(tmp_path):
    play = Play(tmp_path, ["web-01"])
    assert play.run().returncode == 0
    result = play.run("--check", "--diff")
    assert check_drift(result.stdout) == [] and check_problem(result.stdout, result.returncode) is None
    assert stage_drift("configure", "ansible", result.stdout, result.returncode).status == "in sync"


def test_an_unreachable_or_failing_host_means_the_stage_cannot_tell(tmp_path):
    play = Play(tmp_path, ["web-01"], unreachable=["web-03"])
    (tmp_path / "site.yml").write_text(textwrap.dedent(PLAYBOOK).replace(
        "    - name: Write the parts", "    - name: Refuse web-01\n      fail: {msg: not ready}\n"
        "      when: inventory_hostname == 'web-01' and ansible_check_mode\n    - name: Write the parts"))
    result = play.run("--check", "--diff")
    assert result.returncode == 4, result.stdout + result.stderr
    assert check_problem(result.stdout, result.returncode) == (
        "could not check every host: web-03 unreachable; web-01 failed in check mode")
    drift = stage_drift("configure", "ansible", result.stdout, result.returncode)
    assert drift.status == "unknown" and drift.items[0] == DriftItem(
        HOST, "web-01", "Make the folder", (), drift.items[0].lines)  # what it saw before failing stays
    assert drift.items[0].lines[0] == "--- before" and not any(line.startswith("[ERROR]") for line in
                                                                drift.items[0].lines)


def test_no_play_recap_means_the_playbook_did_not_run():
    assert check_problem("ERROR! the playbook: site.yml could not be found\n", 1) == (
        "ansible-playbook --check printed no PLAY RECAP (exit 1)")


def test_warnings_after_a_diff_and_delegated_hosts():
    output = textwrap.dedent("""\
        TASK [Write the config] ********************************************************
        --- before: /etc/app.conf
        +++ after: /etc/app.conf
        @@ -1 +1 @@
        -a
        +b

        [WARNING]: The value 1 (type int) was converted to '1' (type string).
        changed: [web-01 -> localhost]
        """)
    (item,) = check_drift(output)
    assert item.subject == "web-01" and item.lines == ("--- before: /etc/app.conf", "+++ after: /etc/app.conf",
                                                       "@@ -1 +1 @@", "-a", "+b")


def drifted_root(result: subprocess.CompletedProcess) -> str:
    line = next(line for line in result.stdout.splitlines() if line.startswith("--- before: "))
    return line.split(": ", 1)[1].rsplit("/web-0", 1)[0]
