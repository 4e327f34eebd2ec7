#!/usr/bin/env bash
# Builds the local Docker test images (no registry is reachable); fast when they are up to date.
set -euo pipefail
exec "$(dirname "$0")/../support/images/build.sh"
