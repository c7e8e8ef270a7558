"""Shared state in PostgreSQL (issue 14), on a real server: the lab's own, started by the pipeline through the lab
plugin, on the project's loopback block, stopped with the lab. Two checkouts of one project (A, and B, a git clone of
it) share it and the same lab. The tests run in order; each leaves both checkouts on the same commit, deployed.
"""

import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.labproject import REPO, VENV_BIN, LabProject, stages_run, stages_skipped, wait_for
from tests.statestore import store

pytestmark = pytest.mark.e2e

PASSWORD = "pg-d1stinct1ve-4e19c2"
SHARED, SECOND = "env=lab-shared", "env=lab-shared-2"
SCHEMA = "proxpipe_demo_lab_shared"
HANDOFFS = ("template_id.txt", "ansible_inventory.json", "configure.json")


class Shared:
    def __init__(self, a: LabProject, b: LabProject, lab_dir: Path):
        self.a, self.b, self.lab_dir = a, b, lab_dir
        self.url = f"postgresql://proxpipe:{PASSWORD}@{a.address}:5433/proxpipe"
        self.outputs: list[str] = []  # everything the commands printed, searched for the password at the end

    def run(self, project: LabProject, *args: str, ok: bool = True, **kwargs) -> subprocess.CompletedProcess:
        result = project.ok(*args, **kwargs) if ok else project.doit(*args, **kwargs)
        self.outputs += [result.stdout, result.stderr]
        return result

    def query(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url, connect_timeout=10) as conn:
            return conn.execute(statement, params).fetchall()

    def handoffs(self, schema: str = SCHEMA) -> dict[str, str]:
        return dict(self.query(f"SELECT name, text FROM {schema}.handoffs"))

    def history(self, schema: str = SCHEMA) -> list[dict]:
        return [json.loads(line) for (line,) in
                self.query(f"SELECT line FROM {schema}.logs WHERE log = 'history' ORDER BY seq")]




def slow_play(project: LabProject, seconds: int) -> None:
    """A's playbook, uncommitted, with a slow last task on the lab VM."""
    playbook = project.root / "lab" / "ansible" / "site.yml"
    playbook.write_text(playbook.read_text() + f"  tasks:\n    - name: a slow step\n      ansible.builtin.command: "
                                               f"sleep {seconds}\n")


def revert(project: LabProject) -> None:
    subprocess.run(["git", "checkout", "--", "."], cwd=project.root, check=True)


