#!/bin/sh
# Tools to build and check the Debian package (packaging/build-deb.sh): debhelper, dpkg-dev,
# fakeroot, help2man (the man page from the CLI's --help) and lintian.
set -eu
missing=""
for tool in dh:debhelper dpkg-buildpackage:dpkg-dev fakeroot:fakeroot help2man:help2man lintian:lintian; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
[ -z "$missing" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "45-deb: apt-get update failed; trying the cached lists" >&2
# shellcheck disable=SC2086
if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
    echo "45-deb: cannot install:$missing" >&2
    exit 1
fi
