"""The command line people expect (issue 23), on a pipeline of shell stages (tests/plugins/recorder.py): proxpipe's
own help from the commands' declarations, one line and exit 2 for what it does not know, plain `doit` deploying a lab
only, completion, --json documents valid against their schemas, -q and colors, the heartbeat of a silent tool, and
missing extras named with their install command. tests/e2e/test_cli.py runs the installed wheel."""

import copy
import json
import os
import pty
import re
import subprocess
import sys

import jsonschema
import pytest

from proxpipe.api.command import JSON
from proxpipe.base import extras
from proxpipe.base.console import colors
from proxpipe.base.errors import ConfigError
from proxpipe.commands import catalog, cliargs, cliref
from proxpipe.domain import toolrunner
from proxpipe.domain.config import Retry
from tests.labproject import REPO
from tests.unit.test_plugins import PROXPIPE, ShellProject

DOIT_INTERNAL = ("dumpdb", "ignore", "reset-dep", "strace", "tabcompletion", "list", "info", "forget", "clean")


@pytest.fixture
def shell(tmp_path):
    return ShellProject(tmp_path / "project")


def proxpipe(project, *args, env=None):
    return project.doit(*args, env=env, proxpipe=True)


def listed(text: str) -> set[str]:
    """The command names of a help text: the first word of each indented row."""
    return {line.split()[0] for line in text.splitlines() if line.startswith("  ") and not line.startswith("   ")
            and line.split() and not line.split()[0].startswith(("-", "env="))}


def schema(name: str) -> dict:
    return json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())


# ----------------------------------------------------------------------------- declarations and the reference


def test_the_command_reference_matches_the_declarations():
    assert (REPO / "docs" / "cli.md").read_text() == cliref.render(), (
        "docs/cli.md is out of date: run `.venv/bin/python -m proxpipe.commands.cliref > docs/cli.md`")


def test_every_command_declares_its_group_help_and_example():
    found = catalog.without_pipeline("")
    for command in found.commands.values():
        assert command.group in catalog.GROUPS[:-1], (command.name, command.group)
        assert command.doc and command.description and command.example, command.name
        assert command.example.split()[0] in ("proxpipe", "doit", "eval"), command.name
        assert command.name in command.example or command.name == "default", command.name
        if not command.standalone:  # the global options are taken wherever they stand: no command may have them
            reserved = {w for p in cliargs.GLOBAL_OPTIONS for w in cliargs.option_words(p)}
            assert not reserved & {w for p in command.params for w in cliargs.option_words(p)}, command.name


def test_every_json_command_has_its_schema():
    commands = [c for c in catalog.without_pipeline("").commands.values() if JSON in c.params]
    assert {"history", "report", "plan", "validate", "doctor"} <= {c.name for c in commands}
    for command in commands:
        jsonschema.Draft202012Validator.check_schema(schema(command.name))


def test_init_declares_the_options_its_parser_takes():
    code = "from proxpipe.commands import init; init.main(['--help'])"
    parsed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    init = catalog.without_pipeline("").commands["init"]
    assert init.standalone
    for param in init.params:
        assert f"--{param.long}" in parsed, param.long


# ----------------------------------------------------------------------------- help


def test_bare_proxpipe_prints_the_help_and_runs_nothing(shell):
    for args in ([], ["--help"], ["-h"], ["help"]):
        result = proxpipe(shell, *args)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)
        names = listed(result.stdout)
        assert {"deploy", "plan", "status", "rollback", "init", "doctor", "make", "upper", "completion"} <= names
        assert not names & set(DOIT_INTERNAL), names & set(DOIT_INTERNAL)
        assert "stages (environment local):" in result.stdout and "env=NAME" in result.stdout
        assert "default" not in names  # hidden
    assert shell.events() == [] and not (shell.root / ".pipeline" / "local").exists()
    every = proxpipe(shell, "help", "--all").stdout
    assert all(name in every for name in DOIT_INTERNAL)


