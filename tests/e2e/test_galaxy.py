"""Real projects' dependencies and the files their tools write (issue 18), on the real tools in the lab.

The lab's requirements.yml installs a collection from a tarball and a role from a git repository, offline; its
ansible.cfg keeps a jsonfile fact cache in the project. The tests share one deployed project and run in order;
each leaves it deployed and up to date.
"""

import json

import pytest

from tests.labproject import stages_run, stages_skipped

pytestmark = pytest.mark.e2e

REQUIREMENTS = "lab/ansible/requirements.yml"


def galaxy_calls(project) -> list[str]:
    return [call for call in project.tool_calls() if call.startswith("ansible-galaxy")]


def test_a_fresh_deploy_installs_the_requirements_once(deployed):
    assert galaxy_calls(deployed) == ["ansible-galaxy install -r requirements.yml"]
    install = deployed.state / "configure" / "galaxy"
    assert (install / "collections" / "ansible_collections" / "proxpipe_lab" / "tools" / "MANIFEST.json").is_file()
    assert (install / "roles" / "lab_motd" / "tasks" / "main.yml").is_file()
    # the play used both: the role's fact, made with the collection's filter, is in the host's configuration
    config = (deployed.state / "vms" / "201" / "root" / "etc" / "automation.conf").read_text()
    assert "# jump-01: Managed by proxpipe." in config
    configure = [e for e in deployed.history() if e["stage"] == "configure"][-1]
    assert configure["galaxy"] == "installed from requirements.yml"


def test_the_deploy_after_configure_wrote_the_fact_cache_starts_no_tool(deployed):
    cache = list((deployed.root / "lab" / "ansible" / ".ansible-cache").iterdir())
    assert len(cache) == 1 and "motd_banner" in cache[0].read_text()  # written by the play, in the project
    deployed.reset_calls()
    result = deployed.ok("deploy")
    assert deployed.tool_calls() == [] and stages_run(result) == []
    assert stages_skipped(result) == ["build", "provision", "configure"]
    assert [c.split()[:2] for c in deployed.git_calls()] == [["git", "ls-files"]]  # one git call for all stages


def test_status_lists_the_inputs_and_why_the_rest_was_left_out(deployed):
    (deployed.root / ".gitignore").write_text("*.log\n")
    (deployed.root / "lab" / "ansible" / "notes.log").write_text("a file the user keeps beside the playbook\n")
    deployed.reset_calls()
    result = deployed.ok("status", "--inputs", "configure")
    assert deployed.tool_calls() == []
    lines = result.stdout.splitlines()
    assert next(line for line in lines if line.startswith("configure")).split()[2:4] == ["up", "to"], result.stdout
    listed = lines[lines.index(next(line for line in lines if line.startswith("inputs of configure"))) + 1:]
    assert "  requirements.yml" in listed and "  site.yml" in listed
    assert not [line for line in listed if line.startswith("  .ansible-cache") or line.startswith("  notes.log")]
    why = {line.split()[0]: line.split(None, 1)[1] for line in listed if line and not line.startswith((" ", "-"))}
    assert why[".ansible-cache/"] == "Ansible's fact cache (ansible.cfg fact_caching_connection)"
    assert why["notes.log"] == "git ignores it (.gitignore:1: *.log)"
    every = deployed.ok("status", "--inputs", "all").stdout
    assert [line.split()[2] for line in every.splitlines() if line.startswith("inputs of ")] == [
        "build", "provision", "configure"]
    deployed.reset_calls()
    assert stages_run(deployed.ok("deploy")) == [] and deployed.tool_calls() == []


def test_editing_requirements_yml_reruns_the_galaxy_step_and_configure_only(deployed):
    deployed.append(REQUIREMENTS, "# pinned by the team on review\n")
    deployed.reset_calls()
    result = deployed.ok("deploy")
    assert stages_run(result) == ["configure"]
    assert galaxy_calls(deployed) == ["ansible-galaxy install -r requirements.yml"]
    assert not [c for c in deployed.tool_calls() if c.split()[0] in ("packer", "terraform")]
    deployed.reset_calls()
    result = deployed.ok("deploy")
    assert stages_run(result) == [] and deployed.tool_calls() == []


def test_configure_alone_again_skips_the_galaxy_step(deployed):
    deployed.reset_calls()
    result = deployed.ok("configure", "--force")
    assert stages_run(result) == ["configure"] and galaxy_calls(deployed) == []
    configure = [e for e in deployed.history() if e["stage"] == "configure"][-1]
    assert configure["galaxy"] == "skipped (requirements unchanged)"


@pytest.mark.parametrize("requirement, named", [
    ("collections:\n  - name: ../galaxy/proxpipe_lab-nosuch-1.0.0.tar.gz\n    type: file\n",
     "'../galaxy/proxpipe_lab-nosuch-1.0.0.tar.gz'"),
    ("roles:\n  - name: no_such_role\n    src: git+https://git.lab.invalid/no_such_role.git\n", "'no_such_role'"),
])
def test_a_requirement_that_does_not_exist_fails_configure_in_one_line(deployed, requirement, named):
    path = deployed.root / REQUIREMENTS
    good = path.read_text()
    before = deployed.handoff("configure.json")
    path.write_text(requirement)
    result = deployed.doit("deploy")
    assert result.returncode == 1 and stages_run(result) == ["configure"]
    assert "Traceback" not in result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if "✗ configure failed" in line]
    assert len(failed) == 1 and "requirements.yml" in failed[0] and named in failed[0], result.stdout
    assert deployed.handoff("configure.json") == before
    assert (deployed.state / "configure" / "galaxy" / "roles" / "lab_motd").is_dir()  # the last install stays
    path.write_text(good)
    deployed.reset_calls()
    assert stages_run(deployed.ok("deploy")) == ["configure"]
    assert json.loads(deployed.handoff("configure.json"))["recap"]["jump-01"]["failed"] == 0


def test_a_packer_template_with_the_ansible_provisioner_gets_its_requirements(lab_project, tmp_path):
    project = lab_project()
    (project.root / "lab" / "packer" / "requirements.yml").write_text(
        "collections:\n  - name: ../galaxy/proxpipe_lab-tools-1.0.0.tar.gz\n    type: file\n")
    (project.root / "lab" / "packer" / "golden.yml").write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n        msg: \"{{ 'built' | proxpipe_lab.tools.banner('golden') }}\"\n")
    # Packer's Ansible provisioner runs ansible-playbook with Packer's environment; here a shell-local step
    # does the same, with a playbook that uses a filter of the collection the requirements installed.
    project.edit("lab/packer/lab-golden.pkr.hcl", '  post-processor "manifest" {',
                 '  provisioner "shell-local" {\n    inline = ["ansible-playbook -i localhost, golden.yml"]\n'
                 '  }\n\n  post-processor "manifest" {')
    home = {"HOME": str(tmp_path / "home")}  # the provisioner's own Ansible keeps its files in ~/.ansible
    result = project.ok("build", env=home)
    assert galaxy_calls(project) == ["ansible-galaxy install -r requirements.yml"]
    build_log = next(project.state.glob("logs/*/build.log")).read_text()
    assert "golden: built" in build_log
    project.reset_calls()
    result = project.ok("build", "--rebuild", env=home)
    assert stages_run(result) == ["build"] and galaxy_calls(project) == []
