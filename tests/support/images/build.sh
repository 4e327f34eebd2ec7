#!/usr/bin/env bash
# Builds the Docker images the tests use, without any registry:
#   act-runner-test/debian:12  Debian 12 (debootstrap + docker import) with bash, git, nodejs, python3,
#                              ca-certificates, coreutils, procps
#   act-runner-test/busybox    a busybox-static root filesystem, imported
# Each image carries the label `act-runner-test.input-hash`: a hash of this script and the mirror it
# uses. When an image with the current hash exists the build is skipped, so reruns cost one
# `docker image inspect`. The debootstrap tarball is cached under $ACT_RUNNER_TEST_IMAGES_CACHE
# (default ~/.cache/act-runner-test-images) so a rebuild after `docker rmi` needs no network.
set -euo pipefail

cache_dir="${ACT_RUNNER_TEST_IMAGES_CACHE:-$HOME/.cache/act-runner-test-images}"
debian_image="act-runner-test/debian:12"
busybox_image="act-runner-test/busybox:latest"
debian_packages="bash,git,nodejs,python3,ca-certificates,coreutils,procps"
hash_label="act-runner-test.input-hash"

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "docker daemon not reachable"

# The Debian mirror reachable here: the first non-security Debian URI in the apt sources.
debian_mirror() {
    local uri
    uri=$(grep -rhoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+' \
            /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
        | grep -oE '[a-z]+://[^[:space:]]+' | grep -E '/debian/?$' | grep -v security | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

mirror=$(debian_mirror)
input_hash=$( { cat "${BASH_SOURCE[0]}"; echo "$mirror"; } | sha256sum | cut -c1-16)

image_hash() {
    docker image inspect --format "{{ index .Config.Labels \"$hash_label\" }}" "$1" 2>/dev/null || true
}

apt_install() {
    local pkg=$1
    dpkg -s "$pkg" >/dev/null 2>&1 && return 0
    log "installing $pkg"
    apt-get install -y -q "$pkg" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$pkg" >/dev/null; } \
        || die "cannot install $pkg"
}

mkdir -p "$cache_dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/act-runner-images.XXXXXX")
trap 'rm -rf "$work"' EXIT

build_debian() {
    if [[ "$(image_hash "$debian_image")" == "$input_hash" ]]; then
        log "$debian_image is up to date ($input_hash)"
        return
    fi
    local tarball="$cache_dir/debian-12-$input_hash.tar"
    if [[ ! -s "$tarball" ]]; then
        apt_install debootstrap
        log "debootstrap bookworm from $mirror (a few minutes)"
        local rootfs="$work/debian"
        debootstrap --variant=minbase --include="$debian_packages" bookworm "$rootfs" "$mirror" \
            >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    log "importing $debian_image"
    docker import \
        --change "LABEL $hash_label=$input_hash" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$tarball" "$debian_image" >/dev/null
}

build_busybox() {
    if [[ "$(image_hash "$busybox_image")" == "$input_hash" ]]; then
        log "$busybox_image is up to date ($input_hash)"
        return
    fi
    local deb
    deb=$(ls "$cache_dir"/busybox-static_*.deb 2>/dev/null | head -n1 || true)
    if [[ -z "$deb" ]]; then
        log "downloading busybox-static"
        (cd "$cache_dir" && apt-get download busybox-static >/dev/null 2>&1) \
            || { apt-get update -q >/dev/null && (cd "$cache_dir" && apt-get download busybox-static >/dev/null); } \
            || die "cannot download busybox-static"
        deb=$(ls "$cache_dir"/busybox-static_*.deb | head -n1)
    fi
    local pkg="$work/busybox-pkg" rootfs="$work/busybox"
    dpkg-deb -x "$deb" "$pkg"
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,var/run,proc,sys,dev}
    chmod 1777 "$rootfs/tmp"
    cp "$pkg/bin/busybox" "$rootfs/bin/busybox"
    local applet
    for applet in $("$rootfs/bin/busybox" --list); do
        [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    log "importing $busybox_image"
    tar -C "$rootfs" --numeric-owner -c . | docker import \
        --change "LABEL $hash_label=$input_hash" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["sh"]' \
        - "$busybox_image" >/dev/null
}

build_busybox
build_debian
log "images ready: $debian_image $busybox_image"
