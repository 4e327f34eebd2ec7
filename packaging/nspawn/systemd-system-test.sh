#!/bin/bash
# System test of the systemd integration under real systemd 252 (Debian 12, booted with
# systemd-nspawn), with the real `act_runner daemon` and the units of systemd/ installed as the
# package installs them. The fake Gitea (`fake-gitea` example) runs on the host's loopback,
# which the container shares (checked first). The runner is registered as the act-runner user,
# then: `systemctl start` gives active, READY and an idle StatusText; 127.0.0.1:9101 is served
# through act-runner-metrics.socket; a host-mode task succeeds and its journal entries carry
# TASK_ID, REPOSITORY, WORKFLOW, JOB and RUNNER_NAME, and its save to the embedded cache is logged
# with REPOSITORY, CACHE_REF, CACHE_KEY, CACHE_ID and CACHE_SIZE; act-runner-cache.socket starts
# the shared cache server on the first connection, with its secret from LoadCredential=; the watchdog is fed; `systemctl reload`
# applies a new runner.capacity; `systemctl stop` during a task drains it past TimeoutStopSec=
# thanks to EXTEND_TIMEOUT_USEC=, and the task's final state reaches the fake; with a docker
# label the runner waits for docker.service over D-Bus (no READY before); each host job runs in a
# cgroup of its own under the delegated unit cgroup, which takes along what the job left running
# (also with a cleared environment) and whose CPU use reaches the journal, and after a SIGKILL of
# the daemon the next one removes the dead one's job cgroups; while a task runs
# logind lists the runner's delay inhibitor naming it, and `systemctl poweroff` (logind's
# PrepareForShutdown) drains the runner before the container powers off. Also
# `systemd-analyze verify` of every unit and an exposure of at most 3.0.
#
# Usage: packaging/nspawn/systemd-system-test.sh   (root; builds what it needs; Docker on the host; about 70 s)
# Any failure prints the unit's journal tail and the fake's log.
set -euo pipefail
cd "$(dirname "$0")/../.."
. packaging/nspawn/lib.sh

NAME=act-sd-test
RUNNER_NAME=nspawn-runner
# The runner's label: a job with `runs-on: nspawn` runs on the host backend (inside the container).
LABEL=nspawn
n_passed=0
n_failed=0
fake_pid=
fake_log=$(mktemp)
workdir=$(mktemp -d)

pass() { echo "ok: $*"; n_passed=$((n_passed + 1)); }
fail() { echo "FAILED: $*"; n_failed=$((n_failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
inside() { nspawn_run "$NAME" "$@"; }
show() { inside systemctl show -P "$2" "$1"; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq 1 $((seconds * 5))); do
        if "$@" >/dev/null 2>&1; then pass "$what"; return 0; fi
        sleep 0.2
    done
    fail "$what (waited ${seconds}s)"
    return 1
}
# has TEXT REGEX: whether a line of TEXT matches REGEX.
has() { grep -q -- "$2" <<<"$1"; }
status_is() { [ "$(show act-runner.service StatusText)" = "$1" ]; }
state_is() { [ "$(show act-runner.service ActiveState)" = "$1" ]; }
# The fake's admin API (tests/support/fake_gitea/admin.rs).
fake() { curl -sS --fail --max-time 10 "$@"; }
task_json() { fake "$fake_url/_fake/tasks/$1"; }
task_status_is() { [ "$(task_json "$1" | jq -r .status)" = "$2" ]; }
# held_job JOB: a workflow whose job JOB waits (at most 60 s) until the test writes
# /run/act-runner-test/release/go.
held_job() {
    printf '%s\n' "name: nspawn-held" "on: push" "jobs:" "  $1:" "    runs-on: $LABEL" "    steps:" \
        "      - run: |" \
        "          for i in \$(seq 1 120); do [ -e /run/act-runner-test/release/go ] && break; sleep 0.5; done" \
        "          echo \"released after \${i} polls\""
}
# delivered TASK: the task's final state reached the fake: success, with stopped_at.
delivered() { [ "$(task_json "$1" | jq -r '.status + " " + (.stopped_at != null | tostring)')" = "success true" ]; }
inhibitors() { inside systemd-inhibit --list --no-pager --no-legend; }
# enqueue WORKFLOW_YAML: queues its one job for the runner's label; prints the task id.
enqueue() { printf '%s' "$1" | fake --data-binary @- "$fake_url/_fake/tasks?labels=$LABEL" | jq -r .task_id; }

report() {
    echo "--- journal of act-runner (tail) ---"
    inside journalctl -u act-runner.service -u act-runner-metrics.socket -u act-runner-cache.service -n 80 --no-pager || true
    echo "--- fake Gitea log (tail) ---"
    tail -n 30 "$fake_log" || true
}
cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] || [ "$n_failed" -ne 0 ]; then report; fi
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null
    nspawn_stop "$NAME"
    rm -rf "$fake_log" "$workdir"
    exit "$status"
}
trap cleanup EXIT

