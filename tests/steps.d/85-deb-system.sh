#!/bin/sh
# The Debian package: built by packaging/build-deb.sh (lintian: no errors), then installed,
# upgraded, removed and purged in a clean Debian 12 root (packaging/deb-system-test.sh).
set -eu
exec bash "$(dirname "$0")/../../packaging/deb-system-test.sh"