@contextlib.contextmanager
def watching_argv(needles: tuple[str, ...]):
    """Every process's command line, sampled while the block runs; yields the list of those holding a needle."""
    seen: list[str] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if any(needle in text for needle in needles):
                        seen.append(text)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join(5)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    # The lab's folder, outside pytest's temporary folders (mode 0700): its PostgreSQL runs as user postgres.
    lab_dir = Path(tempfile.mkdtemp(prefix="proxpipe-shared-lab-", dir="/tmp"))
    lab_dir.chmod(0o711)
    root = tmp_path_factory.mktemp("shared")
    a = LabProject(root / "a")
    a.extra_env = {"LAB_PG_PASSWORD": PASSWORD}
    a.share_state(lab_dir)
    # A second environment of the project on the same lab and database: its builds and lab-shared's race for ids.
    second = json.loads(json.dumps(a.config["environments"]["lab-shared"]))
    second["stages"] = {"build": second["stages"]["build"]}
    a.config["environments"]["lab-shared-2"] = second
    a.write_config()
    a.commit()
    b = a.clone(root / "b")
    yield Shared(a, b, lab_dir)
    a.doit("lab-stop", SHARED, timeout=60)
    from proxpipe.lab import database

    with contextlib.suppress(Exception):
        database.stop(lab_dir)
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((lab_dir / "fake-pve" / "server.pid").read_text()), signal.SIGTERM)
    shutil.rmtree(lab_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- up to date across checkouts


def test_a_deploys_and_b_starts_no_tool_and_shows_as_run(shared):
    a, b = shared.a, shared.b
    with watching_argv((PASSWORD, f"@{a.address}:5433")) as argv:
        deployed = shared.run(a, "deploy", SHARED)
    assert argv == [], "the database URL or password appeared in a command line"
    assert stages_run(deployed) == ["build", "provision", "configure"]
    run_id = re.search(r"\[env lab-shared, run (\S+)\]", deployed.stdout).group(1)
    handoffs = shared.handoffs()
    assert set(handoffs) == set(HANDOFFS)

    b.reset_calls()
    result = shared.run(b, "deploy", SHARED)
    assert b.tool_calls() == [] and stages_run(result) == []
    assert stages_skipped(result) == ["build", "provision", "configure"]
    status = shared.run(b, "status", SHARED).stdout
    assert f"state in database {a.address}:5433/proxpipe (schema {SCHEMA})" in status
    assert f"template_id.txt: template {handoffs['template_id.txt'].strip()}" in status
    assert [line.split()[2:4] for line in status.splitlines()[3:6]] == [["up", "to"]] * 3
    assert status.splitlines()[6].startswith(f"template of build: {handoffs['template_id.txt'].strip()} on pve")
    history = shared.run(b, "history", SHARED).stdout
    assert [line.split()[2:4] for line in history.splitlines()[2:]] == [["configure", "configure"],
                                                                        ["provision", "provision"], ["build", "build"]]
    assert run_id in shared.run(b, "report", SHARED).stdout
    checks = shared.run(b, "validate", SHARED).stdout  # a fresh checkout: Terraform's state comes from the database
    assert "terraform-state" in checks and " FAIL " not in checks
    # B's copies of the handoffs, for its tools, are A's
    assert {name: (b.root / ".pipeline" / "lab-shared" / name).read_text() for name in HANDOFFS} == handoffs


def test_terraform_state_and_lock_are_in_the_same_server(shared):
    (name, data), = shared.query(f"SELECT name, data FROM {SCHEMA}_provision.states")
    state = json.loads(data)
    template_id = int(shared.handoffs()["template_id.txt"])
    resources = {f'{r["type"]}.{r["name"]}': r for r in state["resources"]}
    assert name == "default" and set(resources) == {"null_resource.vm", "null_resource.received"}
    assert resources["null_resource.vm"]["instances"][0]["attributes"]["triggers"]["template_id"] == str(template_id)
    data_dir = shared.a.root / ".pipeline" / "lab-shared" / "provision"
    local = json.loads((data_dir / "data" / "terraform.tfstate").read_text())
    assert local["backend"]["type"] == "pg" and "password" not in local["backend"]["config"]["conn_str"]
    assert not list(data_dir.glob("*.tfbackend")), "the backend configuration file is removed after init"


def test_after_b_edits_the_playbook_only_configure_runs(shared):
    a, b = shared.a, shared.b
    b.edit("lab/ansible/site.yml", "gather_facts: false", "gather_facts: false  # edited on B")
    b.reset_calls()
    result = shared.run(b, "deploy", SHARED)
    assert stages_run(result) == ["configure"]
    assert "ansible-playbook" in {c.split()[0] for c in b.tool_calls()}
    assert not [c for c in b.tool_calls() if c.split()[0] in ("packer", "terraform")]
    status = shared.run(a, "status", SHARED).stdout
    assert "lab/ansible/site.yml changed" in next(line for line in status.splitlines() if line.startswith("configure"))
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qam", "edit"],
                   cwd=b.root, check=True)
    subprocess.run(["git", "pull", "-q", str(b.root), "HEAD"], cwd=a.root, check=True)
    a.reset_calls()
    assert stages_run(shared.run(a, "deploy", SHARED)) == [] and a.tool_calls() == []


# ----------------------------------------------------------------------------- one lock across checkouts


