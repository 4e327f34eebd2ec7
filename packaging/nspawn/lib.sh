# shellcheck shell=bash
# A real-systemd harness: a cached Debian 12 root booted with systemd-nspawn.
#
# Source this file, then:
#   nspawn_base_root              path of the cached root (debootstrapped on first use, ~1 min)
#   nspawn_minimal_root           path of a second cached root with nothing but minbase, systemd
#                                 (to boot) and the package's own Depends: (debian/control): a
#                                 package tested there gets only what it pulls in
#   NSPAWN_ROOT=DIR               boot DIR instead of the base root
#   nspawn_boot NAME [ARGS...]    boot a throw-away container (tmpfs overlay over the cached root;
#                                 host network, so it reaches the host's loopback); ARGS go to nspawn
#   nspawn_run NAME CMD...        run CMD inside (clean environment, root); exit status is CMD's
#   nspawn_sh NAME SCRIPT         run a shell script inside
#   nspawn_copy_in NAME SRC DST [MODE]   copy a host file into the container
#   nspawn_install_runner NAME BINARY [UNIT_DIR]
#                                 install act_runner and the units of systemd/, create the
#                                 act-runner user, daemon-reload
#   nspawn_stop NAME              power the container off (bounded), remove its state
#   nspawn_hold_host_port PORT    take this shell's lock on the host's PORT (containers share the
#                                 host's network, so two tests serving 127.0.0.1:9101 collide);
#                                 waits up to 10 min for another holder, held until the shell exits
#
# The host needs systemd-container and debootstrap (tests/setup.d/40-nspawn.sh installs them).
# Nothing here needs systemd as the host's PID 1: containers are not registered with machined,
# commands enter them with nsenter.

NSPAWN_CACHE=${NSPAWN_CACHE:-/var/cache/act-runner-nspawn}
NSPAWN_STATE=${NSPAWN_STATE:-/run/act-runner-nspawn}
NSPAWN_SUITE=bookworm
NSPAWN_MIRROR=${NSPAWN_MIRROR:-http://deb.debian.org/debian}
# What the tests use inside: systemd itself, D-Bus and logind, polkitd (logind grants a
# non-root service's delay inhibitor only through polkit), curl for scrapes, jq for
# `journalctl -o json`, iproute2 for ss.
NSPAWN_PACKAGES=systemd,systemd-sysv,dbus,libpam-systemd,polkitd,curl,ca-certificates,iproute2,procps,jq
# The minimal root: an init to boot with, nothing else (no procps, no D-Bus, no curl).
NSPAWN_MINIMAL_PACKAGES=systemd,systemd-sysv
NSPAWN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

nspawn__log() { echo "nspawn: $*" >&2; }

nspawn_base_root() { nspawn__root "$NSPAWN_PACKAGES"; }
nspawn_minimal_root() {
    local depends
    depends=$(nspawn__package_depends) || return 1
    nspawn__root "$NSPAWN_MINIMAL_PACKAGES${depends:+,$depends}"
}

# The packages debian/control's Depends: names (the first of alternatives, no versions); the
# substitution variables are left out: ${shlibs:Depends} is in minbase, ${misc:Depends} is systemd.
# The root has no package lists, so the package installs there only if these are its Depends.
nspawn__package_depends() {
    local control
    control="$(dirname "${BASH_SOURCE[0]}")/../../debian/control"
    sed -n '/^Package: act-runner$/,/^$/s/^Depends: //p' "$control" | tr ',' '\n' |
        sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep -v -e '^$' -e '^\$' | paste -sd, -
}

# nspawn__root PACKAGES: the cached minbase root with PACKAGES, keyed by suite and packages.
nspawn__root() {
    local packages=$1 key dir
    key=$(printf '%s %s' "$NSPAWN_SUITE" "$packages" | sha256sum | cut -c1-12)
    dir="$NSPAWN_CACHE/$NSPAWN_SUITE-$key"
    if [ ! -x "$dir/usr/lib/systemd/systemd" ]; then
        mkdir -p "$NSPAWN_CACHE"
        (
            flock 9
            if [ ! -x "$dir/usr/lib/systemd/systemd" ]; then
                nspawn__log "debootstrapping $NSPAWN_SUITE into $dir (cached for later runs)"
                rm -rf "$dir.tmp"
                debootstrap --variant=minbase --include="$packages" \
                    "$NSPAWN_SUITE" "$dir.tmp" "$NSPAWN_MIRROR" >"$NSPAWN_CACHE/debootstrap.log" 2>&1 ||
                    { nspawn__log "debootstrap failed, see $NSPAWN_CACHE/debootstrap.log"; exit 1; }
                # No getty on the console: nothing reads it.
                rm -f "$dir.tmp/etc/systemd/system/getty.target.wants/"*
                mv "$dir.tmp" "$dir"
            fi
        ) 9>"$NSPAWN_CACHE/.lock" || return 1
    fi
    echo "$dir"
}

# The container's PID 1 (systemd) as the host sees it.
nspawn_leader() {
    local name=$1 pid child
    pid=$(cat "$NSPAWN_STATE/$name.pid" 2>/dev/null) || return 1
    for _ in 1 2 3 4; do
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] && { echo "$pid"; return 0; }
        child=$(ps -o pid= --ppid "$pid" | head -n1 | tr -d ' ')
        [ -n "$child" ] || return 1
        pid=$child
    done
    return 1
}

