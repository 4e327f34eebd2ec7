#!/bin/bash
# System test of the Debian package in a minimal Debian 12 root (the nspawn harness's
# `nspawn_minimal_root`: debootstrap --variant=minbase plus systemd to boot, nothing else, so the
# package has only what it pulls in), one booted machine for the whole flow of the README: apt
# install (user, directories, modes, man page, completions, docs, units enabled, socket
# listening, service held back until registered), then with the fake Gitea on the host's
# loopback (the machine shares the host's network; scrapes and queries run on the host) register
# as the act-runner user from / (the packaged config names the registration file), start (READY,
# idle StatusText), scrape /metrics through act-runner-metrics.socket, run a task on the host
# backend and one on the docker backend (the host's engine socket bound in), find the task's
# fields in the journal, reload, a stop that sticks (the socket goes down with it, no scrape
# starts the runner again) and a start that brings both back, restart while a client scrapes in
# a loop (no scrape lost), a second runner through act-runner@b2 set up as the README says (a
# host task and a docker task, its paths under /var/lib/act-runner/b2), upgrade (the service
# restarts, the registration stays), remove (config and registration stay), purge (they go, no
# unit left behind).
#
# Usage: packaging/deb-system-test.sh   (root; needs the host's Docker engine with the image
# act-runner-test/debian:12, tests/setup.d/20-docker-images.sh builds it). Builds the package
# from the binary the other tests built (ACT_RUNNER_BINARY, debug profile).
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/nspawn/lib.sh

