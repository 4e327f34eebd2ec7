#!/bin/bash
# Builds the Debian package from this checkout: target/debian/act-runner_<version>_<arch>.deb
# (debian/ is the source of truth; dpkg-buildpackage + debhelper 13), then runs lintian on it,
# failing on any error or warning (a warning kept is overridden with its reason in
# debian/act-runner.lintian-overrides).
#
# Environment:
#   ACT_RUNNER_CARGO_PROFILE=dev     unoptimised binary, for tests of the packaging (default release);
#                                    no -dbgsym package, gzip instead of xz
#   ACT_RUNNER_BINARY=path           package this binary instead of building one (tests)
#   ACT_RUNNER_DEB_VERSION=0.1.0-2   build under another version (upgrade tests); the changelog
#                                    entry is added for the build only
# Needs: debhelper, dpkg-dev, fakeroot, help2man, lintian (tests/setup.d/45-deb.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-target}/debian
mkdir -p "$out"

# The saved changelog lives outside debian/: dh_clean deletes *.orig files there.
saved_changelog=
if [ -n "${ACT_RUNNER_DEB_VERSION:-}" ]; then
    saved_changelog=$(mktemp)
    cp debian/changelog "$saved_changelog"
    {
        printf 'act-runner (%s) unstable; urgency=medium\n\n  * Build %s.\n\n -- act-runner developers <act-runner@example.org>  %s\n\n' \
            "$ACT_RUNNER_DEB_VERSION" "$ACT_RUNNER_DEB_VERSION" "$(date -R)"
        cat "$saved_changelog"
    } >debian/changelog
fi
cleanup() {
    if [ -n "$saved_changelog" ]; then
        cp "$saved_changelog" debian/changelog
        rm -f "$saved_changelog"
    fi
}
trap cleanup EXIT

# dh points HOME at a scratch directory; keep cargo's registry and toolchain where they are, so
# the build reuses them (and the build cache) instead of downloading and compiling anew.
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}

# A dev build is for tests of the packaging: skip the (large, slow to compress) -dbgsym package.
if [ "${ACT_RUNNER_CARGO_PROFILE:-release}" = dev ]; then
    export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} noautodbgsym"
fi

version=$(dpkg-parsechangelog -SVersion)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
# -b: binary only; -us -uc: unsigned. The results land in the parent directory.
rm -f "$out/act-runner-dbgsym_${version}_${arch}.deb"
dpkg-buildpackage -b -us -uc >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; exit 1; }
built=()
for file in ../act-runner_"${version}"_"${arch}".deb ../act-runner-dbgsym_"${version}"_"${arch}".deb \
    ../act-runner_"${version}"_"${arch}".buildinfo ../act-runner_"${version}"_"${arch}".changes; do
    if [ -f "$file" ]; then
        mv -f "$file" "$out/"
        case $file in *.deb) built+=("$out/$(basename "$file")") ;; esac
    fi
done
deb="$out/act-runner_${version}_${arch}.deb"
# The package and, in a release build, its -dbgsym package.
lintian --fail-on error,warning --info "${built[@]}"
echo "$deb"