def test_help_without_a_pipeline_lists_the_built_in_commands(tmp_path):
    result = subprocess.run([PROXPIPE], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and {"deploy", "status", "init", "report", "lab-stop"} <= listed(result.stdout)
    said = " ".join(result.stdout.split())  # wrapped where the temporary folder's name happens to end
    assert f"no pipeline.yaml in {tmp_path}" in said and "proxpipe init" in said
    deploy = subprocess.run([PROXPIPE, "deploy", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert deploy.returncode == 0 and deploy.stdout.startswith("usage: proxpipe deploy [--force]"), deploy.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["deploy", "--help"], ["help", "deploy"], ["upper", "-h"], ["rollback", "--help"],
                                  ["init", "--help"], ["completion", "-h"], ["history", "--help"]])
def test_a_commands_help_shows_its_options_defaults_and_an_example(shell, args):
    result = proxpipe(shell, *args)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    name = next(a for a in args if not a.startswith("-") and a != "help")
    assert text.startswith(f"usage: proxpipe {name}") and "\noptions:\n" in text and "  -h, --help" in text
    assert f"proxpipe {name}" in text.split("\nexample:\n  ")[1]
    if name == "upper":
        assert "--input INPUT" in text and "--force" in text and "(default: off)" in text
    if name == "history":
        assert "--limit N" in text and "(default: 20)" in text and "--json" in text
    if name == "deploy":
        assert "env=NAME" in text and "(default: local)" in text and "--wait-lock SECONDS" in text


@pytest.mark.parametrize("args, says", [
    (["stauts"], "unknown command `stauts`; did you mean `status`?"),
    (["deploy", "--forse"], "`proxpipe deploy` has no option --forse; did you mean `--force`?"),
    (["uper", "--force"], "did you mean `upper`?"),
    (["deploy", "enb=local"], "unknown variable enb=local; did you mean `env=`?"),
    (["--verbse", "deploy"], "unknown option --verbse; did you mean `--verbosity`?"),
    (["history", "--limit"], "--limit needs a value"),
])
def test_what_proxpipe_does_not_know_is_one_line_with_the_closest_match_and_exit_2(shell, args, says):
    result = proxpipe(shell, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr, result.stderr
    assert shell.events() == []


def test_a_positional_value_is_the_commands_option_and_a_second_one_is_refused():
    from proxpipe.api.command import Command, Param

    revoke = Command("revoke", "r", lambda pipeline, **options: None,
                     (Param("template", "template", int, None, "the id", positional=True),
                      Param("reason", "reason", str, "", "why")))
    tasks = {"revoke": revoke, "status": Command("status", "s", lambda pipeline: None)}
    inv = cliargs.split(["revoke", "9105", "--reason", "bad", "status"])
    assert cliargs.check_task_args(inv, tasks) == (None, ["--template", "9105", "--reason", "bad", "status"])
    with pytest.raises(cliargs.UsageError, match="unknown command `9106`"):
        cliargs.check_task_args(cliargs.split(["revoke", "9105", "9106"]), tasks)


def test_global_options_stand_anywhere_and_doits_own_commands_still_work(shell):
    assert proxpipe(shell, "deploy", "-q", "--wait-lock", "5", "env=local").returncode == 0
    assert "upper" in proxpipe(shell, "list").stdout
    assert "upper" in proxpipe(shell, "doit", "list").stdout
    assert "PURPOSE" in proxpipe(shell, "help", "list").stdout


def test_plain_doit_deploys_only_a_lab_environment(shell):
    result = shell.doit()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "environment local is not a lab" in result.stdout and "doit deploy env=local" in result.stdout
    assert "make (shell-source) → upper (shell)" in result.stdout
    assert shell.events("stage_started") == [] and not (shell.root / ".pipeline" / "local" / "make.txt").exists()
    shell.config["environments"]["local"]["lab"] = {"address": "127.0.10.1"}  # a lab without a Proxmox: no server
    shell.write()
    labbed = shell.doit()
    assert labbed.returncode == 0 and "deploy done" in labbed.stdout, labbed.stdout + labbed.stderr


# ----------------------------------------------------------------------------- --json


def json_of(project, *args, code=0):
    result = proxpipe(project, *args)
    assert result.returncode == code, result.stdout + result.stderr
    return json.loads(result.stdout)  # the whole of stdout is the one document


def test_every_json_document_is_valid_against_its_schema(shell):
    assert proxpipe(shell, "deploy").returncode == 0
    documents = {"history": json_of(shell, "history", "--json"), "report": json_of(shell, "report", "--json"),
                 "plan": json_of(shell, "plan", "--json", "--refresh"),
                 "validate": json_of(shell, "validate", "--list", "--json"),
                 "doctor": json_of(shell, "doctor", "--json"), "status": json_of(shell, "status", "--json"),
                 "templates": json_of(shell, "templates", "--json")}
    for name, document in documents.items():
        jsonschema.validate(document, schema(name))
    ran = json_of(shell, "validate", "--json", "--check", "rec-ok", "--check", "rec-bad", code=1)
    jsonschema.validate(ran, schema("validate"))
    assert ran["counts"] == {"passed": 1, "failed": 1, "skipped": 0}
    assert [e["stage"] for e in documents["history"]["entries"]] == ["upper", "make"]
    assert documents["report"]["runs"][0]["command"] == "deploy" and documents["plan"]["stages"][0]["name"] == "make"
    assert {c["id"] for c in documents["validate"]["checks"]} >= {"rec-ok", "rec-bad"}
    assert [e["name"] for e in documents["doctor"]["extras"]] == ["lab", "postgres"]
    assert [s["stage"] for s in documents["status"]["stages"]] == ["make", "upper"]


def test_the_schemas_refuse_what_is_not_their_document():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"format_version": 1, "environment": "x", "entries": [{"stage": "build"}]},
                            schema("history"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"format_version": 2, "environment": "x", "runs": []}, schema("report"))


