"""Issue 27, rule 2: a duplicate key at any level of pipeline.yaml is a one-line error naming both lines; the last one
never silently wins (a second default_environment pointed every command at production, a second configure stage
replaced the first one's playbook). YAML merge keys keep working: a key next to a merge overrides the merged one."""

import copy
import hashlib
import json

import pytest
import yaml

from proxpipe.domain import yamlfile
from proxpipe.engine.pipeline import load_config
from tests.badinput import SeededProject, one_line
from tests.labproject import REPO


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = SeededProject(tmp_path_factory.mktemp("duplicates") / "project")
    project.config["environments"]["production"] = copy.deepcopy(project.env)
    project.write_config()
    return project


def _text(project) -> str:
    return yaml.safe_dump(project.config, sort_keys=False)


def _insert(text: str, before: str, block: str) -> tuple[str, int]:
    """text with block inserted before the first line that starts with `before`; and the block's first line."""
    lines = text.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith(before))
    return "".join(lines[:index] + [block] + lines[index:]), index + 1


def _line_of(text: str, start: str, nth: int = 0) -> int:
    return [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith(start)][nth]


def _second_default(text):
    text, _ = _insert(text, "plugins:", "default_environment: production\n")
    key = "default_environment"
    return text, key, _line_of(text, f"{key}:"), _line_of(text, f"{key}:", 1)


def _second_configure_stage(text):
    text, line = _insert(text, "    validate:", "      configure:\n        kind: ansible\n        dir: lab/ansible\n"
                                                "        playbook: other.yml\n")
    return text, "configure", _line_of(text, "      configure:"), line


def _nested_key(text):
    first = _line_of(text, "              vm_id: 201")
    return text.replace("              vm_id: 201\n", "              vm_id: 201\n              vm_id: 202\n", 1), \
        "vm_id", first, first + 1


def _second_environment(text):
    text += "  lab:\n    stages: {}\n"
    return text, "lab", _line_of(text, "  lab:"), _line_of(text, "  lab:", 1)


def _in_a_flow_mapping(text):
    text = text.replace("  lab:\n", "  lab:\n    validate: {group: all, group: jump_hosts}\n", 1)
    line = _line_of(text, "    validate: {group")
    return text.replace("    validate:\n      group: jump_hosts\n", "", 1), "group", line, line


def _next_to_a_merge(text):
    text = text.replace("      provision:\n", "      provision: &provision\n", 1)
    text += ("  merged:\n    stages:\n      provision:\n        <<: *provision\n        dir: lab/terraform-shared\n"
             "        dir: lab/terraform\n")
    first = _line_of(text, "        dir: lab/terraform-shared")
    return text, "dir", first, first + 1


CASES = [_second_default, _second_configure_stage, _nested_key, _second_environment, _in_a_flow_mapping,
         _next_to_a_merge]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_") for c in CASES])
def test_a_duplicate_key_is_one_line_naming_both_lines(project, case):
    text, key, first, second = case(_text(project))
    project.write_text(text)
    for command in (["deploy"], ["status"], ["configure", "--force"]):
        result = project.doit(*command)
        assert result.returncode == 3, result.stdout + result.stderr
        assert one_line(result) == (f"ERROR: pipeline.yaml: line {second}: duplicate key {key!r} (first at line "
                                    f"{first}); keep one of them")
    project.unchanged()
    assert not (project.root / ".pipeline" / "production").exists()  # the second default_environment's
    cache = project.root / ".pipeline" / ".pipeline.yaml.json"
    assert not cache.exists() or json.loads(cache.read_text())["sha256"] != hashlib.sha256(text.encode()).hexdigest()


def test_a_cache_of_an_older_version_does_not_let_a_duplicate_through(project):
    text, *_ = _second_default(_text(project))
    project.write_text(text)
    cache = project.root / ".pipeline" / ".pipeline.yaml.json"  # as the version before these checks wrote it
    cache.write_text(json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(),
                                 "data": yaml.safe_load(text)}))
    result = project.doit("status")
    assert result.returncode == 3 and "duplicate key 'default_environment'" in one_line(result)
    project.unchanged()


def test_a_key_next_to_a_merge_overrides_it(project):
    text, *_ = _next_to_a_merge(_text(project))
    project.write_text(text.removesuffix("        dir: lab/terraform\n") + "    validate: {group: all}\n")
    merged = load_config(project.root / "pipeline.yaml", environ={}).environment("merged")
    (provision,) = merged.stages
    assert provision.dir == project.root / "lab" / "terraform-shared" and provision.options["parallelism"] == 30


def test_the_repositorys_own_pipelines_load_as_before():
    for path in (REPO / "pipeline.yaml", REPO / "lab" / "example.pipeline.yaml"):
        assert yamlfile.load(path.name, path.read_bytes()) == yaml.safe_load(path.read_text())
    loaded = load_config(REPO / "pipeline.yaml", environ={})
    shared = loaded.environment("lab-shared").stage("provision")
    assert shared.dir.name == "terraform-shared" and shared.options["parallelism"] == 30  # merged from the lab's


def test_the_override_inside_a_merged_mapping_that_merges_in_turn_is_kept():
    # PyYAML's own merge dropped `q: 2` here (it tells keys apart by the identity of their text): later got q: 1.
    text = "m0: &m0 {q: 1, r: 1}\ntop:\n  deep:\n    deeper:\n      m: &m {<<: *m0, q: 2}\nlater: {<<: *m, z: 1}\n"
    assert yamlfile.load("pipeline.yaml", text.encode())["later"] == {"q": 2, "r": 1, "z": 1}
    listed = "a: &a {x: 1, w: 0}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n  y: 1\n"  # the first merged one wins
    assert yamlfile.load("pipeline.yaml", listed.encode())["c"] == {"x": 1, "w": 0, "y": 1}


@pytest.mark.parametrize("text, problem", [
    ("a: {yes: 1, true: 2}\n", "line 1: duplicate key 'true' (first at line 1)"),  # the same key once read
    ("a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n", "line 4: duplicate key '<<' (first at line 3)"),
    ("a: &a {<<: *a, x: 1}\n", "it merges a mapping it is part of"),
    ("a: &a 1\nb: {<<: *a}\n", "expected a mapping to merge, found scalar"),
])
def test_more_duplicates_and_bad_merges(text, problem):
    with pytest.raises(Exception) as caught:
        yamlfile.load("pipeline.yaml", text.encode())
    assert problem in str(caught.value) and "\n" not in str(caught.value)