started_at=$(date +%s)
cargo build --quiet --locked --bin act_runner --example fake-gitea
target=${CARGO_TARGET_DIR:-target}

# --- the fake Gitea on the host's loopback (port 0: any free one)
"$target/debug/examples/fake-gitea" --listen 127.0.0.1:0 --registration-token nspawn-registration \
    >"$fake_log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 50); do
    fake_url=$(sed -n 's/^connect: //p' "$fake_log")
    [ -n "$fake_url" ] && break
    sleep 0.1
done
[ -n "$fake_url" ] || { echo "the fake Gitea did not start:"; cat "$fake_log"; exit 1; }
echo "fake Gitea at $fake_url"

# The package system test serves 127.0.0.1:9101 on the same (shared) network: one at a time.
nspawn_hold_host_port 9101
# The shared cache server's socket unit listens on 8088, on the same network.
nspawn_hold_host_port 8088
# The host's Docker engine, reachable in the container only once the docker.service below ran.
DOCKER_SOCKET=$(realpath /var/run/docker.sock 2>/dev/null || echo /var/run/docker.sock)
[ -S "$DOCKER_SOCKET" ] || { echo "no Docker engine socket on this host at $DOCKER_SOCKET"; exit 1; }
nspawn_boot "$NAME" --bind="$DOCKER_SOCKET:/run/host-docker.sock"
# The harness boots without --private-network: the container must share the host's network
# namespace, or it could not reach the fake on 127.0.0.1.
check "the container shares the host's network namespace" \
    [ "$(readlink "/proc/$(nspawn_leader "$NAME")/ns/net")" = "$(readlink /proc/self/ns/net)" ]
check "the fake Gitea on the host's loopback answers inside the container" \
    inside curl -sS --fail --max-time 5 -o /dev/null "$fake_url/_fake/runners"
for port in 9101 8088; do
    holder=$(inside ss -Hltnp "sport = :$port")
    [ -z "$holder" ] || { echo "port $port is already taken on this host (shared network): $holder"; exit 1; }
done

# Group docker owns the engine's socket, as on a host where Docker was installed first.
inside groupadd --system --non-unique --gid "$(stat -c %g "$DOCKER_SOCKET")" docker
nspawn_install_runner "$NAME" "$target/debug/act_runner" systemd
# docker.service: the host's engine stands in for one installed in the container; its socket
# (/run/docker.sock, where discovery looks) exists only while the unit is active.
nspawn_sh "$NAME" 'cat >/etc/systemd/system/docker.service <<EOF
[Unit]
Description=Docker engine (the host engine socket appears at /run/docker.sock)
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/ln -sf /run/host-docker.sock /run/docker.sock
ExecStop=/bin/rm -f /run/docker.sock
EOF
systemctl daemon-reload'

# --- the shipped units, with the real binary, under real systemd
check "systemd-analyze verify: every unit" inside systemd-analyze verify --man=no \
    /etc/systemd/system/act-runner.service /etc/systemd/system/act-runner-metrics.socket \
    /etc/systemd/system/act-runner@.service /etc/systemd/system/act-runner-cache.service \
    /etc/systemd/system/act-runner-cache.socket