# ----------------------------------------------------------------------------- completion


def complete(project, line: str) -> list[str]:
    result = proxpipe(project, "completion", "--complete", "bash", "--line", line,
                      env={"PROXPIPE_COMP_WORDBREAKS": "\"'><=;|&(:"})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_completion_knows_commands_stages_options_environments_and_ids(shell):
    shell.config["environments"]["staging"] = copy.deepcopy(shell.config["environments"]["local"])
    shell.write()
    assert complete(shell, "proxpipe deploy env=") == ["local", "staging"]  # no default environment: still known
    shell.config["default_environment"] = "local"
    shell.write()
    assert complete(shell, "proxpipe dep") == ["deploy"]
    assert complete(shell, "proxpipe up") == ["upper"]
    assert complete(shell, "proxpipe deploy env=") == ["local", "staging"]
    assert complete(shell, "proxpipe deploy env=st") == ["staging"]
    assert complete(shell, "proxpipe deploy --fo") == ["--force"]
    assert complete(shell, "proxpipe rollback --stage ") == ["make", "upper"]
    assert complete(shell, "proxpipe help roll") == ["rollback"]
    assert complete(shell, "proxpipe completion ") == ["bash", "zsh", "fish"]
    assert "--json" in complete(shell, "proxpipe history --")
    plan = json_of(shell, "plan", "--json")
    shell.events()  # the plan's; completing starts no run
    assert complete(shell, "proxpipe apply --plan ") == [plan["id"]]
    assert complete(shell, "proxpipe approve --plan 2") == [plan["id"]]
    history = shell.root / ".pipeline" / "local" / "history.jsonl"
    history.write_text("".join(json.dumps({"time": "2026-01-01T00:00:00+0000", "stage": "make", "action": "build",
                                           "outcome": "ok", "template_id": vmid}) + "\n" for vmid in (9101, 9102)))
    assert complete(shell, "proxpipe rollback --to ") == ["9102", "9101"]
    assert complete(shell, "proxpipe rollback --stage upper --to ") == []  # no template stage: a git ref, say
    assert "'proxpipe[lab]'" not in complete(shell, "proxpipe ")  # no tool, no error: words only
    assert shell.events() == []


def test_zsh_and_fish_pass_the_words_with_the_one_at_the_cursor_last(shell):
    for shell_name in ("zsh", "fish"):
        result = proxpipe(shell, "completion", "--complete", shell_name, "--", "proxpipe", "rollback", "--stage", "")
        assert result.returncode == 0 and result.stdout.splitlines() == ["make", "upper"], result.stderr
        assert proxpipe(shell, "completion", shell_name).stdout.startswith(("#compdef proxpipe", "# proxpipe's fish"))