NAME=act-deb-test
IMAGE=act-runner-test/debian:12
TOKEN=deb-test-registration-token
DOCKER_SOCKET=$(realpath /var/run/docker.sock 2>/dev/null || echo /var/run/docker.sock)
t0=$(date +%s)
n_passed=0
n_failed=0
pass() { echo "ok: $*"; n_passed=$((n_passed + 1)); }
fail() { echo "FAILED: $*"; n_failed=$((n_failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
# need WHAT COMMAND...: a prerequisite of everything after it; stops the test when unmet.
need() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; exit 1; fi; }
contains() { grep -q -- "$2" <<<"$1"; }
inside() { nspawn_run "$NAME" "$@"; }
# The machine shares the host's network: scrapes run on the host (the root has no curl).
scrape() { curl -sS --max-time 10 http://127.0.0.1:9101/metrics; }
show() { inside systemctl show -P "$2" "$1"; }
apt_inside() { inside env DEBIAN_FRONTEND=noninteractive apt-get "$@" -y -qq -o=Dpkg::Use-Pty=0; }
# wait_until SECONDS COMMAND...: polls COMMAND (5 times a second) until it succeeds.
wait_until() {
    local seconds=$1
    shift
    for _ in $(seq 1 $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

work=$(mktemp -d)
gitea_pid=
on_exit() {
    local status=$?
    if [ "$status" -ne 0 ] || [ "$n_failed" -ne 0 ]; then
        echo "---- journal of act-runner (last 60 entries)"
        inside journalctl -u act-runner.service -u act-runner-metrics.socket -u act-runner@b2.service \
            -n 60 --no-pager 2>&1 || true
        echo "---- fake Gitea log (last 20 lines)"
        tail -n 20 "$work/gitea.log" 2>/dev/null || true
    fi
    [ -n "$gitea_pid" ] && kill "$gitea_pid" 2>/dev/null
    nspawn_stop "$NAME"
    rm -rf "$work"
    echo "deb system test: $(($(date +%s) - t0))s"
}
trap on_exit EXIT

# --- prerequisites on the host: the engine with the job image, and the metrics port free (the
# machine shares the host's network, so 127.0.0.1:9101 is the host's; the systemd system test
# binds it too).
need "the host's Docker engine answers at $DOCKER_SOCKET" docker info --format '{{.ServerVersion}}'
need "the host has the image $IMAGE" docker image inspect --format '{{.Id}}' "$IMAGE"
nspawn_hold_host_port 9101
port_free() { ! ss -Hltn 'sport = :9101' | grep -q .; }
need "127.0.0.1:9101 is free on the host" wait_until 120 port_free

# --- build: the package (lintian inside build-deb.sh), and the next version by repacking it
cargo build --quiet --locked --bin act_runner --example fake-gitea
target=${CARGO_TARGET_DIR:-target}
first=$(ACT_RUNNER_CARGO_PROFILE=dev ACT_RUNNER_BINARY="$target/debug/act_runner" packaging/build-deb.sh | tail -n1)
pass "packaging/build-deb.sh built $first; lintian: no error, no warning that is not overridden"
# The upgrade's "new" build: the same files under version 0.1.0-2 (the maintainer scripts of an
# upgrade are what is tested, and a second dpkg-buildpackage costs a minute and a half).
dpkg-deb -R "$first" "$work/next"
sed -i 's/^Version: .*/Version: 0.1.0-2/' "$work/next/DEBIAN/control"
second=$work/act-runner_0.1.0-2.deb
dpkg-deb -Zgzip -z1 --build "$work/next" "$second" >/dev/null
overrides_have_reasons() {
    awk '/^[^#]/ && prev !~ /^#/ { print "no reason above: " $0; bad = 1 } { prev = $0 } END { exit bad }' \
        debian/act-runner.lintian-overrides
}
check "every lintian override has its reason" overrides_have_reasons

contents=$(dpkg-deb -c "$first" | awk '{print $6}')
has() { echo "$contents" | grep -qx "$1"; }
for path in ./usr/bin/act_runner ./lib/systemd/system/act-runner.service \
    ./lib/systemd/system/act-runner-metrics.socket ./lib/systemd/system/act-runner@.service \
    ./usr/lib/sysusers.d/act-runner.conf ./usr/lib/tmpfiles.d/act-runner.conf \
    ./usr/share/man/man1/act_runner.1.gz ./usr/share/doc/act-runner/config.example.yaml.gz \
    ./usr/share/doc/act-runner/act-runner.rules.yml.gz ./usr/share/doc/act-runner/act-runner.grafana.json.gz \
    ./usr/share/bash-completion/completions/act_runner ./usr/share/zsh/vendor-completions/_act_runner \
    ./usr/share/fish/vendor_completions.d/act_runner.fish; do
    check "the package ships $path" has "$path"
done
dpkg-deb -e "$first" "$work/control"
check "the config is a conffile" grep -qx /etc/act-runner/config.yaml "$work/control/conffiles"

# --- the fake Gitea on the host's loopback (a free port, read back from its first line)
"$target/debug/examples/fake-gitea" --listen 127.0.0.1:0 --registration-token "$TOKEN" \
    >"$work/gitea.log" 2>&1 &
gitea_pid=$!
gitea_url() { sed -n 's/^connect: //p' "$work/gitea.log" | grep .; }
need "the fake Gitea is up" wait_until 30 gitea_url
url=$(gitea_url)

# --- one machine for everything below, booted from the minimal root, with the host's engine
# socket bound in
NSPAWN_ROOT=$(nspawn_minimal_root)
export NSPAWN_ROOT
nspawn_boot "$NAME" --bind="$DOCKER_SOCKET:/run/docker.sock"
for tool in /bin/kill /usr/bin/curl /usr/bin/dbus-daemon; do
    need "the root is minimal: no $tool" inside test ! -e "$tool"
done
need "the machine shares the host's network namespace" \
    [ "$(readlink "/proc/$(nspawn_leader "$NAME")/ns/net")" = "$(readlink /proc/self/ns/net)" ]
need "the fake Gitea answers on the loopback the machine shares ($url)" \
    curl -sf --max-time 10 -o /dev/null "$url/_fake/runners"
# As on a host where Docker was installed first: group docker owns the engine's socket (its gid
# is the host's, the machine shares the host's user ids).
docker_gid=$(stat -c %g "$DOCKER_SOCKET")
need "group docker (gid $docker_gid, the socket's) is created" inside groupadd --system --gid "$docker_gid" docker
nspawn_copy_in "$NAME" "$first" "/tmp/$(basename "$first")"
nspawn_copy_in "$NAME" "$second" "/tmp/$(basename "$second")"
# No `apt-get update`: the root has no package lists, so the package installs only if every
# dependency is already there (minbase and systemd). Docker (recommended) is the host's engine
# here, so recommends are not installed.
need "apt install ./$(basename "$first") resolves its dependencies and installs" \
    apt_inside install --no-install-recommends "/tmp/$(basename "$first")"

groups=$(inside id -nG act-runner)
check "user act-runner exists and is in group docker ($groups)" sh -c "echo '$groups' | grep -qw docker"
check "/var/lib/act-runner 0750 act-runner:act-runner" [ "$(inside stat -c '%a %U:%G' /var/lib/act-runner)" = "750 act-runner:act-runner" ]
check "/etc/act-runner/config.yaml 0640 root:act-runner" [ "$(inside stat -c '%a %U:%G' /etc/act-runner/config.yaml)" = "640 root:act-runner" ]
check "the service and the socket are enabled" inside systemctl is-enabled --quiet act-runner.service act-runner-metrics.socket
# A prerequisite of the checks below: another test holding the host's 127.0.0.1:9101 (the machine
# shares the host's network) would answer the scrapes instead.
socket_listens() {
    inside systemctl is-active --quiet act-runner-metrics.socket && ss -Hltn 'sport = :9101' | grep -q '127.0.0.1:9101 '
}
need "the socket unit listens on 127.0.0.1:9101" socket_listens
check "the service waits for a registration (condition unmet, not failed)" \
    [ "$(show act-runner.service ConditionResult)" = no ]
check "man act_runner is installed" inside test -s /usr/share/man/man1/act_runner.1.gz
completion=$(inside bash -c '. /usr/share/bash-completion/completions/act_runner && complete -p act_runner' 2>&1 || true)
check "bash completion: sourcing it gives '$completion'" [ "$completion" = "complete -o bashdefault -o default -o nosort -F _act_runner act_runner" ]
words=$(inside bash -c '. /usr/share/bash-completion/completions/act_runner
    COMP_WORDS=(act_runner reg); COMP_CWORD=1; _act_runner act_runner reg act_runner; echo "${COMPREPLY[*]}"' 2>&1 || true)
check "bash completion: 'act_runner reg<TAB>' completes to '$words'" [ "$words" = register ]
exposure=$(inside systemd-analyze security act-runner.service | sed -n 's/.*Overall exposure level for act-runner.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security act-runner.service: exposure $exposure"
check "exposure $exposure is at most 3.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 3.0) }'

# --- register as the service user (the README's command), from a directory it cannot write: the
# packaged config names /var/lib/act-runner/.runner
labels="deb-host:host,deb-docker:docker://$IMAGE"
need "act_runner register as act-runner, from /" inside runuser -u act-runner -- sh -c "cd / &&
    act_runner register --no-interactive --config /etc/act-runner/config.yaml --instance '$url' \
        --token '$TOKEN' --name deb-test --labels '$labels'"
check ".runner is the service user's, readable by it only" \
    [ "$(inside stat -c '%U:%G %a' /var/lib/act-runner/.runner)" = "act-runner:act-runner 600" ]
registration=$(inside cat /var/lib/act-runner/.runner | sha256sum)

# --- start: Type=notify, so `systemctl start` returns once READY=1 arrived
need "systemctl start act-runner" inside systemctl start act-runner.service
check "active (READY=1 reached systemd), NotifyAccess=main" \
    [ "$(show act-runner.service ActiveState)/$(show act-runner.service NotifyAccess)" = active/main ]
idle() { [ "$(show act-runner.service StatusText)" = "idle 0/1" ]; }
check "StatusText: idle 0/1" wait_until 10 idle
metrics=$(scrape || true)
check "GET 127.0.0.1:9101/metrics answers act_runner_* metrics" contains "$metrics" '^act_runner_capacity 1'

# The shipped config leaves metrics.enabled off: the daemon serves only what systemd handed it.
# (Seen from the host: the machine's PID 1 has the host's PID of its leader.)
listeners=$(ss -Hltnp 'sport = :9101')
one_shared_listener() {
    [ "$(wc -l <<<"$listeners")" = 1 ] && contains "$listeners" "\"systemd\",pid=$(nspawn_leader "$NAME")," &&
        contains "$listeners" '"act_runner"'
}
check "the one listener on :9101 is the socket unit's, shared with act_runner ($listeners)" one_shared_listener

# --- a task on each backend
enqueue() { # enqueue LABEL WORKFLOW_YAML → task id
    curl -sf --max-time 10 --data-binary "$2" "$url/_fake/tasks?labels=$1" | jq -r .task_id
}
task_json() { curl -sf --max-time 10 "$url/_fake/tasks/$1"; }
final() { task_json "$1" | jq -e '.status | IN("success", "failure", "cancelled", "skipped")'; }
logs_of() { task_json "$1" | jq -r '.logs[].content'; }
host_task=$(enqueue deb-host 'on: push
jobs:
  build:
    runs-on: deb-host
    steps:
      - run: echo "host job as $(id -un) in $PWD"')
docker_task=$(enqueue deb-docker 'on: push
jobs:
  build:
    runs-on: deb-docker
    steps:
      - run: |
          echo "in container: $(test -f /.dockerenv && echo yes)"
          echo "debian $(cat /etc/debian_version)"')
wait_until 120 final "$host_task" || true
wait_until 180 final "$docker_task" || true
host_result=$(task_json "$host_task" | jq -r .status)
host_line=$(logs_of "$host_task" | grep '^host job as' || true)
host_ok() { [ "$host_result" = success ] && contains "$host_line" '^host job as act-runner in /var/lib/act-runner/'; }
check "host task $host_task: $host_result, '$host_line'" host_ok
docker_result=$(task_json "$docker_task" | jq -r .status)
docker_lines=$(logs_of "$docker_task" | grep -E '^(in container:|debian )' | paste -sd, || true)
docker_ok() { [ "$docker_result" = success ] && contains "$docker_lines" '^in container: yes,debian 12'; }
check "docker task $docker_task on the host's engine: $docker_result, '$docker_lines'" docker_ok
entry=$(inside journalctl -u act-runner.service "TASK_ID=$docker_task" -o json --no-pager | jq -c 'select(.MESSAGE == "task started")' | head -n1)
echo "journal entry: $(echo "$entry" | jq -c '{MESSAGE, TASK_ID, REPOSITORY, WORKFLOW, JOB, RUNNER_NAME, PRIORITY, SYSLOG_IDENTIFIER}')"
check "journalctl -u act-runner TASK_ID=$docker_task: the task's fields" \
    [ "$(echo "$entry" | jq -r '[.TASK_ID, .REPOSITORY, .WORKFLOW, .JOB, .RUNNER_NAME] | join(" ")')" = "$docker_task owner/repo ci.yml build deb-test" ]
n_host=$(inside journalctl -u act-runner.service "TASK_ID=$host_task" -o cat --no-pager | wc -l)
check "journalctl -u act-runner TASK_ID=$host_task: $n_host entries" [ "$n_host" -ge 2 ]
check "back to idle after both tasks" wait_until 10 idle

# --- reload: the unit's ExecReload= runs with nothing but the shell (no /bin/kill in this root)
reloads() { scrape | sed -n 's/^act_runner_config_reloads_total{result="success"} //p'; }
reloads_before=$(reloads)
check "systemctl reload act-runner" inside systemctl reload act-runner.service
reloaded() { [ "$(reloads)" = $((${reloads_before:-0} + 1)) ]; }
check "the reload reached the runner (config_reloads_total{result=success} ${reloads_before:-0} -> +1)" \
    wait_until 10 reloaded
check "still active after the reload" [ "$(show act-runner.service ActiveState)" = active ]

# --- a stop sticks: the socket goes down with the service, so no scrape starts it again; a start
# brings both back
check "systemctl stop act-runner" inside systemctl stop act-runner.service
socket_state=$(show act-runner-metrics.socket ActiveState)
check "the stop took the socket down too ($socket_state)" [ "$socket_state" = inactive ]
scrape_refused() { ! curl -s --max-time 5 -o /dev/null http://127.0.0.1:9101/metrics; }
check "a scrape after the stop is refused" scrape_refused
sleep 3
check "the runner stays stopped after a scrape" [ "$(show act-runner.service ActiveState)" = inactive ]
check "systemctl start act-runner" inside systemctl start act-runner.service
both_active() {
    [ "$(show act-runner.service ActiveState)/$(show act-runner-metrics.socket ActiveState)" = active/active ]
}
check "the start brought the service and the socket back" both_active
metrics=$(scrape || true)
check "scrapes are served again" contains "$metrics" '^act_runner_capacity 1'

# --- restart (3 times) while a client scrapes in a loop: connections wait in the socket's backlog. Each
# scrape is logged as "start_ns end_ns ok|lost", to count those that overlapped the restart.
(
    end=$(($(date +%s) + 60))
    while [ ! -e "$work/stop-scraping" ] && [ "$(date +%s)" -lt "$end" ]; do
        start=$(date +%s%N)
        if curl -sf --max-time 20 -o /dev/null http://127.0.0.1:9101/metrics; then r=ok; else r=lost; fi
        echo "$start $(date +%s%N) $r"
    done
) >"$work/scrapes" 2>&1 &
scraper=$!
sleep 1
pid_before=$(show act-runner.service MainPID)
for _ in 1 2 3; do
    restart_started=$(date +%s%N)
    inside systemctl restart act-runner.service
    restart_ended=$(date +%s%N)
    echo "$restart_started $restart_ended" >>"$work/restarts"
    sleep 0.5
done
touch "$work/stop-scraping"
wait "$scraper" || true
pid_after=$(show act-runner.service MainPID)
attempted=$(grep -c . "$work/scrapes" || true)
succeeded=$(grep -c ' ok$' "$work/scrapes" || true)
# Scrapes whose [start, end] overlaps one of the restarts' [start, end].
during=$(awk 'NR == FNR { s[NR] = $1; e[NR] = $2; n = NR; next }
    { for (i = 1; i <= n; i++) if ($1 < e[i] && $2 > s[i]) { print; next } }' "$work/restarts" "$work/scrapes" | grep -c . || true)
took=$(awk '{ printf "%s%d ms", sep, ($2 - $1) / 1000000; sep = ", " }' "$work/restarts")
echo "3 × systemctl restart took $took; scrapes attempted $attempted ($during of them overlapping a restart)," \
    "succeeded $succeeded"
restarted() { [ "$pid_before" != "$pid_after" ] && [ "$(show act-runner.service ActiveState)" = active ]; }
check "restarted (MainPID $pid_before -> $pid_after), active again" restarted
no_scrape_lost() { [ "$during" -gt 0 ] && [ "$succeeded" = "$attempted" ]; }
grep ' lost$' "$work/scrapes" | sed 's/^/lost scrape (start_ns end_ns): /' || true
check "no scrape lost across the restarts ($succeeded of $attempted, $during during a restart)" no_scrape_lost

# --- a second runner through the template unit, set up as the README says
nspawn_sh "$NAME" "install -d -o root -g act-runner -m 0750 /etc/act-runner/b2
    sed 's|/var/lib/act-runner/.runner|/var/lib/act-runner/b2/.runner|' /etc/act-runner/config.yaml \
        >/etc/act-runner/b2/config.yaml
    install -d -o act-runner -g act-runner -m 0750 /var/lib/act-runner/b2"
need "act_runner register b2 as act-runner" inside runuser -u act-runner -- sh -c "cd / &&
    act_runner register --no-interactive --config /etc/act-runner/b2/config.yaml --instance '$url' \
        --token '$TOKEN' --name b2 --labels 'b2-host:host,b2-docker:docker://$IMAGE'"
check "b2's registration is in its own directory" inside test -f /var/lib/act-runner/b2/.runner
need "systemctl enable --now act-runner@b2" inside systemctl enable --now act-runner@b2.service
check "act-runner@b2 is active" [ "$(show act-runner@b2.service ActiveState)" = active ]
b2_host_task=$(enqueue b2-host 'on: push
jobs:
  build:
    runs-on: b2-host
    steps:
      - run: |
          echo "b2 host job as $(id -un) in $PWD, HOME=$HOME"')
b2_docker_task=$(enqueue b2-docker 'on: push
jobs:
  build:
    runs-on: b2-docker
    steps:
      - run: |
          echo "b2 in container: $(test -f /.dockerenv && echo yes)"')
wait_until 120 final "$b2_host_task" || true
wait_until 180 final "$b2_docker_task" || true
b2_host_result=$(task_json "$b2_host_task" | jq -r .status)
b2_host_line=$(logs_of "$b2_host_task" | grep '^b2 host job as' || true)
b2_host_ok() {
    [ "$b2_host_result" = success ] &&
        contains "$b2_host_line" '^b2 host job as act-runner in /var/lib/act-runner/b2/.*, HOME=/var/lib/act-runner/b2$'
}
check "b2 host task $b2_host_task: $b2_host_result, '$b2_host_line'" b2_host_ok
b2_docker_result=$(task_json "$b2_docker_task" | jq -r .status)
b2_docker_line=$(logs_of "$b2_docker_task" | grep '^b2 in container:' || true)
check "b2 docker task $b2_docker_task: $b2_docker_result, '$b2_docker_line'" \
    [ "$b2_docker_result/$b2_docker_line" = "success/b2 in container: yes" ]
check "systemctl disable --now act-runner@b2" inside systemctl disable --now act-runner@b2.service

# --- upgrade: the service restarts on the new version and keeps its registration
invocation_before=$(show act-runner.service InvocationID)
check "upgrade to 0.1.0-2 installs" apt_inside install --no-install-recommends "/tmp/$(basename "$second")"
check "the installed version is 0.1.0-2" [ "$(inside dpkg-query -W -f '${Version}' act-runner)" = 0.1.0-2 ]
upgrade_restarted() {
    [ "$(show act-runner.service InvocationID)" != "$invocation_before" ] && [ "$(show act-runner.service ActiveState)" = active ]
}
check "the upgrade restarted the service (new invocation), active" upgrade_restarted
check "the upgrade keeps the registration" [ "$(inside cat /var/lib/act-runner/.runner | sha256sum)" = "$registration" ]
check "idle again after the upgrade" wait_until 10 idle

# --- remove, purge
check "apt remove" apt_inside remove act-runner
check "remove stopped the service" [ "$(show act-runner.service ActiveState)" != active ]
check "remove keeps the config" inside test -f /etc/act-runner/config.yaml
check "remove keeps the registration" inside test -f /var/lib/act-runner/.runner
units_after_remove=$(inside sh -c 'ls /lib/systemd/system/act-runner* 2>/dev/null || true')
check "remove leaves no unit file ($units_after_remove)" [ -z "$units_after_remove" ]
check "apt purge" apt_inside purge act-runner
check "purge removes the config" inside test ! -e /etc/act-runner
check "purge removes the registration and state" inside test ! -e /var/lib/act-runner
leftover=$(inside sh -c 'systemctl daemon-reload; systemctl list-unit-files --no-legend "act-runner*" 2>/dev/null; ls /etc/systemd/system/*.wants/ 2>/dev/null | grep act-runner || true')
check "no unit is left behind after purge (${leftover:-none})" [ -z "$leftover" ]

echo "$n_passed passed, $n_failed failed"
[ "$n_failed" -eq 0 ]
