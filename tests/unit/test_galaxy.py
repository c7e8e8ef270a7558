"""The ansible-galaxy step (issue 18), on the real ansible-galaxy: which requirements files, the search paths
(ours first, then the user's own), the digest that skips an unchanged install, a failure in one line that names
the file and the requirement, and the retries when a Galaxy server does not answer."""

import json
import re
import socket
import sys
import tarfile
from pathlib import Path

import pytest

from proxpipe.base.errors import ToolError
from proxpipe.domain.config import Retry
from proxpipe.domain.toolrunner import ToolRunner
from proxpipe.stages import ansiblecfg, galaxy
from tests.labproject import REPO

PROGRAM = str(Path(sys.executable).parent / "ansible-galaxy")
TARBALL = REPO / "lab" / "galaxy" / "proxpipe_lab-tools-1.0.0.tar.gz"


def requirements(tmp_path: Path, text: str) -> galaxy.Galaxy:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "requirements.yml").write_text(text)
    return galaxy.Galaxy(project, galaxy.requirement_files(project, None), tmp_path / "state" / "galaxy",
                         ["/usr/share/ansible/collections"], ["/etc/ansible/roles"])


def runner(tmp_path: Path, attempts: int = 1) -> ToolRunner:
    return ToolRunner(tmp_path / "configure.log", tmp_path / "project", {}, 60,
                      Retry(attempts, 30, galaxy.RETRY_PATTERNS), "configure")


def install(tmp_path: Path, wanted: galaxy.Galaxy, attempts: int = 1) -> str:
    return wanted.install(runner(tmp_path, attempts), PROGRAM, tmp_path / "home", {})


def test_the_requirements_files_are_the_conventional_ones_or_the_configured_ones(tmp_path):
    for name in ("requirements.yml", "collections/requirements.yml", "roles/requirements.yaml", "other.yml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("[]\n")
    assert galaxy.requirement_files(tmp_path, None) == [
        tmp_path / "requirements.yml", tmp_path / "collections/requirements.yml", tmp_path / "roles/requirements.yaml"]
    assert galaxy.requirement_files(tmp_path, [tmp_path / "other.yml"]) == [tmp_path / "other.yml"]
    assert galaxy.requirement_files(tmp_path, []) == []  # the step turned off


def test_ansible_finds_the_install_first_and_the_users_own_paths_after_it(tmp_path):
    cfg_file = tmp_path / "ansible.cfg"
    cfg_file.write_text("[defaults]\nroles_path = ./roles:~/more-roles\ncollections_path = /opt/collections\n")
    cfg = ansiblecfg.read(cfg_file)
    roles = galaxy.user_paths("roles", {}, cfg, "/state/ansible")
    assert roles == [str(tmp_path / "roles"), str(Path.home() / "more-roles")]  # relative to ansible.cfg
    assert galaxy.user_paths("collections", {"ANSIBLE_COLLECTIONS_PATH": "/a:/b"}, cfg, "/h") == ["/a", "/b"]
    assert galaxy.user_paths("collections", {}, ansiblecfg.read(None), "/h") == [
        "/h/collections", "/usr/share/ansible/collections"]  # Ansible's default under our ANSIBLE_HOME
    wanted = galaxy.Galaxy(tmp_path, [cfg_file], tmp_path / "g", ["/opt/collections"], roles)
    assert wanted.env() == {"ANSIBLE_COLLECTIONS_PATH": f"{tmp_path}/g/collections:/opt/collections",
                            "ANSIBLE_ROLES_PATH": f"{tmp_path}/g/roles:{tmp_path}/roles:{Path.home()}/more-roles"}
    assert galaxy.Galaxy(tmp_path, [], tmp_path / "g", [], []).env() == {}  # no requirements: Ansible untouched


def test_the_install_runs_once_and_again_only_when_the_requirements_change(tmp_path):
    wanted = requirements(tmp_path, f"collections:\n  - name: {TARBALL}\n    type: file\n")
    assert install(tmp_path, wanted) == "installed from requirements.yml"
    filters = wanted.root / "collections" / "ansible_collections" / "proxpipe_lab" / "tools" / "plugins" / "filter"
    assert (filters / "banner.py").is_file()
    assert install(tmp_path, wanted) == "skipped (requirements unchanged)"
    (wanted.directory / "requirements.yml").write_text(f"collections: [{{name: {TARBALL}, type: file}}]\n")
    assert install(tmp_path, wanted) == "installed from requirements.yml"
    assert (filters / "banner.py").is_file()
    assert not list(wanted.root.parent.glob("galaxy.*"))  # no leftover of the swap
    log = (tmp_path / "configure.log").read_text()
    assert log.count("\n$ ") == 2  # two ansible-galaxy processes in all


def test_an_install_that_went_missing_is_made_again(tmp_path):
    wanted = requirements(tmp_path, f"collections:\n  - name: {TARBALL}\n    type: file\n")
    install(tmp_path, wanted)
    (wanted.root / galaxy.DIGEST_FILE).unlink()
    assert install(tmp_path, wanted) == "installed from requirements.yml"


@pytest.mark.parametrize("requirement, named", [
    ("collections:\n  - name: ./no-such-1.0.0.tar.gz\n    type: file\n", "./no-such-1.0.0.tar.gz"),
    ("roles:\n  - name: no_such_role\n    src: git+file:///nonexistent/no_such_role.git\n", "no_such_role"),
])
def test_a_requirement_that_does_not_exist_fails_in_one_line_naming_it(tmp_path, requirement, named):
    good = requirements(tmp_path, f"collections:\n  - name: {TARBALL}\n    type: file\n")
    install(tmp_path, good)
    before = sorted(p.relative_to(good.root) for p in good.root.rglob("*"))
    bad = requirements(tmp_path, requirement)
    with pytest.raises(ToolError) as failed:
        install(tmp_path, bad)
    message = str(failed.value)
    assert "\n" not in message and "requirements.yml" in message and repr(named) in message, message
    assert failed.value.tail and failed.value.log == str(tmp_path / "configure.log")
    assert sorted(p.relative_to(good.root) for p in good.root.rglob("*")) == before  # the last install stays
    assert not list(good.root.parent.glob("galaxy.*"))


def test_a_galaxy_server_that_does_not_answer_is_retried(tmp_path):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wanted = requirements(tmp_path, f"collections:\n  - name: proxpipe_lab.absent\n"
                                    f"    source: http://127.0.0.1:{port}/\n")
    with pytest.raises(ToolError) as failed:
        install(tmp_path, wanted, attempts=2)
    assert "'proxpipe_lab.absent'" in str(failed.value) and "Connection refused" in str(failed.value)
    log = (tmp_path / "configure.log").read_text()
    assert log.count("$ ") == 2 and "retrying in" in log  # the pattern matched ansible-galaxy's own words


def test_the_labs_collection_tarball_is_built_from_its_folder():
    source = REPO / "lab" / "galaxy" / "tools"
    with tarfile.open(TARBALL) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    manifest = json.loads(members.pop("MANIFEST.json"))["collection_info"]
    members.pop("FILES.json")
    assert members == {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*")
                       if p.is_file() and p.name != "galaxy.yml" and "__pycache__" not in p.parts}, (
        "lab/galaxy/tools changed: rebuild the tarball with "
        "`ansible-galaxy collection build lab/galaxy/tools --output-path lab/galaxy`")
    galaxy_yml = (source / "galaxy.yml").read_text()
    for key in ("namespace", "name", "version"):
        assert re.search(rf"^{key}: {re.escape(manifest[key])}$", galaxy_yml, re.M), key
