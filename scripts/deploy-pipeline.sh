#!/usr/bin/env bash
# Stage 1 -> 2 -> 3, running only the stale stages: `doit deploy`. The environment is PIPELINE_ENV (default: lab).
# Usage: scripts/deploy-pipeline.sh [doit options]
set -euo pipefail
exec "$(dirname "$0")/../doitw" deploy "$@"