exposure=$(inside systemd-analyze security act-runner.service | sed -n 's/.*Overall exposure level for act-runner.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security act-runner.service: exposure $exposure"
check "exposure $exposure is at most 3.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 3.0) }'

# --- configuration and registration, as an operator would do it. metrics.enabled stays off:
# whatever answers on 9101 comes through the socket unit. shutdown_timeout bounds the drain.
# write_config CAPACITY [EXTRA_YAML]
write_config() {
    nspawn_sh "$NAME" "cat >/etc/act-runner/config.yaml <<EOF
runner:
  capacity: $1
  shutdown_timeout: 2m
  fetch_interval: 1s
  fetch_interval_max: 2s
${2:-}
EOF
chgrp act-runner /etc/act-runner/config.yaml
chmod 0640 /etc/act-runner/config.yaml"
}
write_config 1
echo nspawn-registration >"$workdir/token"
nspawn_copy_in "$NAME" "$workdir/token" /run/act-runner-test/registration-token 0600
nspawn_sh "$NAME" '
    chown act-runner /run/act-runner-test/registration-token
    install -d -o act-runner -g act-runner -m 0750 /var/lib/act-runner'
check "act_runner register --no-interactive as the act-runner user" inside runuser -u act-runner -- \
    sh -c "cd /var/lib/act-runner && act_runner register --no-interactive --config /etc/act-runner/config.yaml \
        --instance '$fake_url' --token-file /run/act-runner-test/registration-token \
        --name $RUNNER_NAME --labels $LABEL:host"
check "the .runner is where the unit reads it (0600 act-runner)" \
    [ "$(inside stat -c '%a %U' /var/lib/act-runner/.runner)" = "600 act-runner" ]
check "the fake knows the runner with its label" \
    [ "$(fake "$fake_url/_fake/runners" | jq -r --arg n "$RUNNER_NAME" '.[] | select(.name == $n) | .labels | join(",")')" = "$LABEL" ]

# --- start: READY, StatusText, the socket-activated listener
inside systemctl start act-runner-metrics.socket
check "systemctl start act-runner" inside systemctl start act-runner.service
check "the unit is active (READY=1 reached systemd)" state_is active
check "NotifyAccess is main (implied by WatchdogSec)" [ "$(show act-runner.service NotifyAccess)" = main ]
status=$(show act-runner.service StatusText)
echo "StatusText: $status"
check "StatusText is idle: $status" [ "$status" = "idle 0/1" ]

metrics=$(inside curl -sS --max-time 10 http://127.0.0.1:9101/metrics || true)
check "GET 127.0.0.1:9101/metrics is answered by the daemon" \
    has "$metrics" "^act_runner_info{name=\"$RUNNER_NAME\","
listeners=$(inside ss -Hltnp 'sport = :9101')
echo "9101: $listeners"
check "the listening socket is the socket unit's (systemd, pid 1)" has "$listeners" '"systemd",pid=1,'
check "… handed to act_runner" has "$listeners" '"act_runner"'
check "act-runner-metrics.socket is active" [ "$(show act-runner-metrics.socket ActiveState)" = active ]

# --- a host-mode task succeeds; its journal entries carry the task's fields
task=$(enqueue 'name: nspawn-ci
on: push
jobs:
  greet:
    runs-on: nspawn
    steps:
      - run: echo "hello from $(id -un)"
      - name: save a cache entry through the v1 API, as actions/cache does
        run: |
          set -eu
          api="${ACTIONS_CACHE_URL}_apis/artifactcache"
          auth="Authorization: Bearer $ACTIONS_RUNTIME_TOKEN"
          id=$(curl -sS --fail -H "$auth" -H "Content-Type: application/json" \
            -d "{\"key\":\"nspawn-key\",\"version\":\"v1\",\"cacheSize\":5}" "$api/caches" | jq -r .cacheId)
          curl -sS --fail -X PATCH -H "$auth" -H "Content-Type: application/octet-stream" \
            -H "Content-Range: bytes 0-4/*" --data-binary hello "$api/caches/$id"
          curl -sS --fail -H "$auth" -H "Content-Type: application/json" -d "{\"size\":5}" "$api/caches/$id"
          echo "cache entry $id saved"
')
wait_for 30 "task $task (host backend) finished" task_status_is "$task" success
logs=$(task_json "$task" | jq -r '.logs[].content')
check "task $task ran as the service user" has "$logs" '^hello from act-runner$'
check "task $task reached the fake with stopped_at" [ "$(task_json "$task" | jq -r .stopped_at)" != null ]

entry=$(inside journalctl -u act-runner.service -o json --no-pager "TASK_ID=$task" |
    jq -c 'select(.MESSAGE == "task started")' | head -n1)
echo "journal entry: $entry"
field() { echo "$entry" | jq -r ".$1"; }
check "journal: SYSLOG_IDENTIFIER=act_runner" [ "$(field SYSLOG_IDENTIFIER)" = act_runner ]
check "journal: TASK_ID=$task" [ "$(field TASK_ID)" = "$task" ]
check "journal: REPOSITORY=owner/repo" [ "$(field REPOSITORY)" = owner/repo ]
check "journal: WORKFLOW (the fake's ci.yml), JOB, RUNNER_NAME" \
    [ "$(echo "$entry" | jq -r '[.WORKFLOW, .JOB, .RUNNER_NAME] | join(" ")')" = "ci.yml greet $RUNNER_NAME" ]
# The embedded cache's line for that save: the entry as journal fields.
cache_entry=$(inside journalctl -u act-runner.service -o json --no-pager CACHE_KEY=nspawn-key |
    jq -c 'select(.MESSAGE == "cache entry committed")' | head -n1)
echo "cache journal entry: $cache_entry"
check "journal: the cache commit carries REPOSITORY, CACHE_REF, CACHE_KEY, CACHE_ID and CACHE_SIZE" \
    [ "$(echo "$cache_entry" | jq -r '[.REPOSITORY, (.CACHE_REF | startswith("refs/") | tostring), .CACHE_KEY, (.CACHE_ID | test("^[0-9]+$") | tostring), .CACHE_SIZE] | join(" ")')" = "owner/repo true nspawn-key true 5" ]
no_lock() { ! has "$(inhibitors)" act-runner; }
wait_for 10 "no logind inhibitor while idle" no_lock

task_entries=$(inside journalctl -u act-runner TASK_ID="$task" -o cat --no-pager)
check "journalctl -u act-runner TASK_ID=$task finds the task's start" has "$task_entries" '^task started$'
check "… and its end" has "$task_entries" '^task finished$'
check "journal: INFO maps to priority 6" [ "$(field PRIORITY)" = 6 ]

# --- the shared cache server: act-runner-cache.socket holds :8088 and starts the service on the
# first connection; the secret reaches it only as the credential cache-secret (LoadCredential=).
cache_secret=nspawn-shared-cache-secret
printf 'cache:\n  host: 127.0.0.1\n' >"$workdir/cache-server.yaml"
printf '%s\n' "$cache_secret" >"$workdir/cache-secret"
nspawn_copy_in "$NAME" "$workdir/cache-server.yaml" /etc/act-runner/cache-server.yaml 0640
nspawn_copy_in "$NAME" "$workdir/cache-secret" /etc/act-runner/cache-secret 0600
inside chgrp act-runner /etc/act-runner/cache-server.yaml
inside systemctl start act-runner-cache.socket
check "act-runner-cache.service waits for a first connection" \
    [ "$(show act-runner-cache.service ActiveState)" = inactive ]
grant_status=$(inside curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $cache_secret" -H 'Content-Type: application/json' \
    -d '{"token":"nspawn-shared-token","repository":"owner/repo","ref_name":"refs/heads/main","lifetime_secs":600}' \
    http://127.0.0.1:8088/_act_runner/grants || true)
check "a grant with the credential's secret through the socket is accepted ($grant_status)" [ "$grant_status" = 204 ]
check "the first connection started act-runner-cache.service" \
    [ "$(show act-runner-cache.service ActiveState)" = active ]
lookup_status=$(inside curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
    -H 'Authorization: Bearer nspawn-shared-token' \
    'http://127.0.0.1:8088/_apis/artifactcache/cache?keys=k&version=v' || true)
check "the granted token looks up (204: a miss) ($lookup_status)" [ "$lookup_status" = 204 ]
cache_listening=$(inside journalctl -u act-runner-cache.service -o json --no-pager |
    jq -r 'select(.MESSAGE == "cache server is listening") | .CACHE_URL' | head -n1)
check "journal: the cache server's CACHE_URL names the socket's port ($cache_listening)" \
    has "$cache_listening" ':8088/$'
check "the secret stays out of the cache server's journal" \
    eval '! has "$(inside journalctl -u act-runner-cache.service -o cat --no-pager)" "$cache_secret"'
inside systemctl stop act-runner-cache.service act-runner-cache.socket

# --- reload: a new runner.capacity, RELOADING=1 … READY=1, no restart
pid_before=$(show act-runner.service MainPID)
write_config 3
check "systemctl reload act-runner" inside systemctl reload act-runner.service
wait_for 10 "StatusText after reload: idle 0/3" status_is "idle 0/3"
check "act_runner_capacity is 3 after reload" \
    has "$(inside curl -sS --max-time 10 http://127.0.0.1:9101/metrics)" '^act_runner_capacity 3$'
check "reload kept the process (MainPID $pid_before)" [ "$(show act-runner.service MainPID)" = "$pid_before" ]
check "the unit is active after reload" state_is active

# --- stop during a task: the step waits for a release file, written 35 s into the drain, so the
# drain outlives TimeoutStopSec=30s only because EXTEND_TIMEOUT_USEC= keeps pushing it.
inside install -d -m 0755 /run/act-runner-test/release
task=$(enqueue "$(held_job wait)")
wait_for 20 "StatusText while task $task runs: running 1/3: owner/repo wait" status_is "running 1/3: owner/repo wait"

# --- watchdog: a WATCHDOG=1 ping moves WatchdogTimestamp (pinged every WatchdogSec/2 = 15 s)
watchdog_before=$(show act-runner.service WatchdogTimestampMonotonic)
watchdog_pinged() { [ "$(show act-runner.service WatchdogTimestampMonotonic)" -gt "$watchdog_before" ]; }
wait_for 20 "a watchdog ping arrived while the task runs" watchdog_pinged
check "no watchdog restart (NRestarts=0)" [ "$(show act-runner.service NRestarts)" = 0 ]

timeout_stop=$(show act-runner.service TimeoutStopUSec)
stop_started=$(date +%s)
inside systemctl stop act-runner.service &
stopper=$!
wait_for 10 "the unit is deactivating while it drains" state_is deactivating
wait_for 10 "StatusText while stopping: draining 1 job" status_is "draining 1 job"
sleep 35
check "still deactivating 35 s into the drain (TimeoutStopSec=$timeout_stop, extended)" state_is deactivating
inside touch /run/act-runner-test/release/go
wait "$stopper"
took=$(($(date +%s) - stop_started))
result=$(show act-runner.service Result)
echo "systemctl stop took ${took}s, Result=$result, ExecMainStatus=$(show act-runner.service ExecMainStatus)"
check "the drain (${took}s) outlived TimeoutStopSec=$timeout_stop" [ "$took" -gt 30 ]
check "the drain ended cleanly (Result=$result)" [ "$result" = success ]
check "the daemon exited 0" [ "$(show act-runner.service ExecMainStatus)" = 0 ]
final=$(task_json "$task")
echo "task $task at the fake: $(echo "$final" | jq -c '{status, result, stopped_at}')"
check "the drained task's final state reached the fake (success, with stopped_at)" delivered "$task"
check "the drained task's log reached the fake" has "$(echo "$final" | jq -r '.logs[].content')" '^released after'

# --- docker.service over D-Bus: with a docker label the runner waits for the unit to become
# active before it looks for the engine's socket (which does not exist before), then READY.
write_config 3 '  labels: ["nspawn:host", "nspawn-docker:docker://debian:12"]
container:
  docker_timeout: 1m'
inside systemctl start --no-block act-runner.service
wait_for 10 "StatusText while docker.service is inactive: starting: waiting for Docker" \
    status_is "starting: waiting for Docker"
sleep 3
check "no READY while docker.service is inactive (activating)" state_is activating
inside systemctl start docker.service
wait_for 15 "READY once docker.service is active" state_is active
journal=$(inside journalctl -u act-runner.service -o cat --no-pager --since=-1min)
check "the runner saw docker.service become active over D-Bus" has "$journal" '^the unit is active$'
check "… and never polled a missing socket" eval '! has "$journal" "Docker is not ready yet"'
check "act_runner_docker_up is 1" \
    has "$(inside curl -sS --max-time 10 http://127.0.0.1:9101/metrics)" '^act_runner_docker_up 1$'

# --- host jobs in cgroups of their own (Delegate=yes): the daemon runs in <unit>/daemon, each
# host job in <unit>/jobs/<job>; what a job leaves running dies with it, even a process that
# cleared its environment (which the ACT_RUNNER_JOB mark misses); its CPU (and memory, where the
# controller is delegated: not in this container) reaches the journal on the task's fields.
unit_cgroup=$(show act-runner.service ControlGroup)
jobs_cgroup=/sys/fs/cgroup$unit_cgroup/jobs
check "the daemon moved itself into $unit_cgroup/daemon" \
    eval 'inside cat "/sys/fs/cgroup$unit_cgroup/daemon/cgroup.procs" | grep -qx "$(show act-runner.service MainPID)"'
# leaving_job JOB SECONDS: leaves `sleep SECONDS` running twice (setsid; env -i setsid), burns some
# CPU, prints its cgroup and waits for the release file.
leaving_job() {
    printf '%s\n' "name: nspawn-leaves" "on: push" "jobs:" "  $1:" "    runs-on: $LABEL" "    steps:" \
        "      - run: |" \
        "          setsid sleep $2 </dev/null >/dev/null 2>&1 &" \
        "          env -i /usr/bin/setsid /bin/sleep $(($2 + 1)) </dev/null >/dev/null 2>&1 &" \
        "          head -c 200000000 /dev/zero | cksum >/dev/null" \
        "          sed -n 's/^0:://p' /proc/self/cgroup" \
        "          for i in \$(seq 1 120); do [ -e /run/act-runner-test/release/go ] && break; sleep 0.5; done"
}
sleeping() { inside pgrep -f "^(/bin/)?sleep $1\$" >/dev/null; }
no_job_cgroup() { [ -z "$(inside find "$jobs_cgroup" -mindepth 1 -maxdepth 1 -type d)" ]; }
inside rm -f /run/act-runner-test/release/go
task=$(enqueue "$(leaving_job leaves 1001)")
wait_for 20 "StatusText while task $task runs: running 1/3: owner/repo leaves" status_is "running 1/3: owner/repo leaves"
wait_for 10 "the job left sleep 1001 (setsid) and sleep 1002 (env -i setsid) running" \
    eval 'sleeping 1001 && sleeping 1002'
job_cgroups=$(inside find "$jobs_cgroup" -mindepth 1 -maxdepth 1 -type d)
echo "job cgroups while task $task runs: $job_cgroups"
check "one job cgroup under $jobs_cgroup while the job runs" [ "$(echo "$job_cgroups" | grep -c .)" = 1 ]
check "… holding both sleeps" \
    eval '[ "$(inside sh -c "cat $job_cgroups/cgroup.procs | xargs -r -n1 ps -o args= -p" | grep -c "^/*[a-z/]*sleep 100[12]$")" = 2 ]'
inside touch /run/act-runner-test/release/go
wait_for 30 "task $task (leaving processes behind) finished" task_status_is "$task" success
check "task $task's steps ran in its cgroup" \
    has "$(task_json "$task" | jq -r '.logs[].content')" "^$unit_cgroup/jobs/[0-9a-f]\{16\}\$"
wait_for 10 "the job's cgroup is gone after the job" no_job_cgroup
check "sleep 1001 (setsid) died with the job" eval '! sleeping 1001'
check "sleep 1002 (env -i setsid, no mark) died with the job" eval '! sleeping 1002'
usage=$(inside journalctl -u act-runner.service -o json --no-pager "TASK_ID=$task" |
    jq -c 'select(.MESSAGE | startswith("host job used cpu"))' | head -n1)
echo "journal: $usage"
check "journal: the job's CPU on the task's fields (CPU_USEC > 0)" \
    [ "$(echo "$usage" | jq -r '(.CPU_USEC | tonumber > 0) and .TASK_ID == "'"$task"'"')" = true ]
check "journal: its memory is not available without the memory controller" \
    [ "$(echo "$usage" | jq -r '(.MESSAGE | endswith("memory peak not available")) and .MEMORY_PEAK_BYTES == null')" = true ]

# After a crash, the next daemon removes the job cgroups the dead one left. KillMode=process, so
# that systemd itself leaves the dead daemon's processes alone (with the unit's KillMode=mixed it
# would kill them TimeoutStopSec= after the crash, and remove the cgroups).
inside rm -f /run/act-runner-test/release/go
nspawn_sh "$NAME" 'mkdir -p /run/systemd/system/act-runner.service.d
printf "[Service]\nKillMode=process\n" >/run/systemd/system/act-runner.service.d/kill-mode.conf
systemctl daemon-reload'
task=$(enqueue "$(leaving_job crashes 1003)")
wait_for 20 "StatusText while task $task runs: running 1/3: owner/repo crashes" status_is "running 1/3: owner/repo crashes"
wait_for 10 "the job left sleep 1003 and sleep 1004 (env -i) running" eval 'sleeping 1003 && sleeping 1004'
crashed_pid=$(show act-runner.service MainPID)
inside kill -KILL "$crashed_pid"
restarted() { [ "$(show act-runner.service NRestarts)" = 1 ] && state_is active; }
wait_for 30 "systemd restarted the daemon killed with SIGKILL" restarted
check "the restarted daemon removed the dead one's job cgroup" no_job_cgroup
check "… and killed sleep 1004 (env -i), which only the cgroup held" eval '! sleeping 1004'
check "… and sleep 1003" eval '! sleeping 1003'
check "journal: the stale cgroup's removal is logged" \
    has "$(inside journalctl -u act-runner.service -o cat --no-pager --since=-1min)" \
    '^removed the job cgroups an earlier run of this runner left, with their processes$'
nspawn_sh "$NAME" 'rm -r /run/systemd/system/act-runner.service.d; systemctl daemon-reload'
inside touch /run/act-runner-test/release/go

# --- logind: a delay inhibitor naming the running task (granted to the act-runner user through
# polkit), and a system shutdown (PrepareForShutdown) drains the runner like `systemctl stop`.
inside rm -f /run/act-runner-test/release/go
inside systemctl start act-runner.service
task=$(enqueue "$(held_job shutdown)")
wait_for 20 "StatusText while task $task runs: running 1/3: owner/repo shutdown" \
    status_is "running 1/3: owner/repo shutdown"
holds_locks() {
    local list
    list=$(inhibitors)
    has "$list" 'act_runner \+shutdown \+finishing running jobs: owner/repo shutdown \+delay' &&
        has "$list" 'act_runner \+sleep \+finishing running jobs: owner/repo shutdown \+delay'
}
wait_for 10 "logind lists the runner's shutdown and sleep delay inhibitors naming the task" holds_locks
inhibitors
inside systemctl poweroff --no-block
announced() { has "$(inside journalctl -u act-runner.service -o cat --no-pager)" '^logind announced a shutdown; draining$'; }
wait_for 15 "PrepareForShutdown starts the drain" announced
wait_for 10 "StatusText while the system shuts down: draining 1 job" status_is "draining 1 job"
inside touch /run/act-runner-test/release/go
container_gone() { ! kill -0 "$(cat "$NSPAWN_STATE/$NAME.pid")" 2>/dev/null; }
wait_for 60 "the container powers off once the task is done" container_gone
echo "task $task at the fake: $(task_json "$task" | jq -c '{status, result, stopped_at}')"
check "the task drained at shutdown reached the fake (success, with stopped_at)" delivered "$task"

echo "$n_passed passed, $n_failed failed in $(($(date +%s) - started_at))s"
[ "$n_failed" -eq 0 ]