def test_the_lock_holds_across_checkouts_and_goes_with_its_holder(shared):
    a, b = shared.a, shared.b
    slow_play(a, 20)
    a.reset_calls()
    b.reset_calls()
    first = a.start("deploy", SHARED)
    try:
        wait_for(lambda: any(c.startswith("ansible-playbook") for c in a.tool_calls()), "A's play")
        refused = shared.run(b, "deploy", SHARED, ok=False)
        assert refused.returncode == 1
        assert (f"environment lab-shared is locked by {getpass.getuser()}@{socket.gethostname()} pid {first.pid} "
                f"(deploy, since ") in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr and b.tool_calls() == []
        assert shared.run(b, "status", SHARED).returncode == 0  # reading needs no lock
        assert first.poll() is None, "A's deploy ended before it was killed"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        b.reset_calls()
        result = shared.run(b, "deploy", SHARED)  # at once: the lock went with A's connection
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert f"taking over the lock of environment lab-shared left by {getpass.getuser()}" in result.stderr
    assert stages_run(result) == ["configure"]  # what A had not finished
    revert(a)
    assert stages_run(shared.run(a, "deploy", SHARED)) == []


# ----------------------------------------------------------------------------- template ids


def test_two_runners_building_at_once_get_different_template_ids(shared):
    a, b = shared.a, shared.b
    a.admin("settings", {"time_scale": 1}, environment="lab-shared")
    a.admin("call", {"method": "slow_network", "args": [0.3]}, environment="lab-shared")
    try:
        builds = [a.start("build", "--rebuild", SHARED), b.start("build", "--rebuild", SECOND)]
        results = [proc.communicate(timeout=240) for proc in builds]
    finally:
        a.admin("settings", {"clear_faults": True, "time_scale": 0}, environment="lab-shared")
    for proc, (out, err) in zip(builds, results, strict=True):
        shared.outputs += [out, err]
        assert proc.returncode == 0, out + err
    first, second = (shared.history(schema)[-1] for schema in (SCHEMA, "proxpipe_demo_lab_shared_2"))
    assert first["action"] == second["action"] == "build" and first["outcome"] == second["outcome"] == "ok"
    assert first["template_id"] != second["template_id"]
    ends = [time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) for e in (first, second)]
    starts = [end - entry["duration"] for end, entry in zip(ends, (first, second), strict=True)]
    assert max(starts) < min(ends), "the two builds did not overlap"
    templates = {vm["vmid"] for vm in a.admin("state", environment="lab-shared")["vms"] if vm["template"]}
    assert {first["template_id"], second["template_id"]} <= templates
    assert shared.query("SELECT count(*) FROM proxpipe.template_ids") == [(0,)]  # released when the builds ended
    assert stages_run(shared.run(a, "deploy", SHARED)) == ["provision", "configure"]


# ----------------------------------------------------------------------------- the database goes away


def test_the_database_going_away_mid_stage_fails_in_one_line_and_keeps_the_handoffs(shared):
    from proxpipe.lab import database

    a = shared.a
    before = shared.handoffs()
    slow_play(a, 4)
    a.reset_calls()
    run = a.start("deploy", SHARED)
    wait_for(lambda: any(c.startswith("ansible-playbook") for c in a.tool_calls()), "A's play")
    assert database.stop(shared.lab_dir)
    out, err = run.communicate(timeout=120)
    shared.outputs += [out, err]
    assert run.returncode == 1 and "Traceback" not in out + err
    (failure,) = [line for line in (out + err).splitlines() if f"{a.address}:5433" in line]
    assert "✗ configure failed" in failure
    assert f"lost the connection to database {a.address}:5433/proxpipe (schema {SCHEMA})" in failure
    revert(a)
    result = shared.run(a, "status", SHARED)  # the lab starts its database again
    assert "configure" in result.stdout and shared.handoffs() == before
    assert stages_run(shared.run(a, "deploy", SHARED)) == ["configure"]
    assert shared.handoffs()["configure.json"] != before["configure.json"]


# ----------------------------------------------------------------------------- moving in and out


