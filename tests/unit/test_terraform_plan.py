"""Which instances a Terraform plan re-creates, and which belong to a host (stages/terraform.py)."""

import re
import textwrap

from proxpipe.stages.terraform import _REMADE, _owned_by

PLAN = """
Terraform will perform the following actions:

  # null_resource.vm["db-01"] will be created
  + resource "null_resource" "vm" {
  # module.web.proxmox_virtual_environment_vm.vm["web-01"] must be replaced
-/+ resource "proxmox_virtual_environment_vm" "vm" {
  # null_resource.vm["jump-01"] will be updated in-place
  # null_resource.marker will be destroyed

Plan: 2 to add, 1 to change, 2 to destroy.
"""


def test_the_plan_names_what_it_creates_or_replaces():
    assert re.findall(_REMADE, PLAN) == ['null_resource.vm["db-01"]',
                                     'module.web.proxmox_virtual_environment_vm.vm["web-01"]']


def test_instances_belong_to_the_host_named_in_their_key():
    remade = re.findall(_REMADE, PLAN)
    assert _owned_by(remade, ["web-01"]) == ['module.web.proxmox_virtual_environment_vm.vm["web-01"]']
    assert _owned_by(remade, ["jump-01"]) == []  # updated in place is not re-created


def test_a_lone_instance_without_a_name_key_belongs_to_a_lone_host():
    assert _owned_by(["proxmox_vm_qemu.vm"], ["jump-01"]) == ["proxmox_vm_qemu.vm"]
    assert _owned_by(["proxmox_vm_qemu.vm[0]"], ["jump-01"]) == ["proxmox_vm_qemu.vm[0]"]
    assert _owned_by(["proxmox_vm_qemu.vm"], ["a", "b"]) == []
    # another host's instance is never taken for this one's
    assert _owned_by(['null_resource.vm["db-01"]'], ["jump-01"]) == []


def test_the_changes_of_a_plan_are_read_from_its_text():
    from proxpipe.stages.terraform import plan_changes

    output = textwrap.dedent("""\
        Terraform will perform the following actions:

          # null_resource.vm["jump-01"] must be replaced
        -/+ resource "null_resource" "vm" {
            }

          # null_resource.vm["jump-02"] will be created
          + resource "null_resource" "vm" {
            }

        Plan: 1 to add, 0 to change, 1 to destroy.

        Changes to Outputs:
          ~ ansible_inventory = jsonencode(
                # (1 unchanged element hidden)
            )
        """)
    assert plan_changes(output) == ['-/+ null_resource.vm["jump-01"]', '+ null_resource.vm["jump-02"]',
                                    "~ output.ansible_inventory"]


def test_parallelism_does_not_make_provision_stale(tmp_path):
    """-parallelism says how fast, not what: setting or changing it (or a pipeline.yaml from before the option)
    keeps the stage's configuration digest; another output does not."""
    from tests.unit.test_secret_vars import make_pipeline

    def digest(folder, options):
        stage = make_pipeline(tmp_path / folder, {"provision": options}).stage("provision")
        return stage.config_digest(), stage.parallelism_args()

    lab, lab_args = digest("lab", {})  # the lab's pipeline.yaml sets 30
    assert lab_args == ["-parallelism=30"]
    assert digest("five", {"parallelism": 5}) == (lab, ["-parallelism=5"])
    assert digest("unset", {"parallelism": None}) == (lab, [])
    assert digest("other", {"output": "hosts"})[0] != lab
