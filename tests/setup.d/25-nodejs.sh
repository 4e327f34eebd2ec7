#!/bin/sh
# Installs `node` (Debian package `nodejs`) for the cache end-to-end tests: host-mode jobs run the
# real actions/cache (a node action) with the node on PATH.
set -eu
if command -v node >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "25-nodejs: apt-get update failed; trying the cached lists" >&2
if ! apt-get install -y -qq --no-install-recommends nodejs >/dev/null; then
    echo "25-nodejs: cannot install the Debian package nodejs" >&2
    exit 1
fi
command -v node >/dev/null 2>&1 || { echo "25-nodejs: node missing after install" >&2; exit 1; }
