"""The embedded local lab (proxpipe.lab): a stand-in for the Proxmox VE API and one sshd per VM, on loopback.

Its Packer, Terraform and Ansible projects ship as package data; `proxpipe init --example lab` copies them.
"""

# The lab's own project files, relative to this package (keep equal to pyproject's package-data for proxpipe.lab).
PROJECT_FILES = ("packer/*.hcl", "terraform/*.tf", "terraform/.terraform.lock.hcl", "terraform-shared/*.tf",
                 "ansible/*.cfg", "ansible/*.yml", "ansible/**/*.yml", "ansible/**/*.j2", "galaxy/*.tar.gz")
