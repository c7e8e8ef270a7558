"""Issue 27, rule 4 (its last part): every value from the command line is checked where it is parsed, in one line
that names the command, the option and the value; no tool starts and the state is left as it was."""

import pytest

from tests.badinput import SeededProject, one_line


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return SeededProject(tmp_path_factory.mktemp("arguments") / "project")


@pytest.mark.parametrize("args, code, said", [
    (["deploy", "--jobs", "-2"], 3, "ERROR: deploy --jobs -2: must be 1 or more"),
    (["deploy", "--jobs", "two"], 3, "two"),
    (["history", "--limit", "0"], 3, "ERROR: history --limit 0: must be 1 or more"),
    (["rollback", "--stage", "nosuch"], 1, "error: --stage nosuch: no such stage (stages: build, provision, "
                                          "configure)"),
    (["rollback", "--stage", "provision", "--mode", "sideways"], 1,
     "error: --mode sideways: stage provision (terraform) rolls back with --mode destroy or replace or restore"),
    (["provision", "--template-id", "abc"], 1, "--template-id 'abc': 'abc' is not a Proxmox VMID"),
    (["provision", "--template-id", "12"], 1, "--template-id '12': 12 is outside the Proxmox VMID range"),
], ids=lambda value: "-".join(value) if isinstance(value, list) else None)
def test_a_bad_value_on_the_command_line_is_one_line(project, args, code, said):
    result = project.doit(*args)
    assert result.returncode == code, result.stdout + result.stderr
    assert said in one_line(result)
    assert project.tool_calls() == []
    project.unchanged()
