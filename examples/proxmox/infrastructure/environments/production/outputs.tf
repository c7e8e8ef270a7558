locals {
  # A fresh clone has fresh SSH host keys at the same address. Naming the host key after the NIC's
  # MAC address (new for every clone) lets ssh accept the first key of each clone (accept-new)
  # and still refuse a changed key for the same clone, without prompting the unattended pipeline.
  host_key_alias = "${var.vm_name}-${replace(lower(proxmox_virtual_environment_vm.jump_man.network_device[0].mac_address), ":", "")}"
}

# The Ansible inventory handed to the configure stage (YAML/JSON inventory format). jsonencode()
# makes it one string; the pipeline decodes it into ansible_inventory.json.
output "ansible_inventory" {
  description = "Ansible inventory (JSON) with the jump host in group jump_hosts."
  value = jsonencode({
    all = {
      children = {
        jump_hosts = {
          hosts = {
            (var.vm_name) = {
              ansible_host                 = split("/", var.ip_address)[0]
              ansible_user                 = var.ssh_user
              ansible_ssh_private_key_file = var.ssh_private_key_file
              ansible_python_interpreter   = "/usr/bin/python3"
              ansible_ssh_common_args      = "-o StrictHostKeyChecking=accept-new -o HostKeyAlias=${local.host_key_alias}"
              vm_id                        = proxmox_virtual_environment_vm.jump_man.vm_id
              template_id                  = var.template_id
            }
          }
        }
      }
    }
  })
}
