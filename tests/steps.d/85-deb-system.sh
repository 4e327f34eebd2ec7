#!/bin/sh
# The Debian package (about 1 to 2 min): built by packaging/build-deb.sh from the binary the tests
# built (lintian: no error, no unoverridden warning), then the README's packaged flow in one booted
# Debian 12 root (packaging/deb-system-test.sh): install, register against the fake Gitea, start,
# metrics through the socket, a host task and a docker task, restarts under a scrape loop,
# upgrade, remove, purge.
set -eu
exec bash "$(dirname "$0")/../../packaging/deb-system-test.sh"
