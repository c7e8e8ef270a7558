"""The drift report (proxpipe/domain/drift.py): statuses and exit codes, the summary, its renderings, the JSON
document against schemas/drift.schema.json, and secrets masked in every rendering."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from proxpipe.base import secrets
from proxpipe.domain.drift import (
    FIELD,
    FILE,
    HOST,
    RESOURCE,
    Change,
    DriftItem,
    DriftReport,
    StageDrift,
    differences,
    handoff_item,
)
from tests.driftreports import drifted_report, in_sync_report, unknown_report
from tests.labproject import REPO

SCHEMA = json.loads((REPO / "schemas" / "drift.schema.json").read_text())
SECRET = "drift-t3st-s3cret-value"


@pytest.fixture(scope="module", autouse=True)
def registered_secret():
    secrets.register(SECRET)


def test_a_stage_is_in_sync_drifted_or_unknown_and_the_exit_code_follows_terraforms():
    assert in_sync_report().status == "in sync" and in_sync_report().exit_code == 0
    assert drifted_report().status == "drifted" and drifted_report().exit_code == 2
    assert unknown_report().status == "unknown" and unknown_report().exit_code == 1
    # one stage that could not tell outweighs another's drift: the answer is incomplete
    mixed = DriftReport("lab", [*drifted_report().stages, *unknown_report().stages], "now")
    assert mixed.exit_code == 1 and [s.name for s in mixed.drifted()] == ["build", "provision", "configure"]


def test_the_summary_has_one_line_per_stage_counting_what_drifted_by_kind():
    assert drifted_report().summary_lines() == [
        "build: drifted: 1 field", "provision: drifted: 2 resources, 1 file", "configure: drifted: 1 host"]
    assert in_sync_report().summary_lines() == ["build: in sync", "provision: in sync", "configure: in sync"]
    assert unknown_report().summary_lines()[0] == ("build: unknown: Proxmox API https://127.0.0.1:1 GET "
                                                   "/cluster/resources failed: connection refused")
    partial = StageDrift("configure", "ansible", (DriftItem(HOST, "a", "t"),), "could not check every host: b "
                                                                               "unreachable")
    assert partial.status == "unknown"
    assert partial.summary() == "unknown: could not check every host: b unreachable (drifted so far: 1 host)"


def test_the_headline_counts_the_stages():
    assert drifted_report().headline() == "drift on production: 3 drifted of 3 stages"
    assert in_sync_report().headline() == "drift on lab: all 3 stages in sync"
    assert unknown_report().headline() == "drift on lab: 1 unknown of 2 stages"


def test_the_text_gives_the_summary_first_then_each_items_changes():
    text = drifted_report().text()
    lines = text.splitlines()
    assert lines[:4] == ["drift on production: 3 drifted of 3 stages", "  build: drifted: 1 field",
                         "  provision: drifted: 2 resources, 1 file", "  configure: drifted: 1 host"]
    assert "provision (terraform):" in lines
    assert "  proxmox_virtual_environment_vm.jump_man: changed outside Terraform" in lines
    assert '      tags: ["jump", "terraform"] -> ["jump", "manual", "terraform"]' in lines
    assert "      memory[0].dedicated: 2048 -> 4096" in lines and "      started: true -> false" in lines
    assert '  proxmox_virtual_environment_vm.worker["w-01"]: deleted outside Terraform' in lines
    assert "  jump-man: Write the config" in lines and "      -port = 8080" in lines
    assert in_sync_report().text().splitlines() == ["drift on lab: all 3 stages in sync", "  build: in sync",
                                                    "  provision: in sync", "  configure: in sync"]


def test_the_json_document_is_stable_and_valid_against_its_schema():
    for report in (drifted_report(), in_sync_report(), unknown_report()):
        document = json.loads(report.to_json())
        jsonschema.validate(document, SCHEMA)
        assert document == report.to_dict() and DriftReport.from_dict(document).to_dict() == document
    document = drifted_report().to_dict()
    assert list(document) == ["format_version", "environment", "created", "run", "status", "exit_code", "summary",
                              "stages"]
    provision = document["stages"][1]
    assert provision["counts"] == {"resource": 2, "file": 1} and provision["status"] == "drifted"
    assert provision["items"][0]["changes"][1] == {"path": "disk[0].size", "then": 20, "now": 32}
    assert document["stages"][2]["items"][0]["lines"][3] == "-port = 8080"


def test_the_schema_rejects_what_is_not_a_drift_document():
    document = drifted_report().to_dict()
    for broken in ({**document, "status": "fine"}, {**document, "exit_code": 3},
                   {**document, "stages": [{**document["stages"][0], "items": [{"kind": "vm"}]}]},
                   {key: value for key, value in document.items() if key != "summary"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_is_checked_by_check_jsonschema_too(tmp_path):
    (tmp_path / "drift.json").write_text(drifted_report().to_json())
    result = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--schemafile",
                             str(REPO / "schemas" / "drift.schema.json"), str(tmp_path / "drift.json")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_from_dict_refuses_what_is_not_a_report():
    with pytest.raises(ValueError, match="not a drift report: KeyError"):
        DriftReport.from_dict({"environment": "lab"})


def test_the_markdown_is_short_cut_with_a_count_and_valid(tmp_path):
    many = tuple(DriftItem(RESOURCE, f'null_resource.vm["vm-{i:02}"]', "changed outside Terraform",
                           tuple(Change(f"triggers.k{j}", j, j + 1) for j in range(25))) for i in range(24))
    report = DriftReport("production", [StageDrift("provision", "terraform", many), StageDrift("build", "packer")],
                         "2026-01-01T12:00:00+0000", "r1")
    markdown = report.to_markdown()
    assert markdown.startswith("### proxpipe drift on `production`: drifted\n")
    assert "| `provision` | drifted: 24 resources |" in markdown and "| `build` | in sync |" in markdown
    assert markdown.count('null_resource.vm["vm-') == 10 and "\n... and 14 more\n" in markdown
    assert markdown.count("    triggers.k") == 100 and markdown.count("    ... and 15 more") == 10
    assert len(markdown) < 8000  # an issue body or a chat message, not the whole plan
    path = tmp_path / "drift.md"
    path.write_text(markdown)
    # an issue or comment body, not a page: it starts at ### and folds the detail in <details>, as plan.md does
    result = subprocess.run([str(Path(sys.executable).parent / "pymarkdown"), "--config",
                             str(REPO / ".pymarkdown.json"), "--disable-rules", "md041,md033", "scan", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_diff_line_holding_a_fence_does_not_end_the_code_block():
    item = DriftItem(HOST, "h", "Write README.md", (), ("+```sh", "+make", "+```"))
    markdown = DriftReport("lab", [StageDrift("configure", "ansible", (item,))], "now").to_markdown()
    assert markdown.count("```") == 2 and "    +'''sh" in markdown


def test_long_values_and_lines_are_cut():
    long = "x" * 500
    line = DriftReport("lab", [StageDrift("provision", "terraform", (DriftItem(
        RESOURCE, "null_resource.a", "changed outside Terraform", (Change("description", "", long),)),))], "now")
    shown = [text for text in line.text().splitlines() if "description" in text]
    assert shown == [f'      description: "" -> "{"x" * 76}...']
    assert max(len(text) for text in line.to_markdown().splitlines()) <= 200


def test_secrets_are_masked_in_every_rendering():
    report = drifted_report(SECRET)
    for rendered in (report.text(), report.to_markdown(), report.to_json(), json.dumps(report.to_dict())):
        assert SECRET not in rendered and "***" in rendered
    assert report.to_dict()["stages"][1]["items"][0]["changes"][4]["now"] == "***"
    assert report.to_dict()["stages"][2]["items"][0]["lines"][4] == "+port = 80 ***"
    tricky = 'quote"and\\backslash-s3cret'  # escaped in JSON text: mask(json.dumps(...)) would miss it
    secrets.register(tricky)
    escaped = DriftReport("lab", [StageDrift("provision", "terraform", (
        DriftItem(RESOURCE, "null_resource.a", "x", (Change("password", tricky, "b"),)),))], "now")
    assert "s3cret" not in escaped.to_json() and "s3cret" not in json.dumps(escaped.to_dict())
    environment = DriftReport(SECRET, [], "now")
    assert SECRET not in environment.headline() + environment.to_markdown()


def test_differences_flatten_blocks_by_index_and_objects_by_key():
    then = {"memory": [{"dedicated": 2048, "floating": 0}], "disk": [{"size": 20}, {"size": 8}],
            "tags": ["a", "b"], "labels": {"team": "x", "cost.centre": "1"}, "gone": 1}
    now = {"memory": [{"dedicated": 4096, "floating": 0}], "disk": [{"size": 32}],
           "tags": ["a", "b", "c"], "labels": {"team": "x", "cost.centre": "2"}, "new": True}
    assert differences(then, now) == [
        Change("memory[0].dedicated", 2048, 4096), Change("disk[0].size", 20, 32), Change("disk[1]", {"size": 8}, None),
        Change("tags", ["a", "b"], ["a", "b", "c"]), Change('labels["cost.centre"]', "1", "2"),
        Change("gone", 1, None), Change("new", None, True)]
    assert differences({"a": [1]}, {"a": [1]}) == [] and differences(1, 2) == [Change("(value)", 1, 2)]
    assert differences({"ip": [["127.0.0.1"]]}, {"ip": []}) == [Change("ip", [["127.0.0.1"]], [])]


def test_a_handoff_item_names_the_file_and_what_differs():
    assert handoff_item("template_id.txt", 9001, 9001) is None
    item = handoff_item("template_id.txt", 9001, 9002)
    assert item == DriftItem(FILE, "template_id.txt", "differs from what its stage would produce",
                             (Change("(value)", 9001, 9002),))
    inventory = {"all": {"hosts": {"a": {"ansible_host": "10.0.0.1"}}}}
    moved = {"all": {"hosts": {"a": {"ansible_host": "10.0.0.2"}, "b": {"ansible_host": "10.0.0.3"}}}}
    assert [c.path for c in handoff_item("ansible_inventory.json", inventory, moved).changes] == [
        "all.hosts.a.ansible_host", "all.hosts.b"]


def test_an_item_kind_must_be_known():
    with pytest.raises(ValueError, match="drift item kind 'vm' is not one of resource, host, field, file"):
        DriftItem("vm", "x")
    assert DriftItem(FIELD, "memory").headline() == "memory"
