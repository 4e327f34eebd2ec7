#!/bin/sh
# Fuzzes the workflow parser (YAML to model, action.yml, embedded expressions, matrix expansion) for
# 60 seconds with cargo-fuzz; fails when libFuzzer finds a crash, a panic or a hang. The crashing
# input is left under tests/fuzz/artifacts/workflow/. FUZZ_SECONDS overrides the duration.
set -eu
cd "$(dirname "$0")/../.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# New corpus entries go to a scratch directory; the committed seeds are only read.
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cargo fuzz run --fuzz-dir tests/fuzz workflow "$corpus" tests/fuzz/seeds/workflow -- \
    -max_total_time="${FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048
