#!/bin/bash
# System test of the Debian package in a clean Debian 12 root (the nspawn harness): install with
# apt, the user, directories, modes, man page and docs; the units enabled and the socket
# listening; the service held back until registered; remove keeps the config and registration,
# purge removes them and leaves no unit behind; an upgrade keeps the registration.
#
# Usage: packaging/deb-system-test.sh   (root; builds the package with ACT_RUNNER_CARGO_PROFILE,
# default dev for speed)
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/nspawn/lib.sh
export ACT_RUNNER_CARGO_PROFILE=${ACT_RUNNER_CARGO_PROFILE:-dev}

NAME=act-deb-test
n_passed=0
n_failed=0
pass() { echo "ok: $*"; n_passed=$((n_passed + 1)); }
fail() { echo "FAILED: $*"; n_failed=$((n_failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
inside() { nspawn_run "$NAME" "$@"; }
trap 'nspawn_stop "$NAME"' EXIT

first=$(packaging/build-deb.sh | tail -n1)
second=$(ACT_RUNNER_DEB_VERSION=0.1.0-2 packaging/build-deb.sh | tail -n1)
echo "built $first and $second"
contents=$(dpkg-deb -c "$first" | awk '{print $6}')
has() { echo "$contents" | grep -qx "$1"; }
for path in ./usr/bin/act_runner ./lib/systemd/system/act-runner.service \
    ./lib/systemd/system/act-runner-metrics.socket ./lib/systemd/system/act-runner@.service \
    ./usr/lib/sysusers.d/act-runner.conf ./usr/lib/tmpfiles.d/act-runner.conf \
    ./usr/share/man/man1/act_runner.1.gz ./usr/share/doc/act-runner/config.example.yaml.gz \
    ./usr/share/doc/act-runner/act-runner.rules.yml.gz ./usr/share/doc/act-runner/act-runner.grafana.json.gz; do
    check "the package ships $path" has "$path"
done
check "the config is a conffile" sh -c "dpkg-deb -e '$first' /tmp/act-deb-control && grep -qx /etc/act-runner/config.yaml /tmp/act-deb-control/conffiles"

nspawn_boot "$NAME"
nspawn_copy_in "$NAME" "$first" "/tmp/$(basename "$first")"
nspawn_copy_in "$NAME" "$second" "/tmp/$(basename "$second")"
inside apt-get update -qq >/dev/null 2>&1 || echo "apt-get update failed inside; installing from the cached lists"
# --no-install-recommends: Docker (recommended) is not needed to test the package itself.
check "apt install ./act-runner_*.deb resolves its dependencies and installs" \
    inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$first")"

groups=$(inside id -nG act-runner)
check "user act-runner exists and is in group docker ($groups)" sh -c "echo '$groups' | grep -qw docker"
check "/var/lib/act-runner 0750 act-runner:act-runner" [ "$(inside stat -c '%a %U:%G' /var/lib/act-runner)" = "750 act-runner:act-runner" ]
check "/etc/act-runner/config.yaml 0640 root:act-runner" [ "$(inside stat -c '%a %U:%G' /etc/act-runner/config.yaml)" = "640 root:act-runner" ]
check "the service and the socket are enabled" inside systemctl is-enabled --quiet act-runner.service act-runner-metrics.socket
check "the socket unit listens on 127.0.0.1:9101" inside sh -c 'systemctl is-active --quiet act-runner-metrics.socket && ss -ltn | grep -q "127.0.0.1:9101 "'
check "the service waits for a registration (condition unmet, not failed)" \
    [ "$(inside systemctl show -P ConditionResult act-runner.service)" = no ]
check "man act_runner is installed" inside test -s /usr/share/man/man1/act_runner.1.gz
exposure=$(inside systemd-analyze security act-runner.service | sed -n 's/.*Overall exposure level for act-runner.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security act-runner.service: exposure $exposure"
check "exposure $exposure is at most 3.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 3.0) }'

# A registration, as `act_runner register` run as the act-runner user would leave it.
inside runuser -u act-runner -- sh -c 'umask 077; echo "{}" >/var/lib/act-runner/.runner'
check "upgrade to 0.1.0-2 installs" inside env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$second")"
check "the upgrade keeps the registration" inside test -f /var/lib/act-runner/.runner
check "the installed version is 0.1.0-2" [ "$(inside dpkg-query -W -f '${Version}' act-runner)" = 0.1.0-2 ]

check "apt remove" inside env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq act-runner
check "remove keeps the config" inside test -f /etc/act-runner/config.yaml
check "remove keeps the registration" inside test -f /var/lib/act-runner/.runner
units_after_remove=$(inside sh -c 'ls /lib/systemd/system/act-runner* 2>/dev/null || true')
check "remove leaves no unit file ($units_after_remove)" [ -z "$units_after_remove" ]
check "apt purge" inside env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq act-runner
check "purge removes the config" inside test ! -e /etc/act-runner
check "purge removes the registration and state" inside test ! -e /var/lib/act-runner
leftover=$(inside sh -c 'systemctl daemon-reload; systemctl list-unit-files --no-legend "act-runner*" 2>/dev/null; ls /etc/systemd/system/*.wants/ 2>/dev/null | grep act-runner || true')
check "no unit is left behind after purge (${leftover:-none})" [ -z "$leftover" ]

echo "$n_passed passed, $n_failed failed"
[ "$n_failed" -eq 0 ]
