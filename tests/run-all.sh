#!/usr/bin/env bash
# The one test command (README "Testing"): prerequisites, the cargo tests, then long test steps.
#
#   1. every executable tests/setup.d/*.sh, in name order (install packages, build test images);
#   2. cargo test --all-targets --locked;
#   3. every executable tests/steps.d/*.sh, in name order (system tests, fuzz runs, benchmarks).
#
# Stops at the first failure and says which step failed. `CI` is passed through untouched:
# when it is set, tests whose prerequisite (Docker, systemd-nspawn) is missing fail instead of
# skipping.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

run_dir() {
    local dir="$1" script
    [ -d "$dir" ] || return 0
    for script in "$dir"/*.sh; do
        [ -e "$script" ] || continue
        if [ ! -x "$script" ]; then
            echo "run-all: skipping $script (not executable)" >&2
            continue
        fi
        echo "run-all: ==> $script" >&2
        if ! "$script"; then
            echo "run-all: FAILED: $script" >&2
            exit 1
        fi
    done
}

run_dir tests/setup.d

echo "run-all: ==> cargo test --all-targets --locked" >&2
if ! cargo test --all-targets --locked; then
    echo "run-all: FAILED: cargo test" >&2
    exit 1
fi

run_dir tests/steps.d

echo "run-all: all tests passed" >&2
