"""Issue 27, rule 7 (the parts of the base and domain): what the user left out is asked for, never guessed. `env=`
given empty is not the default environment (which may be production); `approve` without --plan does not approve the
newest plan, stale or not; loading the pipeline creates no state directory for an environment."""

import copy
import json

import pytest

from proxpipe.domain.plan import PLANS
from tests.badinput import SeededProject, one_line
from tests.unit.test_plugins import ShellProject


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = SeededProject(tmp_path_factory.mktemp("choices") / "project")
    project.config["environments"]["production"] = copy.deepcopy(project.env)
    project.config["default_environment"] = "production"  # the one an empty choice must not fall back to
    project.write_config()
    return project


@pytest.mark.parametrize("args, env, said", [
    (["deploy", "env="], {}, "env= is empty: name the environment (known: lab, production), or leave env= out for "
                             "the default, production"),
    (["configure", "--force", "env="], {}, "env= is empty"),
    (["deploy", "env= "], {}, "env= is empty"),
    (["deploy"], {"PIPELINE_ENV": ""}, "PIPELINE_ENV is set but empty: name the environment (known: lab, "
                                       "production), or unset it for the default, production"),
    (["status"], {"PIPELINE_ENV": "  "}, "PIPELINE_ENV is set but empty"),
], ids=["deploy env=", "configure env=", "env=space", "PIPELINE_ENV=", "PIPELINE_ENV=space"])
def test_an_empty_environment_is_not_the_default_one(project, args, env, said):
    result = project.doit(*args, env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    line = one_line(result)
    assert line.startswith(f"ERROR: {said}"), line
    project.unchanged()
    assert not (project.root / ".pipeline" / "production").exists()


def test_loading_creates_no_state_directory(project):
    for args in (["list"], ["list", "--all", "env=lab"], ["help", "deploy"]):
        assert project.doit(*args).returncode == 0
    assert sorted(p.name for p in (project.root / ".pipeline").iterdir() if p.is_dir()) == ["lab"]
    project.unchanged()


# ----------------------------------------------------------------------------- approve


@pytest.fixture
def planned(tmp_path):
    shell = ShellProject(tmp_path)
    result = shell.doit("plan")
    assert result.returncode == 0, result.stdout + result.stderr
    state = tmp_path / ".pipeline" / "local"
    (plan_id,) = [p.stem for p in (state / PLANS).glob("*.json")]
    return shell, state, plan_id


def _plans(state):
    return {p.name: p.read_bytes() for p in (state / PLANS).glob("*.json")}


def test_approve_without_a_plan_names_the_newest_and_refuses(planned):
    shell, state, plan_id = planned
    before = _plans(state)
    result = shell.doit("approve")
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_line(result) == (f"error: approve needs --plan ID: the newest plan is {plan_id} (not stale: its files "
                                "and settings are as they were); `doit approve --plan ID` once you reviewed it "
                                "(`doit plan` makes a new one)")
    assert _plans(state) == before and not (state / "make.txt").exists()
    (shell.root / "work" / "input.txt").write_text("a new input file\n")
    stale = shell.doit("approve", "--by", "reviewer")
    assert stale.returncode == 1
    assert f"the newest plan is {plan_id} (stale: 1 input file added)" in one_line(stale)
    assert _plans(state) == before
    shell.doit("deploy")  # the plan is for a state that is gone now
    assert "the newest plan is" in one_line(shell.doit("approve")) and _plans(state) == before


def test_approve_with_its_plan_id_still_approves(planned):
    shell, state, plan_id = planned
    result = shell.doit("approve", "--plan", plan_id, "--by", "reviewer")
    assert result.returncode == 0, result.stdout + result.stderr
    (approval,) = json.loads((state / PLANS / f"{plan_id}.json").read_text())["approvals"]
    assert approval["by"] == "reviewer"


def test_approve_without_any_plan_says_so(tmp_path):
    result = ShellProject(tmp_path).doit("approve")
    assert result.returncode == 1
    assert one_line(result) == "error: environment local has no plan yet; make one with `doit plan`"
