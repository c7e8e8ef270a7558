"""Which instances a Terraform plan re-creates, and which belong to a host (stages/terraform.py)."""

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
    assert _REMADE.findall(PLAN) == ['null_resource.vm["db-01"]',
                                     'module.web.proxmox_virtual_environment_vm.vm["web-01"]']


def test_instances_belong_to_the_host_named_in_their_key():
    remade = _REMADE.findall(PLAN)
    assert _owned_by(remade, ["web-01"]) == ['module.web.proxmox_virtual_environment_vm.vm["web-01"]']
    assert _owned_by(remade, ["jump-01"]) == []  # updated in place is not re-created


def test_a_lone_instance_without_a_name_key_belongs_to_a_lone_host():
    assert _owned_by(["proxmox_vm_qemu.vm"], ["jump-01"]) == ["proxmox_vm_qemu.vm"]
    assert _owned_by(["proxmox_vm_qemu.vm[0]"], ["jump-01"]) == ["proxmox_vm_qemu.vm[0]"]
    assert _owned_by(["proxmox_vm_qemu.vm"], ["a", "b"]) == []
    # another host's instance is never taken for this one's
    assert _owned_by(['null_resource.vm["db-01"]'], ["jump-01"]) == []
