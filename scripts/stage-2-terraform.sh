#!/usr/bin/env bash
# Stage 2 alone: provision from TEMPLATE_ID (argument or environment variable), or from template_id.txt.
# Usage: scripts/stage-2-terraform.sh [TEMPLATE_ID]
set -euo pipefail
here="$(dirname "$0")"
template_id="${1:-${TEMPLATE_ID:-}}"
if [ -n "$template_id" ]; then
  exec "$here/../doitw" provision --template-id "$template_id"
fi
exec "$here/../doitw" provision
