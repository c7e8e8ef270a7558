# --------------------------------------------------------------------------- from the pipeline

variable "template_id" {
  type        = number
  description = "VMID of the golden template to clone. The pipeline passes the build stage's handoff; no default, so a run without it fails instead of cloning something stale."

  validation {
    condition     = var.template_id >= 100
    error_message = "template_id must be a Proxmox VMID (100 or more)."
  }
}

# --------------------------------------------------------------------------- placement

variable "node_name" {
  type        = string
  default     = "pve"
  description = "Node the VM runs on; keep it equal to PROXMOX_NODE (the node the template was built on)."
}

variable "vm_id" {
  type        = number
  default     = 250
  description = "VMID of the jump host; outside the pipeline's template_id_range."

  validation {
    condition     = var.vm_id >= 100
    error_message = "vm_id must be a Proxmox VMID (100 or more)."
  }
}

variable "vm_name" {
  type        = string
  default     = "jump-man"
  description = "VM name in Proxmox, hostname set by cloud-init and host name in the Ansible inventory."
}

variable "datastore_id" {
  type        = string
  default     = "local-lvm"
  description = "Datastore of the cloud-init drive and, when disk_size is set, of the boot disk."
}

variable "disk_size" {
  type        = number
  default     = 0
  description = "Boot disk size in GiB; 0 keeps the template's size. Proxmox can only grow a disk, never shrink it."

  validation {
    condition     = var.disk_size >= 0
    error_message = "disk_size must be 0 (keep the template's size) or a size in GiB."
  }
}

variable "bridge" {
  type        = string
  default     = "vmbr0"
  description = "Bridge the VM's NIC is attached to."
}

# --------------------------------------------------------------------------- network (cloud-init)

variable "ip_address" {
  type        = string
  default     = "192.168.10.250/24"
  description = "Static IPv4 address of the VM in CIDR notation."

  validation {
    condition     = can(cidrhost(var.ip_address, 0))
    error_message = "ip_address must be in CIDR notation, e.g. 192.168.10.250/24."
  }
}

variable "gateway" {
  type        = string
  default     = "192.168.10.1"
  description = "IPv4 default gateway. DNS servers come from the Proxmox node's settings."
}

# --------------------------------------------------------------------------- access

variable "ssh_user" {
  type        = string
  default     = "ansible"
  description = "Account cloud-init creates (passwordless sudo) and Ansible logs in as."
}

# Empty by default: the key is then read from "<ssh_private_key_file>.pub" on the machine that
# runs the pipeline, so the pair Ansible uses is the one installed. Set it (e.g. in a
# -var-file listed under var_files:) to install a different public key.
variable "ssh_public_key" {
  type        = string
  default     = ""
  description = "OpenSSH public key for ssh_user; empty: the contents of <ssh_private_key_file>.pub."
}

variable "ssh_private_key_file" {
  type        = string
  default     = "~/.ssh/id_ed25519"
  description = "Private key Ansible uses to reach the VM (written into the inventory, never read into state)."
}
