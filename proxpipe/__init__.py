"""proxpipe: a Make-like Packer -> Terraform/OpenTofu -> Ansible pipeline for Proxmox VE, on doit."""

__version__ = "0.1.0"
