# The lab's VMs: one per entry of var.vms, cloned from var.template_id and started through the
# lab's Proxmox API, each with its own sshd on its own loopback address. On a real cluster this is
# a bpg/proxmox proxmox_virtual_environment_vm (see examples/proxmox/infrastructure/).
#
# The lab is a cluster of three nodes (pve1, pve2, pve3): a VM lands on its entry's `node` (default pve1),
# cloned the way Proxmox clones (from the template's node, with a target node), so a template on one node's
# local storage cannot be cloned onto another. A VM without a static address (`address` left out, or "dhcp")
# gets one from the lab's DHCP pool, which only the guest agent reports: its inventory host has ansible_host
# "dhcp", for the pipeline to fill in from the agent.

terraform {
  required_version = ">= 1.0.0"
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "template_id" {
  type        = number
  description = "The template the VMs are cloned from (the build stage's handoff)."
}

# A map of string maps rather than an object type: Terraform 1.0 has no optional object attributes.
variable "vms" {
  type        = map(map(string))
  description = "name => {vm_id, address (a loopback address, \"dhcp\" or left out), node (default pve1), linked (\"true\": a linked clone)} of each lab VM."

  validation {
    condition     = alltrue([for name, vm in var.vms : can(tonumber(vm.vm_id))])
    error_message = "Each VM needs a numeric vm_id."
  }
}

variable "group" {
  type        = string
  default     = "jump_hosts"
  description = "The inventory group of the VMs."
}

variable "sshd_delays" {
  type        = map(number)
  default     = {}
  description = "name => seconds until that VM's sshd starts (-1: never); for fault tests."
}

variable "agent_delays" {
  type        = map(number)
  default     = {}
  description = "name => seconds until that VM's guest agent answers (-1: never); for fault tests."
}

variable "clone_lock_retry" {
  type        = bool
  default     = true
  description = "Retry a clone that fails on Proxmox's config-lock timeout; false fails it, as the bpg provider does."
}

variable "apply_delay" {
  type        = number
  default     = 0
  description = "Seconds each VM's creation waits first; for the tests that interrupt an apply."
}

variable "lab_dir" {
  type        = string
  description = "The lab environment's state directory (keys, known_hosts, VM folders)."
}

variable "ssh_user" {
  type        = string
  description = "The user Ansible logs in as (the one running the lab)."
}

# Declared sensitive, so the pipeline passes it as TF_VAR_vm_salt, never in its .tfvars.json or on a command
# line. It goes to the local-exec's environment only: never into triggers, which the state keeps.
variable "vm_salt" {
  type        = string
  default     = ""
  sensitive   = true
  description = "A secret the VMs are made with; the lab keeps only its sha256."
}

# Not declared sensitive, but named like a secret: the pipeline treats it as one all the same.
variable "lab_api_key" {
  type        = string
  default     = ""
  description = "A key the VMs are made with; the lab keeps only its sha256."
}

variable "template_ids_by_node" {
  type        = map(number)
  default     = {}
  description = "node => the template VMs on that node are cloned from (the build's copies); default: template_id."
}

locals {
  vms = {
    for name, vm in var.vms : name => {
      template = lookup(var.template_ids_by_node, lookup(vm, "node", "pve1"), var.template_id)
      vm_id    = tonumber(vm.vm_id)
      address  = lookup(vm, "address", "") == "" ? "dhcp" : vm.address
      node     = lookup(vm, "node", "pve1")
      linked   = lookup(vm, "linked", "false") == "true"
      # Kept in the triggers only where not the default, so that VMs made before the lab had nodes stay as they are.
      placement = merge(lookup(vm, "node", "pve1") == "pve1" ? {} : { node = vm.node },
      lookup(vm, "linked", "false") == "true" ? { linked = "true" } : {})
    }
  }
}

resource "null_resource" "vm" {
  for_each = local.vms

  triggers = merge(each.value.placement, {
    template_id = each.value.template
    vm_id       = each.value.vm_id
    address     = each.value.address
    name        = each.key
  })

  provisioner "local-exec" {
    command = "pipeline-lab vm-create --template ${each.value.template} --vmid ${each.value.vm_id} --name ${each.key} --address ${each.value.address} --node ${each.value.node}${each.value.linked ? " --linked" : ""} --sshd-delay ${lookup(var.sshd_delays, each.key, 0)} --agent-delay ${lookup(var.agent_delays, each.key, 0)}${var.clone_lock_retry ? "" : " --no-lock-retry"} --delay ${var.apply_delay}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "pipeline-lab vm-destroy --vmid ${self.triggers.vm_id}"
  }
}

# Digests of the secrets Terraform got, recorded again whenever VMs are (re)created: once, not once per VM (a
# Python process each: at 30 VMs, 1.6 s of a 6.9 s apply). This provisioner's output is suppressed: its config is
# sensitive.
resource "null_resource" "received" {
  triggers = {
    vms = join(",", [for name, vm in null_resource.vm : vm.id])
  }

  provisioner "local-exec" {
    command = "pipeline-lab received --dir '${var.lab_dir}' terraform.vm_salt=VM_SALT terraform.lab_api_key=LAB_API_KEY"
    environment = {
      VM_SALT     = var.vm_salt
      LAB_API_KEY = var.lab_api_key
    }
  }
}

locals {
  hosts = {
    for name, vm in null_resource.vm : name => {
      ansible_host                 = vm.triggers.address
      ansible_user                 = var.ssh_user
      ansible_ssh_private_key_file = "${var.lab_dir}/ssh/id_ed25519"
      ansible_ssh_common_args      = "-o UserKnownHostsFile=${var.lab_dir}/ssh/known_hosts -o StrictHostKeyChecking=yes"
      ansible_python_interpreter   = "/usr/bin/python3"
      vm_id                        = tonumber(vm.triggers.vm_id)
      node                         = lookup(vm.triggers, "node", "pve1")
      template_id                  = tonumber(vm.triggers.template_id)
      lab_root                     = "${var.lab_dir}/vms/${vm.triggers.vm_id}/root"
      ansible_remote_tmp           = "${var.lab_dir}/vms/${vm.triggers.vm_id}/ansible-tmp"
    }
  }
}

# jsonencode() on purpose: the pipeline decodes a string holding JSON, the seed's stumbling block.
output "ansible_inventory" {
  value = jsonencode({
    all = {
      children = {
        (var.group) = {
          hosts = local.hosts
        }
      }
    }
  })
}
