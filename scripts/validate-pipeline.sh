#!/usr/bin/env bash
# Every check of the pipeline (`doit validate`): exit 0 only when all pass.
# Usage: scripts/validate-pipeline.sh [--check ID ...] [--list]
set -euo pipefail
exec "$(dirname "$0")/../doitw" validate "$@"
