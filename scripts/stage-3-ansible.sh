#!/usr/bin/env bash
# Stage 3 alone: configure the hosts of INVENTORY (argument), or of the provision stage's ansible_inventory.json.
# Usage: scripts/stage-3-ansible.sh [INVENTORY]
set -euo pipefail
here="$(dirname "$0")"
if [ -n "${1:-}" ]; then
  inventory="$(realpath -m -- "$1")"  # doitw runs from the repository root
  exec "$here/../doitw" configure --inventory "$inventory"
fi
exec "$here/../doitw" configure