def test_state_push_then_pull_round_trips_the_state_byte_for_byte(shared, tmp_path):
    from proxpipe.domain.state import LocalStore

    local = LabProject(tmp_path / "c")  # a project on local state, on a lab of its own
    local.extra_env = {"LAB_PG_PASSWORD": PASSWORD}
    try:
        local.ok("deploy")
        local.ok("deploy")
        store = LocalStore(local.state, "lab")
        store.put_document("plans", "first.json", b'{"plan": 1}\n')
        documents = [f"{kind}/{name}" for kind in store.document_kinds() for name in store.document_names(kind)]
        assert "plans/first.json" in documents and len(documents) > 1  # and the handoffs' last valid copies
        names = ["template_id.txt", "ansible_inventory.json", "configure.json", "history.jsonl", "runs.jsonl",
                 "stages.json", *documents]
        original = {name: (local.state / name).read_bytes() for name in names}
        local.env["state"] = {"url": shared.url.replace(PASSWORD, "${LAB_PG_PASSWORD}")}
        local.write_config()

        pushed = shared.run(local, "state-push")
        entries = original["history.jsonl"].count(b"\n")
        assert (f"pushed 3 handoffs, {entries} history entries, 2 runs, 3 stage records, {len(documents)} documents"
                in pushed.stdout)
        local.reset_calls()
        assert stages_skipped(shared.run(local, "deploy")) == ["build", "provision", "configure"]
        assert local.tool_calls() == []  # the records moved too: nothing is stale

        pulled = tmp_path / "pulled"
        shared.run(local, "state-pull", "--to", str(pulled))
        assert {name: (pulled / name).read_bytes() for name in names if name != "runs.jsonl"} == {
            name: data for name, data in original.items() if name != "runs.jsonl"}
        runs = (pulled / "runs.jsonl").read_bytes()
        assert runs.startswith(original["runs.jsonl"]) and runs.count(b"\n") == 3  # and the deploy above

        again = shared.run(local, "state-push", ok=False)
        assert again.returncode == 1 and "already holds state of environment lab" in again.stderr
        assert f"database {shared.a.address}:5433/proxpipe" in again.stderr and PASSWORD not in again.stderr
        shared.run(local, "state-push", "--force", "--from", str(pulled))
    finally:
        local.stop()


# ----------------------------------------------------------------------------- secrets


def test_no_connection_string_or_password_in_any_file_or_output(shared):
    needles = [PASSWORD.encode(), shared.url.encode(), f"proxpipe:{PASSWORD}".encode()]
    hits = []
    for folder in (shared.a.root, shared.b.root, shared.lab_dir):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 50_000_000:
                data = path.read_bytes()
                hits += [f"{path}: {needle!r}" for needle in needles if needle in data]
    hits += [f"output: {needle!r}" for text in shared.outputs for needle in needles if needle in text.encode()]
    assert hits == []


# ----------------------------------------------------------------------------- the store itself, on the same server


def open_store(shared, environment: str):
    return store(shared.url, shared.lab_dir / "test-cache", environment)


