#!/usr/bin/env bash
# Stage 1 alone: build the golden template and write its id to template_id.txt (`doit build`).
# Usage: scripts/stage-1-packer.sh [--rebuild]
set -euo pipefail
exec "$(dirname "$0")/../doitw" build "$@"