nspawn_boot() {
    local name=$1 root leader state
    shift
    root=${NSPAWN_ROOT:-$(nspawn_base_root)} || return 1
    mkdir -p "$NSPAWN_STATE"
    if [ -f "$NSPAWN_STATE/$name.pid" ]; then
        nspawn_stop "$name"
    fi
    # --volatile=overlay: a tmpfs upper layer over the cached root, so every boot starts clean and
    # the cache is never written. --register=no/--keep-unit: no machined on this host. The unified
    # cgroup hierarchy, as Debian 12 boots with, even on a host with hybrid cgroups.
    SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=${SYSTEMD_NSPAWN_UNIFIED_HIERARCHY:-1} setsid systemd-nspawn --quiet --directory="$root" --boot --volatile=overlay \
        --machine="$name" --register=no --keep-unit --console=passive "$@" \
        >"$NSPAWN_STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$NSPAWN_STATE/$name.pid"
    for _ in $(seq 1 300); do
        if leader=$(nspawn_leader "$name"); then
            state=$(nspawn_run "$name" systemctl is-system-running 2>/dev/null) || true
            case $state in
                running | degraded) return 0 ;;
            esac
        fi
        if ! kill -0 "$(cat "$NSPAWN_STATE/$name.pid")" 2>/dev/null; then
            nspawn__log "container $name died while booting:"
            cat "$NSPAWN_STATE/$name.log" >&2
            return 1
        fi
        sleep 0.2
    done
    nspawn__log "container $name did not finish booting within 60 s (state: ${state:-unknown})"
    return 1
}

nspawn_run() {
    local name=$1 leader
    shift
    leader=$(nspawn_leader "$name") || { nspawn__log "container $name is not running"; return 125; }
    nsenter --target "$leader" --mount --uts --ipc --net --pid --root --wdns=/ -- \
        env -i PATH="$NSPAWN_PATH" TERM=dumb LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

nspawn_sh() {
    local name=$1
    shift
    nspawn_run "$name" sh -ec "$*"
}

nspawn_copy_in() {
    local name=$1 src=$2 dst=$3 mode=${4:-0644}
    nspawn_run "$name" sh -ec 'mkdir -p "$(dirname "$1")"; cat >"$1"; chmod "$2" "$1"' sh "$dst" "$mode" <"$src"
}

nspawn_install_runner() {
    local name=$1 binary=$2 units=${3:-$(dirname "${BASH_SOURCE[0]}")/../../systemd} unit
    nspawn_copy_in "$name" "$binary" /usr/bin/act_runner 0755
    for unit in "$units"/*.service "$units"/*.socket; do
        nspawn_copy_in "$name" "$unit" "/etc/systemd/system/$(basename "$unit")" 0644
    done
    nspawn_sh "$name" '
        getent group docker >/dev/null || groupadd --system docker
        getent passwd act-runner >/dev/null || useradd --system --user-group --home-dir /var/lib/act-runner --shell /usr/sbin/nologin act-runner
        install -d -o root -g act-runner -m 0750 /etc/act-runner
        systemctl daemon-reload'
}

nspawn_stop() {
    local name=$1 pid
    pid=$(cat "$NSPAWN_STATE/$name.pid" 2>/dev/null) || return 0
    if kill -0 "$pid" 2>/dev/null; then
        # SIGTERM makes nspawn power the container off cleanly.
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            nspawn__log "container $name did not power off within 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
        fi
    fi
    rm -f "$NSPAWN_STATE/$name.pid"
}

nspawn_hold_host_port() {
    local port=$1 fd
    mkdir -p "$NSPAWN_STATE"
    exec {fd}>>"$NSPAWN_STATE/port-$port.lock"
    flock -w 600 "$fd" || { nspawn__log "the host's port $port is still held by another test after 10 min"; return 1; }
}
