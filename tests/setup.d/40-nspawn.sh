#!/bin/sh
# The real-systemd harness (packaging/nspawn/): systemd-nspawn, debootstrap and nsenter on the
# host, plus the cached Debian 12 root (debootstrapped once, ~4 min; reused afterwards). Also
# systemd-analyze and systemd-socket-activate for `cargo test` (package systemd).
set -eu
missing=""
command -v systemd-nspawn >/dev/null 2>&1 || missing="$missing systemd-container"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v systemd-socket-activate >/dev/null 2>&1 || missing="$missing systemd"
command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"
command -v jq >/dev/null 2>&1 || missing="$missing jq"
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || echo "40-nspawn: apt-get update failed; trying the cached lists" >&2
    # shellcheck disable=SC2086
    if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        echo "40-nspawn: cannot install:$missing" >&2
        exit 1
    fi
fi
root=$(bash "$(dirname "$0")/../../packaging/nspawn/nspawn.sh" root) || {
    echo "40-nspawn: cannot build the Debian 12 root for systemd-nspawn" >&2
    exit 1
}
echo "40-nspawn: Debian 12 root at $root"
# The package system test's root: minbase and systemd only, so the package gets nothing it does
# not pull in itself (~2 min once, cached like the other).
minimal=$(bash "$(dirname "$0")/../../packaging/nspawn/nspawn.sh" minimal-root) || {
    echo "40-nspawn: cannot build the minimal Debian 12 root for systemd-nspawn" >&2
    exit 1
}
echo "40-nspawn: minimal Debian 12 root at $minimal"
