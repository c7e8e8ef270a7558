# The jump host: one VM cloned from the golden template that the build stage produced.
#
# The provider block is empty on purpose: endpoint, api_token and insecure come from
# PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN (user@realm!tokenid=secret) and PROXMOX_VE_INSECURE,
# which the pipeline exports from pipeline.yaml. No credential is ever written in these files.
provider "proxmox" {}

locals {
  # Default public key: the .pub file next to the private key Ansible will use.
  ssh_public_key_file = pathexpand("${var.ssh_private_key_file}.pub")
  ssh_public_key = trimspace(var.ssh_public_key != "" ? var.ssh_public_key : (
    fileexists(local.ssh_public_key_file) ? file(local.ssh_public_key_file) : ""
  ))
}

resource "proxmox_virtual_environment_vm" "jump_man" {
  name        = var.vm_name
  description = "Jump host cloned from template ${var.template_id}. Managed by Terraform."
  tags        = ["jump", "terraform"] # sorted: Proxmox sorts tags, unsorted lists show a diff forever
  node_name   = var.node_name
  vm_id       = var.vm_id

  # A new template id forces a new VM: that is how a rebuilt image reaches the host.
  # A full clone does not depend on the template, so the pipeline may delete old templates.
  clone {
    vm_id = var.template_id
    full  = true
  }

  # The template ships qemu-guest-agent (Packer installs it); Proxmox uses it for clean
  # shutdowns and reports the VM's addresses through it.
  agent {
    enabled = true
  }

  # CPU and memory are inherited from the template. The boot disk is only declared when it
  # should grow; scsi0 is where cloud-image templates keep it.
  dynamic "disk" {
    for_each = var.disk_size > 0 ? [var.disk_size] : []
    content {
      datastore_id = var.datastore_id
      interface    = "scsi0"
      size         = disk.value
    }
  }

  network_device {
    bridge = var.bridge
  }

  # Rendered by Proxmox into the template's cloud-init drive on first boot.
  initialization {
    datastore_id = var.datastore_id

    ip_config {
      ipv4 {
        address = var.ip_address
        gateway = var.gateway
      }
    }

    user_account {
      username = var.ssh_user
      keys     = [local.ssh_public_key]
    }
  }

  lifecycle {
    precondition {
      condition     = local.ssh_public_key != ""
      error_message = "No SSH public key: set ssh_public_key, or create ${local.ssh_public_key_file} (ssh-keygen -t ed25519)."
    }
  }
}
