# The lab's VMs (main.tf, the same file as ../terraform/main.tf) with Terraform's state and lock in the same
# PostgreSQL as the pipeline's shared state. The pipeline passes the connection at `init` (host, port, database
# and user in a backend configuration file it removes afterwards, the password in the environment) and a schema
# of the environment's own; see docs/shared-state.md.

terraform {
  backend "pg" {}
}
