# The lab's golden image. On a real cluster this is the proxmox-clone builder (see
# examples/proxmox/packer/); here the null builder runs the same steps against the lab's
# Proxmox API: clone the base template, provision, convert to a template with the VMID the
# pipeline allocated (var.template_id).

variable "template_id" {
  type        = number
  description = "VMID of the new template, allocated by the pipeline."
}

variable "base_template_id" {
  type        = number
  default     = 9000
  description = "The template the golden image is cloned from."
}

variable "template_name" {
  type    = string
  default = "lab-golden"
}

variable "lab_dir" {
  type        = string
  description = "The lab environment's state directory, where the lab records what it received."
}

# Declared sensitive, so the pipeline passes it as PKR_VAR_build_salt (never on a command line) and masks it.
variable "build_salt" {
  type        = string
  default     = ""
  sensitive   = true
  description = "A secret the image is built with; the lab keeps only its sha256."
}

source "null" "lab" {
  communicator = "none"
}

build {
  sources = ["source.null.lab"]

  provisioner "shell-local" {
    inline = [
      "pipeline-lab template-create --from ${var.base_template_id} --vmid ${var.template_id} --name ${var.template_name}-${var.template_id}",
      # Digests of the secrets it got: the salt through this script's text (Packer writes it to a private
      # file), never through a command line or environment_vars (which end up in /bin/sh -c's arguments).
      "BUILD_SALT='${replace(var.build_salt, "'", "'\\''")}' pipeline-lab received --dir '${var.lab_dir}' packer.build_salt=BUILD_SALT packer.env=LAB_BUILD_NOTE",
    ]
  }

  post-processor "manifest" {
    output = "manifest.json"
    custom_data = {
      template_id = "${var.template_id}"
    }
  }
}
