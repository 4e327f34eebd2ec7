#!/bin/sh
# Fuzzes the daemon's way from a fetched task to a job (poller, task conversion, execution,
# reporter) for 60 seconds with cargo-fuzz: every task, whatever its payload or message, must end
# with a reported result, its admission slot free and its spool gone (issue 22). Fails when
# libFuzzer finds a crash, a panic, a held slot or a hang; the input is left under
# tests/fuzz/artifacts/task/. FUZZ_SECONDS overrides the duration.
set -eu
cd "$(dirname "$0")/../.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
# cargo-fuzz passes nightly-only flags; this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# The target builds the whole crate: start from the product's versions of its dependencies (the
# fuzz package's lock is not committed; cargo adds libFuzzer's to this copy).
cp Cargo.lock tests/fuzz/Cargo.lock
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
# No sanitizer: the crate forbids unsafe code and this target looks for panics and held slots;
# an AddressSanitizer build of all of it (tonic, bollard, aws-lc) would cost CI many minutes more.
cargo fuzz run --fuzz-dir tests/fuzz --features daemon --sanitizer none task \
    "$corpus" tests/fuzz/seeds/task -- \
    -max_total_time="${FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048
