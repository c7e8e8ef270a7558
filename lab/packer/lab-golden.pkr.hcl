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

source "null" "lab" {
  communicator = "none"
}

build {
  sources = ["source.null.lab"]

  provisioner "shell-local" {
    inline = [
      "pipeline-lab template-create --from ${var.base_template_id} --vmid ${var.template_id} --name ${var.template_name}-${var.template_id}",
    ]
  }

  post-processor "manifest" {
    output = "manifest.json"
    custom_data = {
      template_id = "${var.template_id}"
    }
  }
}