def test_the_bash_script_completes_in_a_real_bash(shell):
    script = proxpipe(shell, "completion", "bash").stdout
    probe = (f"{script}\ncomplete -p proxpipe\n"
             "COMP_LINE='proxpipe dep'; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(proxpipe dep); COMP_CWORD=1\n"
             "_proxpipe_complete; echo \"[${COMPREPLY[*]}]\"\n"
             "COMP_LINE='proxpipe deploy env='; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(proxpipe deploy env =)\n"
             "COMP_CWORD=3; _proxpipe_complete; echo \"[${COMPREPLY[*]}]\"\n")
    environ = {**os.environ, "PATH": f"{os.path.dirname(PROXPIPE)}:{os.environ['PATH']}",
               "PROXPIPE_PLUGINS": "recorder", "PYTHONPATH": str(REPO / "tests" / "plugins")}
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], cwd=shell.root, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["complete -o bashdefault -o default -F _proxpipe_complete proxpipe",
                                          "[deploy]", "[local]"], result.stdout + result.stderr


# ----------------------------------------------------------------------------- quiet, colors, the heartbeat


def test_quiet_prints_only_the_final_line(shell):
    result = proxpipe(shell, "-q", "deploy")
    assert result.returncode == 0 and result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith("deploy done in ")


def test_colors_only_on_a_terminal_without_no_color(monkeypatch):
    leader, follower = pty.openpty()
    terminal = os.fdopen(follower, "w")
    read, write = os.pipe()
    pipe = os.fdopen(write, "w")
    try:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.delenv("TERM", raising=False)
        assert colors(terminal) and not colors(pipe)
        monkeypatch.setenv("NO_COLOR", "1")
        assert not colors(terminal)
        monkeypatch.setenv("NO_COLOR", "")  # no-color.org: set to nothing is not set
        assert colors(terminal)
        monkeypatch.setenv("TERM", "dumb")
        assert not colors(terminal)
    finally:
        for stream in (terminal, pipe):
            stream.close()
        for fd in (leader, read):
            os.close(fd)


def runner(tmp_path):
    return toolrunner.ToolRunner(tmp_path / "stage.log", tmp_path, {}, 60, Retry(1, 60), "environments.x.stages.build")


def test_a_silent_tool_gets_a_heartbeat_at_most_once_per_interval(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toolrunner, "HEARTBEAT", 0.3)
    result = runner(tmp_path).run(["sh", "-c", "echo Waiting for SSH; sleep 1.4; echo done"], "packer build")
    beats = [line.strip() for line in capsys.readouterr().out.splitlines() if "still running" in line]
    assert 2 <= len(beats) <= result.duration / 0.3, beats
    assert all(re.fullmatch(r"build: packer build still running after \d+\.\ds, no output for \d+\.\ds(; its last "
                            r"line: Waiting for SSH)?", beat) for beat in beats), beats
    assert beats[-1].endswith("its last line: Waiting for SSH")


def test_a_tool_that_keeps_talking_gets_no_heartbeat(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toolrunner, "HEARTBEAT", 0.5)
    runner(tmp_path).run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo $i; sleep 0.1; done"], "terraform apply")
    assert "still running" not in capsys.readouterr().out


def test_the_heartbeat_interval_comes_from_the_environment():
    code = "from proxpipe.domain import toolrunner; print(toolrunner.HEARTBEAT)"
    for value, expected in (("2.5", "2.5"), ("", "15.0"), ("soon", "15.0")):
        env = {**os.environ, "PROXPIPE_HEARTBEAT": value}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == expected, (value, done.stdout, done.stderr)


# ----------------------------------------------------------------------------- extras


def test_a_missing_extra_is_named_with_its_install_command(monkeypatch):
    real = extras.importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None if name == "aiohttp" else real(name))
    assert extras.missing("lab") == ["aiohttp"] and extras.missing("postgres") == []
    with pytest.raises(ConfigError) as caught:
        extras.require("lab", "environment lab (the local lab)")
    assert str(caught.value) == ("environment lab (the local lab) needs proxpipe's lab extra, which is not installed "
                                 "(no module aiohttp): pip install 'proxpipe[lab]'")
    extras.require("postgres", "shared state")  # installed: nothing said
