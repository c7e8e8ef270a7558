"""Terraform's refresh-only plan read for drift (proxpipe/domain/tfdrift.py).

The fixtures are `terraform show -json` of `terraform plan -refresh-only -out=...` as Terraform 1.0.3 writes it for
the bpg/proxmox provider's proxmox_virtual_environment_vm (its v0.66 schema, the resource of examples/proxmox/):
one after the VM's memory was changed in the UI, its disk resized, a tag added, the VM stopped and its cloud-init
password changed; one with nothing changed, where Terraform 1.0 leaves resource_drift out. The lab's null provider
cannot drift, so the last test runs the real Terraform 1.0.3 only to confirm the document's shape and its keys.
"""

import copy
import json
import os
import subprocess

import pytest

from proxpipe.base.errors import ToolError
from proxpipe.domain.drift import RESOURCE, Change, DriftItem, DriftReport, StageDrift
from proxpipe.domain.tfdrift import SENSITIVE, refresh_drift, sensitive_variable_values
from tests.labproject import REPO

FIXTURES = REPO / "tests" / "unit" / "fixtures"
VM = "proxmox_virtual_environment_vm.jump_man"
PASSWORD = "Ub3r-s3cret-cloudinit-pw"  # var.vm_password, declared sensitive


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"tfdrift-bpg-vm-{name}.json").read_text())


def test_what_changed_outside_terraform_by_address_and_attribute():
    (item,) = refresh_drift(fixture("drifted"))
    assert item.kind == RESOURCE and item.subject == VM and item.summary == "changed outside Terraform"
    assert list(item.changes) == [
        Change("disk[0].size", 20, 32),
        Change("initialization[0].user_account[0].password", SENSITIVE, SENSITIVE),
        Change("ipv4_addresses", [["127.0.0.1"], ["192.168.10.250"]], []),
        Change("ipv6_addresses", [["::1"], ["fe80::be24:11ff:fe5c:1a2b"]], []),
        Change("mac_addresses", ["00:00:00:00:00:00", "BC:24:11:5C:1A:2B"], []),
        Change("memory[0].dedicated", 2048, 4096),
        Change("network_interface_names", ["lo", "eth0"], []),
        Change("started", True, False),
        Change("tags", ["jump", "terraform"], ["jump", "manual", "terraform"])]


def test_no_drift_is_no_item_whether_resource_drift_is_absent_or_empty():
    plan = fixture("in-sync")
    assert "resource_drift" not in plan  # what Terraform 1.0 writes
    assert refresh_drift(plan) == [] and refresh_drift(json.dumps(plan)) == []
    assert refresh_drift({**plan, "resource_drift": []}) == []  # what later versions may write
    assert refresh_drift({**plan, "resource_drift": None}) == []


def test_sensitive_values_never_appear_in_any_rendering():
    plan = fixture("drifted")
    assert PASSWORD in json.dumps(plan) and "n3w-pw-set-in-the-UI" in json.dumps(plan)  # the document has them
    report = DriftReport("production", [StageDrift("provision", "terraform", tuple(refresh_drift(plan)))], "now")
    for rendered in (report.text(), report.to_markdown(), report.to_json()):
        assert PASSWORD not in rendered and "n3w-pw-set-in-the-UI" not in rendered
        assert "initialization[0].user_account[0].password" in rendered and SENSITIVE in rendered


def test_a_sensitive_variables_value_is_masked_wherever_it_appears():
    plan = fixture("drifted")
    assert sensitive_variable_values(plan) == {PASSWORD}
    after = plan["resource_drift"][0]["change"]["after"]
    after["description"] = f"console password: {PASSWORD}"  # pasted into the VM's notes in the UI
    (item,) = refresh_drift(plan)
    assert Change("description", SENSITIVE, SENSITIVE) in item.changes
    assert PASSWORD not in json.dumps([c.__dict__ for c in item.changes])


def test_a_whole_block_marked_sensitive_is_masked_on_both_sides():
    plan = fixture("drifted")
    change = plan["resource_drift"][0]["change"]
    change["before_sensitive"]["initialization"][0]["user_account"] = True
    change["after"]["initialization"][0]["user_account"] = []  # the account was removed
    (item,) = refresh_drift(plan)
    assert Change("initialization[0].user_account", SENSITIVE, SENSITIVE) in item.changes


def test_a_sensitive_part_of_a_block_that_vanished_is_masked_in_it():
    plan = fixture("drifted")
    plan["resource_drift"][0]["change"]["after"]["initialization"] = []  # someone removed the cloud-init drive
    (item,) = refresh_drift(plan)
    (gone,) = [c for c in item.changes if c.path == "initialization"]
    assert gone.now == [] and gone.then[0]["user_account"][0]["password"] == SENSITIVE
    assert gone.then[0]["user_account"][0]["username"] == "ansible"


def test_a_resource_deleted_outside_terraform():
    plan = fixture("drifted")
    entry = copy.deepcopy(plan["resource_drift"][0])
    entry.update(address='proxmox_virtual_environment_vm.worker["w-01"]', index="w-01")
    entry["change"].update(actions=["delete"], after=None, after_unknown={}, after_sensitive=False)
    plan["resource_drift"].append(entry)
    items = refresh_drift(plan)
    assert items[1] == DriftItem(RESOURCE, 'proxmox_virtual_environment_vm.worker["w-01"]',
                                 "deleted outside Terraform")


