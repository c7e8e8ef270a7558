"""The command line people expect (issue 23), from the installed wheel's `proxpipe`: its own help (every command and
stage, no doit-internal command), each command's --help, bare `proxpipe` starting no tool and changing no file in a
project whose default environment is not a lab, the closest match for a typo, the completion script in a real bash,
--json documents valid against their schemas, no escape codes through a pipe or with NO_COLOR, the heartbeat of a
lab stage made slow, and the missing lab extra named with its install command."""
# ruff: noqa: F811 - the fixtures of tests.wheelenv, imported by name, are the tests' arguments

import json
import os
import pty
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from proxpipe.commands import catalog
from tests.labproject import REPO, next_block
from tests.wheelenv import bare_venv, environ, run, venv, wheel  # noqa: F401

pytestmark = pytest.mark.e2e

TOOLS = ("packer", "terraform", "tofu", "tflint", "ansible-playbook", "ansible", "ansible-galaxy", "ssh")
DOIT_INTERNAL = ("run", "list", "info", "clean", "forget", "ignore", "dumpdb", "strace", "tabcompletion", "reset-dep")


class Adopted:
    """A repository laid out like the original task's, adopted with `proxpipe init` (its environment, production, is
    not a lab), with every tool on PATH a shim that logs its call (as the benchmarks count tool processes)."""

    def __init__(self, root: Path, venv: Path):
        self.root, self.venv = root, venv
        self.calls = root.parent / "tool-calls.log"
        shims = root.parent / "shims"
        shims.mkdir()
        for tool in TOOLS:
            (shims / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{self.calls}"\nexit 1\n')
            (shims / tool).chmod(0o755)
        self.env = environ(venv)
        self.env["PATH"] = os.pathsep.join([str(shims), self.env["PATH"]])

    def proxpipe(self, *args: str, program: str = "proxpipe") -> subprocess.CompletedProcess:
        return run([self.venv / "bin" / program, *args], cwd=self.root, env=self.env)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file and folder of the project, with its size and modification time."""
        return {str(path.relative_to(self.root)): (path.stat().st_size, path.stat().st_mtime_ns)
                for path in sorted(self.root.rglob("*"))}

    def stages(self) -> list[str]:
        config = yaml.safe_load((self.root / "pipeline.yaml").read_text())
        return list(config["environments"][config["default_environment"]]["stages"])


@pytest.fixture(scope="module")
def adopted(venv, tmp_path_factory) -> Adopted:
    root = tmp_path_factory.mktemp("adopted") / "infra"
    example = REPO / "examples" / "proxmox"
    shutil.copytree(example / "packer", root / "packer", ignore=shutil.ignore_patterns("*.example"))
    shutil.copytree(example / "infrastructure", root / "infrastructure")
    shutil.copytree(example / "ansible_collections", root / "ansible_collections")
    assert run(["git", "init", "-q"], cwd=root).returncode == 0
    project = Adopted(root, venv)
    result = project.proxpipe("init")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "default_environment: production" in (root / "pipeline.yaml").read_text()
    return project


def listed(text: str) -> set[str]:
    """The command names of the help: the first word of each row of a group."""
    return {line.split()[0] for line in text.splitlines()
            if line.startswith("  ") and not line.startswith("   ") and not line.split()[0].startswith(("-", "env="))}


def commands() -> list[str]:
    """The commands of the installed proxpipe, from the declarations (the wheel is made of this very code)."""
    return [c.name for c in catalog.without_pipeline("").visible()]


def test_bare_proxpipe_prints_the_help_starts_no_tool_and_changes_no_file(adopted):
    before = adopted.snapshot()
    for args in ([], ["--help"], ["-h"], ["help"]):
        result = adopted.proxpipe(*args)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
        names = listed(result.stdout)
        assert set(commands()) | set(adopted.stages()) <= names, (args, result.stdout)
        assert not names & set(DOIT_INTERNAL), names & set(DOIT_INTERNAL)
        assert "stages (environment production):" in result.stdout
    assert adopted.snapshot() == before
    assert not adopted.calls.exists(), adopted.calls.read_text()
    assert set(DOIT_INTERNAL) <= set(adopted.proxpipe("help", "--all").stdout.replace(",", " ").split())


def test_every_commands_help_and_the_closest_match_for_a_typo(adopted):
    for name in [*commands(), *adopted.stages()]:
        result = adopted.proxpipe(name, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: proxpipe {name}"), (name, result.stderr)
        assert "\noptions:\n" in result.stdout and "\nexample:\n" in result.stdout, name
    assert "(default: production)" in " ".join(adopted.proxpipe("provision", "--help").stdout.split())
    for args, says in ((["stauts"], "did you mean `status`?"), (["deploy", "--forse"], "did you mean `--force`?"),
                       (["provison"], "did you mean `provision`?")):
        result = adopted.proxpipe(*args)
        assert result.returncode == 2 and result.stdout == "", (args, result.stdout)
        assert len(result.stderr.splitlines()) == 1 and says in result.stderr, (args, result.stderr)
    plain = adopted.proxpipe(program="doit")  # the one-line dodo.py that init wrote: the default task
    assert plain.returncode == 2 and "environment production is not a lab" in plain.stdout, plain.stdout + plain.stderr
    assert "doit deploy env=production" in plain.stdout
    assert not adopted.calls.exists(), adopted.calls.read_text()


def test_the_completion_script_answers_in_a_real_bash(adopted):
    script = adopted.proxpipe("completion", "bash")
    assert script.returncode == 0
    probe = (f"{script.stdout}\ncomplete -p proxpipe\n"
             "COMP_LINE='proxpipe dep'; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(proxpipe dep); COMP_CWORD=1\n"
             "_proxpipe_complete; echo \"[${COMPREPLY[*]}]\"\n"
             "COMP_LINE='proxpipe deploy env='; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(proxpipe deploy env =)\n"
             "COMP_CWORD=3; _proxpipe_complete; echo \"[${COMPREPLY[*]}]\"\n"
             "COMP_LINE='proxpipe rollback --stage c'; COMP_POINT=${#COMP_LINE}\n"
             "COMP_WORDS=(proxpipe rollback --stage c); COMP_CWORD=3; _proxpipe_complete; echo \"[${COMPREPLY[*]}]\"\n")
    result = run(["bash", "--norc", "--noprofile", "-c", probe], cwd=adopted.root, env=adopted.env)
    assert result.stdout.splitlines() == ["complete -o bashdefault -o default -F _proxpipe_complete proxpipe",
                                          "[deploy]", "[production]", "[configure]"], result.stdout + result.stderr
    assert not adopted.calls.exists()


def under_pty(argv: list, cwd: Path, env: dict) -> str:
    """What argv prints on a terminal (stdout and stderr both a pty)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the program ended: the terminal is gone
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def schema(name: str) -> dict:
    return json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())