def hold(shared, environment: str, what: str) -> subprocess.Popen:
    """A process that holds the lock of `environment`, or a template id, until it is killed."""
    proc = subprocess.Popen([str(VENV_BIN / "python"), "-m", "tests.statestore", str(shared.lab_dir / "test-cache"),
                             environment, what], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TEST_STATE_URL": shared.url})
    proc.lines = []
    while not proc.lines or proc.lines[-1] != "held":
        line = proc.stdout.readline()
        assert line, f"the holder died: {proc.lines}"
        proc.lines.append(line.strip())
    return proc


def test_the_lock_refuses_at_once_waits_with_wait_lock_and_names_its_holder(shared, capsys):
    from proxpipe.base.errors import LockedError

    holder = hold(shared, "locks", "lock")
    try:
        with pytest.raises(LockedError) as refused:
            open_store(shared, "locks").acquire("build")
        assert str(refused.value).startswith(f"environment locks is locked by {getpass.getuser()}@"
                                             f"{socket.gethostname()} pid {holder.pid} (deploy, since ")
        threading.Timer(1.0, holder.kill).start()
        mine = open_store(shared, "locks")
        mine.acquire("build", wait=30)  # once the holder is gone
        assert f"left by {getpass.getuser()}@{socket.gethostname()} pid {holder.pid}" in capsys.readouterr().err
        mine.close()
    finally:
        holder.kill()
        holder.wait()


def test_a_write_after_another_writer_moved_the_serial_is_refused(shared):
    from proxpipe.base.errors import StateError

    first, second = open_store(shared, "serials"), open_store(shared, "serials")
    assert first.read_handoff("template_id.txt") is None and second.read_handoff("template_id.txt") is None
    second.write_handoff("template_id.txt", "9100\n")
    with pytest.raises(StateError) as refused:
        first.write_handoff("template_id.txt", "9101\n")
    assert "was changed by another run since this one read it" in str(refused.value)
    assert open_store(shared, "serials").read_handoff("template_id.txt") == "9100\n"
    first.close()
    second.close()


def test_template_ids_cannot_race_and_a_killed_runner_does_not_keep_its_id(shared):
    def slow_cluster():
        time.sleep(0.2)  # the cluster's answer takes a while: every allocation overlaps the others
        return {9100}

    stores = [open_store(shared, f"race-{n}") for n in range(4)]
    chosen = []
    threads = [threading.Thread(target=lambda s=s: chosen.append(s.allocate_template_id("https://c", 9100, 9199,
                                                                                      slow_cluster)))
               for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(chosen) == [9101, 9102, 9103, 9104]
    for each, vmid in zip(stores, sorted(chosen), strict=True):
        each.release_template_id("https://c", vmid)
        each.close()

    holder = hold(shared, "race-killed", "allocate")
    assert holder.lines[0] == "9100"
    other = open_store(shared, "race-other")
    assert other.allocate_template_id("https://cluster", 9100, 9199, set) == 9101  # 9100 is reserved
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    wait_for(lambda: other.allocate_template_id("https://cluster", 9100, 9100, set) == 9100, "the killed runner's id")
    other.close()


# ----------------------------------------------------------------------------- the template registry: the project's


def test_channels_are_the_projects_a_template_built_in_one_environment_is_deployed_by_another(shared):
    a = shared.a
    environments = a.config["environments"]
    environments["lab-shared"]["stages"]["build"]["publish"] = "dev"
    environments["lab-shared-2"]["stages"]["build"]["from_channel"] = "staging"
    a.write_config()
    shared.run(a, "build", "--rebuild", SHARED)
    built = int(shared.handoffs()["template_id.txt"])
    alice, bob = {"USER": "alice", "LOGNAME": "alice"}, {"USER": "bob", "LOGNAME": "bob"}
    environments["lab-shared"]["approval"] = "second-person"  # promotions from lab-shared need a second person
    a.write_config()
    shared.run(a, "promote", "--from", "dev", "--channel", "staging", SHARED, env=alice)
    own = shared.run(a, "promote", "--channel", "staging", "--approve", SHARED, env=alice, ok=False)
    assert own.returncode == 1 and "who may not approve it (approval: second-person)" in own.stderr
    shared.run(a, "promote", "--channel", "staging", "--approve", SHARED, env=bob)
    environments["lab-shared"]["approval"] = "none"
    a.write_config()
    a.reset_calls()
    shared.run(a, "deploy", SECOND)
    assert not [call for call in a.tool_calls() if call.startswith("packer")]
    assert int(shared.handoffs("proxpipe_demo_lab_shared_2")["template_id.txt"]) == built
    seen = json.loads(shared.run(a, "templates", "--json", SECOND).stdout)
    entry = next(t for t in seen["templates"] if t["vmid"] == built)
    assert entry["environment"] == "lab-shared" and entry["channels"] == ["dev", "staging"]
    shared.run(a, "build", "--rebuild", SHARED)  # a newer one on dev; staging stays
    newer = int(shared.handoffs()["template_id.txt"])
    shared.run(a, "promote", "--from", "dev", "--channel", "staging", SECOND)  # lab-shared-2 needs no approval
    assert f"channel staging moved from {built} to {newer}" in shared.run(a, "status", SECOND).stdout
    assert shared.query("SELECT count(*) FROM proxpipe.registry") == [(1,)]  # one registry for the project
    shared.run(a, "revoke", "--template", str(built), "--reason", "found bad in lab-shared-2", SECOND)
    said = shared.run(a, "provision", "--template-id", str(built), SHARED, ok=False)
    assert said.returncode == 1 and f"template {built} is revoked by" in said.stdout + said.stderr
    assert f"the newest active template on channel dev is {newer}" in said.stdout + said.stderr
    shared.run(a, "restore-template", "--template", str(built), SHARED)
