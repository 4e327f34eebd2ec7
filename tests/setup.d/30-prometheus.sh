#!/bin/sh
# Installs the Prometheus server and promtool (Debian package `prometheus`) for the metrics tests:
# `promtool check metrics|rules` and a real server scraping the runner on loopback.
set -eu
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "30-prometheus: apt-get update failed; trying the cached lists" >&2
# --no-install-recommends: the server binary and promtool are all the tests need; the package's
# postinst may try to start the service, which is harmless where there is no init.
if ! apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
    echo "30-prometheus: cannot install the Debian package prometheus" >&2
    exit 1
fi
# The tests start their own server on an ephemeral port; stop the packaged one if it was started.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi
command -v promtool >/dev/null 2>&1 || { echo "30-prometheus: promtool missing after install" >&2; exit 1; }
command -v prometheus >/dev/null 2>&1 || { echo "30-prometheus: prometheus missing after install" >&2; exit 1; }