def test_the_lab_demo_through_a_pipe_heartbeats_gives_json_and_colors_only_on_a_terminal(venv, tmp_path):
    project = tmp_path / "demo"
    project.mkdir()
    env = environ(venv, PROXPIPE_TOOLS_CACHE=str(REPO / ".tools"), PROXPIPE_HEARTBEAT="1")
    env.pop("NO_COLOR")
    proxpipe = venv / "bin" / "proxpipe"
    assert run([proxpipe, "init", "--example", "lab"], cwd=project, env=env).returncode == 0
    config = project / "pipeline.yaml"
    text = config.read_text().replace("127.0.10.", f"{next_block()}.")
    # Each VM's creation waits 3 s in silence (the lab's apply_delay): longer than the heartbeat's 1 s.
    config.write_text(text.replace("        replace: [null_resource.vm]",
                                   "          apply_delay: 3\n        replace: [null_resource.vm]"))
    try:
        deployed = run([proxpipe, "deploy"], cwd=project, env=env)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        said = deployed.stdout + deployed.stderr
        assert "\x1b" not in said, said  # a pipe: no escape codes
        beats = [line.strip() for line in deployed.stdout.splitlines() if "still running after" in line]
        assert any(b.startswith("provision: ") and "terraform apply" in b and "no output for" in b for b in beats), said
        documents = {name: run([proxpipe, *args, "--json"], cwd=project, env=env) for name, args in (
            ("history", ["history"]), ("report", ["report"]), ("plan", ["plan"]), ("validate", ["validate", "--list"]),
            ("doctor", ["doctor"]), ("status", ["status"]), ("drift", ["drift"]), ("templates", ["templates"]))}
        for name, result in documents.items():
            assert result.returncode == 0, (name, result.stdout, result.stderr)
            jsonschema.validate(json.loads(result.stdout), schema(name))
        assert json.loads(documents["report"].stdout)["runs"][0]["command"] == "deploy"
        assert "\x1b[" in under_pty([proxpipe, "deploy"], project, env)  # a terminal: colors, unless asked not to
        assert "\x1b" not in under_pty([proxpipe, "deploy"], project, {**env, "NO_COLOR": "1"})
        assert "\x1b" not in under_pty([proxpipe, "deploy", "--no-color"], project, env)
    finally:
        run([proxpipe, "lab-stop"], cwd=project, env=env, timeout=60)


def test_without_the_lab_extra_the_lab_names_its_install_command(bare_venv, tmp_path):
    project = tmp_path / "demo"
    project.mkdir()
    env = environ(bare_venv, PROXPIPE_TOOLS_CACHE=str(REPO / ".tools"))
    proxpipe = bare_venv / "bin" / "proxpipe"
    install = "pip install 'proxpipe[lab]'"
    written = run([proxpipe, "init", "--example", "lab"], cwd=project, env=env)
    assert written.returncode == 0 and install in written.stdout, written.stdout + written.stderr
    config = project / "pipeline.yaml"
    config.write_text(config.read_text().replace("127.0.10.", f"{next_block()}."))
    deployed = run([proxpipe, "deploy"], cwd=project, env=env)
    said = deployed.stdout + deployed.stderr
    assert deployed.returncode != 0 and "Traceback" not in said and "ModuleNotFoundError" not in said, said
    (line,) = [line for line in said.splitlines() if install in line]
    assert "needs proxpipe's lab extra, which is not installed" in line, line
    doctor = run([proxpipe, "doctor", "--json"], cwd=project, env=env)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    report = json.loads(doctor.stdout)
    jsonschema.validate(report, schema("doctor"))
    (lab,) = [extra for extra in report["extras"] if extra["name"] == "lab"]
    assert lab["needed"] and not lab["installed"] and lab["install"] == install
    assert "fakepve" in lab["missing"]
