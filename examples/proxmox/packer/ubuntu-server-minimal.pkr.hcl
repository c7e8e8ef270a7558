# Golden image: clone the cloud-init base template (clone_vm_id), provision it over SSH, and
# convert the result into a new template whose VMID is var.template_id.
#
# Credentials: nothing secret lives here. The proxmox plugin reads PROXMOX_URL
# (https://host:8006/api2/json), PROXMOX_USERNAME (the token id, user@realm!tokenid) and
# PROXMOX_TOKEN (the token secret) from the environment; the pipeline exports all three from
# pipeline.yaml's proxmox section when it runs packer.

packer {
  required_plugins {
    proxmox = {
      version = ">= 1.1.8"
      source  = "github.com/hashicorp/proxmox"
    }
  }
}

# Allocated by the pipeline from template_id_range and passed as -var template_id=N. No default
# on purpose: a build that did not get an id must fail, not grab "the next free VMID".
variable "template_id" {
  type        = number
  description = "VMID of the template this build creates (passed in by the pipeline)."
}

variable "proxmox_node" {
  type        = string
  default     = "pve"
  description = "Node the build VM runs on and the template is stored on; keep it equal to PROXMOX_NODE."
}

variable "clone_vm_id" {
  type        = number
  default     = 9000
  description = "VMID of the cloud-init base template (e.g. an Ubuntu 24.04 cloud image) to clone."
}

variable "template_name" {
  type        = string
  default     = "ubuntu-2404-minimal"
  description = "Name prefix of the template; the VMID is appended so kept generations stay apart."
}

variable "ssh_username" {
  type        = string
  default     = "ubuntu"
  description = "Default user of the cloud image; Packer injects a throwaway key for it via cloud-init."
}

variable "cores" {
  type        = number
  default     = 2
  description = "vCPU cores of the template (clones inherit them)."
}

variable "memory" {
  type        = number
  default     = 2048
  description = "Memory of the template in MiB (clones inherit it)."
}

variable "cpu_type" {
  type        = string
  default     = "x86-64-v2-AES"
  description = "Emulated CPU type; a portable model keeps live migration between nodes possible (PVE 8+)."
}

variable "storage_pool" {
  type        = string
  default     = "local-lvm"
  description = "Storage for the template's cloud-init drive (the cloned disk stays where the base's is)."
}

variable "bridge" {
  type        = string
  default     = "vmbr0"
  description = "Bridge of the build VM's NIC; it must offer DHCP during the build."
}

# The plugin has no environment variable for TLS verification, so follow the one the pipeline
# exports (from proxmox.verify_tls in pipeline.yaml): "true" skips verification.
variable "insecure_skip_tls_verify" {
  type        = string
  default     = env("PROXMOX_INSECURE_SKIP_TLS_VERIFY")
  description = "\"true\" to skip TLS certificate checks of the Proxmox API (self-signed certificates)."
}

source "proxmox-clone" "ubuntu" {
  # proxmox_url, username and token come from PROXMOX_URL / PROXMOX_USERNAME / PROXMOX_TOKEN.
  insecure_skip_tls_verify = lower(var.insecure_skip_tls_verify) == "true"
  node                     = var.proxmox_node
  task_timeout             = "10m" # a full clone of a large disk takes longer than the 1m default

  clone_vm_id = var.clone_vm_id
  full_clone  = true # the template must not depend on the base template's disks

  # The build VM gets the final VMID right away: the template is this VM, converted.
  vm_id                = var.template_id
  vm_name              = "packer-${var.template_name}-${var.template_id}"
  template_name        = "${var.template_name}-${var.template_id}"
  template_description = "Built by Packer from VM ${var.clone_vm_id} on ${timestamp()}"

  os              = "l26"
  cores           = var.cores
  memory          = var.memory
  cpu_type        = var.cpu_type
  scsi_controller = "virtio-scsi-pci"

  # Disks are deliberately not declared: in proxmox-clone, a `disks` block adds or replaces disks
  # instead of resizing the cloned boot disk. Grow the disk per VM in Terraform (var.disk_size).

  network_adapters {
    model  = "virtio"
    bridge = var.bridge
  }

  # Packer learns the build VM's address from the guest agent, so the base template must already
  # run qemu-guest-agent; Terraform's `agent { enabled = true }` relies on it in the clones too.
  qemu_agent = true

  # Leave an empty cloud-init drive on the template so Terraform can set user, key and IP per clone.
  cloud_init              = true
  cloud_init_storage_pool = var.storage_pool

  ssh_username = var.ssh_username
  ssh_timeout  = "15m"
  # Remove Packer's throwaway build key from the image; clones get their keys from cloud-init.
  ssh_clear_authorized_keys = true
}

build {
  sources = ["source.proxmox-clone.ubuntu"]

  provisioner "shell" {
    # Run every line as root, with apt never prompting.
    execute_command  = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = ["DEBIAN_FRONTEND=noninteractive"]
    inline = [
      # Cloud-init runs apt on first boot: wait for it so apt's lock is free. Exit code 2 means
      # "done, with recoverable errors" (e.g. deprecation warnings), which is fine here.
      "cloud-init status --wait >/dev/null || test $? -eq 2",
      # Already in the base template (Packer needed it to find this VM); kept so the golden image
      # guarantees it whatever base it was built from.
      "apt-get update",
      "apt-get install -y --no-install-recommends qemu-guest-agent",
      "apt-get -y autoremove --purge",
      "apt-get clean",
      "rm -rf /var/lib/apt/lists/*",
      # Make every clone a new instance: cloud-init runs again (new host keys, user, network) and
      # systemd generates a fresh machine-id, so DHCP leases and journals do not collide.
      "cloud-init clean --logs --seed",
      "truncate -s 0 /etc/machine-id",
      "rm -f /var/lib/dbus/machine-id",
      "ln -s /etc/machine-id /var/lib/dbus/machine-id",
      "sync",
    ]
  }

  # The pipeline reads the template id from the builder's artifact id; the manifest is its fallback.
  post-processor "manifest" {
    output     = "manifest.json"
    strip_path = true
    custom_data = {
      template_id = var.template_id
    }
  }
}
