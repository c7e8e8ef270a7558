#!/bin/bash
# The seed's scripts/stage-2-terraform.sh, reproduced on the lab for the benchmark. Kept as in the seed:
# the mandatory lint gate before apply (the lab's gate: terraform fmt and validate, as tflint has no
# package here), `terraform apply -var template_id=...`, and `terraform output -json ansible_inventory`.
# Fixed so that it can work at all: the output of a jsonencode() is a JSON string, decoded here once.
set -euo pipefail

TEMPLATE_ID=${1:-9100}
cd "$LAB_TERRAFORM_DIR"

terraform fmt -check >/dev/null || exit 1
terraform validate -no-color >/dev/null || exit 1

terraform apply -input=false -no-color -auto-approve -var-file="$LAB_VARS_FILE" -var="template_id=${TEMPLATE_ID}" >/dev/null
terraform output -json ansible_inventory \
  | python3 -c 'import json, sys; print(json.loads(json.load(sys.stdin)))' > "$LAB_INVENTORY"
echo "Infrastructure provisioned. Inventory at: $LAB_INVENTORY"