def test_only_resource_drift_counts_not_the_changes_a_plan_would_make():
    plan = fixture("in-sync")
    drifted = fixture("drifted")
    # a normal plan (not refresh-only) lists what it would change in resource_changes: that is not drift
    plan["resource_changes"] = [{**drifted["resource_drift"][0], "change": {
        **drifted["resource_drift"][0]["change"], "before": drifted["resource_drift"][0]["change"]["after"],
        "after": drifted["resource_drift"][0]["change"]["before"]}}]
    assert refresh_drift(plan) == []


def test_an_unchanged_entry_gives_no_item():
    plan = fixture("drifted")
    change = plan["resource_drift"][0]["change"]
    change["after"] = copy.deepcopy(change["before"])
    change["after_sensitive"] = change["before_sensitive"]
    assert refresh_drift(plan) == []


@pytest.mark.parametrize("document, message", [
    ("{not json", "terraform show -json: not JSON (line 1, column 2"),
    ('"a string"', "not a Terraform plan document (no format_version)"),
    ('{"values": {}}', "not a Terraform plan document (no format_version)"),
    ('{"format_version": "2.0", "terraform_version": "2.1.0"}', "plan format 2.0 (Terraform 2.1.0) is newer"),
    ('{"format_version": "0.2", "resource_drift": {}}', "resource_drift is not a list"),
    ('{"format_version": "0.2", "resource_drift": [{"address": "a"}]}', "a resource_drift entry without"),
])
def test_what_is_not_a_plan_is_one_clear_error(document, message):
    with pytest.raises(ToolError) as caught:
        refresh_drift(document)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_newer_plan_formats_of_the_same_major_version_are_read():
    plan = fixture("drifted")
    plan.update(format_version="1.2", terraform_version="1.9.8", applyable=False, complete=True, errored=False)
    assert [item.subject for item in refresh_drift(plan)] == [VM]


def test_the_real_terraform_writes_what_the_reader_reads(tmp_path):
    """terraform 1.0.3, offline with the lab's provider mirror: apply a null_resource, plan -refresh-only -out,
    show -json. The null provider cannot drift: resource_drift is left out, and nothing is reported."""
    (tmp_path / "main.tf").write_text("""
terraform {
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" }
  }
}
variable "token" {
  type      = string
  default   = "real-tf-s3cret-token"
  sensitive = true
}
variable "name" {
  type    = string
  default = "web"
}
resource "null_resource" "vm" {
  for_each = toset(["a", "b"])
  triggers = { name = "${var.name}-${each.key}" }
}
""")
    terraform = str(REPO / ".tools" / "bin" / "terraform")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(REPO / ".tools" / "terraformrc"), "TF_IN_AUTOMATION": "1",
           "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", "TF_DATA_DIR": str(tmp_path / "data")}

    def run(*args):
        done = subprocess.run([terraform, *args, "-no-color"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("init", "-input=false")
    run("apply", "-auto-approve", "-input=false")
    run("plan", "-refresh-only", "-input=false", "-out=drift.tfplan")
    shown = run("show", "-json", "drift.tfplan")
    plan = json.loads(shown)
    assert plan["format_version"].split(".")[0] in ("0", "1") and plan["terraform_version"] == "1.0.3"
    assert "resource_drift" not in plan and "resource_changes" not in plan
    # the keys the reader uses for sensitive variables, and the addresses it reports, as Terraform writes them
    assert plan["configuration"]["root_module"]["variables"]["token"]["sensitive"] is True
    assert plan["variables"]["token"]["value"] == "real-tf-s3cret-token"
    assert sensitive_variable_values(plan) == {"real-tf-s3cret-token"}
    addresses = [r["address"] for r in plan["prior_state"]["values"]["root_module"]["resources"]]
    assert addresses == ['null_resource.vm["a"]', 'null_resource.vm["b"]']
    assert refresh_drift(shown) == []
    # the drift entries carry the same addresses and change keys the fixture has: a resource_drift made of the
    # real state's objects is read as a change of that address
    resource = plan["prior_state"]["values"]["root_module"]["resources"][0]
    before = {**resource["values"], "triggers": {"name": "web-old"}}
    plan["resource_drift"] = [{key: resource[key] for key in ("address", "mode", "type", "name", "index",
                                                              "provider_name")}
                              | {"change": {"actions": ["update"], "before": before, "after": resource["values"],
                                            "after_unknown": {}, "before_sensitive": resource["sensitive_values"],
                                            "after_sensitive": resource["sensitive_values"]}}]
    assert refresh_drift(plan) == [DriftItem(RESOURCE, 'null_resource.vm["a"]', "changed outside Terraform",
                                             (Change("triggers.name", "web-old", "web-a"),))]
    assert set(fixture("drifted")["resource_drift"][0]) >= {"address", "mode", "type", "name", "provider_name"}
