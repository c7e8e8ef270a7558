#!/bin/bash
# The seed's scripts/stage-3-ansible.sh, with the seed's `sleep 30` (deploy-pipeline.sh waits that long
# between stage 2 and 3 instead of waiting for SSH) kept in front of it.
set -euo pipefail

INVENTORY=${1:-ansible_inventory.json}
sleep "${SEED_SLEEP:-30}"
cd "$LAB_ANSIBLE_DIR"
ansible-playbook -i "$INVENTORY" site.yml >/dev/null
echo "Configuration complete."
