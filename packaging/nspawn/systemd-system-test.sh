#!/bin/bash
# System test of the systemd integration under real systemd 252 (Debian 12, booted with
# systemd-nspawn): the shipped units with the real act_runner binary pass `systemd-analyze
# verify`, the sandbox's exposure is at most 3.0, and a service built from `src/systemd`
# (tests/support/systemd/service_main.rs, run by the shipped act-runner.service through a drop-in) is
# socket-activated by act-runner-metrics.socket, reports READY with its StatusText, logs to the
# journal with the task fields, reloads, pings the watchdog, holds a logind inhibitor while its
# job runs, and drains on `systemctl stop` past TimeoutStopSec= thanks to EXTEND_TIMEOUT_USEC.
#
# Usage: packaging/nspawn/systemd-system-test.sh   (root; builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/../.."
. packaging/nspawn/lib.sh

NAME=act-sd-test
n_passed=0
n_failed=0
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
status_is() { [ "$(show act-runner.service StatusText)" = "$1" ]; }

trap 'nspawn_stop "$NAME"' EXIT

cargo build --quiet --bin act_runner --example systemd-service
target=${CARGO_TARGET_DIR:-target}
nspawn_boot "$NAME"
nspawn_install_runner "$NAME" "$target/debug/act_runner" systemd
nspawn_copy_in "$NAME" "$target/debug/examples/systemd-service" /usr/local/bin/act-runner-probe-service 0755

# --- the shipped units, with the real binary, under real systemd
check "systemd-analyze verify: every unit" inside systemd-analyze verify --man=no \
    /etc/systemd/system/act-runner.service /etc/systemd/system/act-runner-metrics.socket \
    /etc/systemd/system/act-runner@.service
exposure=$(inside systemd-analyze security act-runner.service | sed -n 's/.*Overall exposure level for act-runner.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security act-runner.service: exposure $exposure"
check "exposure $exposure is at most 3.0" awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 3.0) }'

# --- the probe service in place of `act_runner daemon`
nspawn_sh "$NAME" '
    mkdir -p /etc/systemd/system/act-runner.service.d
    printf "[Service]\nExecStart=\nExecStart=/usr/local/bin/act-runner-probe-service /etc/act-runner\n" \
        >/etc/systemd/system/act-runner.service.d/probe.conf
    echo 2 >/etc/act-runner/capacity
    echo 80 >/etc/act-runner/job
    chgrp act-runner /etc/act-runner/capacity /etc/act-runner/job
    install -d -o act-runner -g act-runner -m 0750 /var/lib/act-runner
    install -o act-runner -g act-runner -m 0600 /dev/null /var/lib/act-runner/.runner
    systemctl daemon-reload
    systemctl start act-runner-metrics.socket'
check "the socket unit listens on 127.0.0.1:9101" inside sh -c 'ss -ltn | grep -q "127.0.0.1:9101 "'
check "the service is not started yet" [ "$(show act-runner.service ActiveState)" = inactive ]

# A connection to 9101 starts the service through the socket unit, which serves it on the
# inherited fd (the socket unit holds the port, so a fallback bind would fail).
answer=$(inside curl -sS --max-time 20 http://127.0.0.1:9101/metrics | tr -d '\r' || true)
check "GET /metrics through the socket unit starts the service and is answered" [ "$answer" = "probe_up 1" ]
check "the unit is active (READY=1 reached systemd)" [ "$(show act-runner.service ActiveState)" = active ]
check "NotifyAccess is main (implied by WatchdogSec)" [ "$(show act-runner.service NotifyAccess)" = main ]
wait_for 10 "StatusText: running 1/2: owner/repo build" status_is "running 1/2: owner/repo build"

# --- journald: native entries with the task's fields
journal=$(inside journalctl -u act-runner.service -o json --no-pager)
job_entry=$(echo "$journal" | jq -c 'select(.MESSAGE == "job started")' | head -n1)
echo "journal entry: $job_entry"
check "journal: SYSLOG_IDENTIFIER=act_runner" [ "$(echo "$job_entry" | jq -r .SYSLOG_IDENTIFIER)" = act_runner ]
check "journal: TASK_ID=42" [ "$(echo "$job_entry" | jq -r .TASK_ID)" = 42 ]
check "journal: REPOSITORY=owner/repo" [ "$(echo "$job_entry" | jq -r .REPOSITORY)" = owner/repo ]
check "journal: WORKFLOW, JOB, RUNNER_NAME" [ "$(echo "$job_entry" | jq -r '[.WORKFLOW, .JOB, .RUNNER_NAME] | join(" ")')" = "ci.yml build probe-runner" ]
check "journal: INFO maps to priority 6" [ "$(echo "$job_entry" | jq -r .PRIORITY)" = 6 ]
n_task=$(inside journalctl -u act-runner.service TASK_ID=42 -o cat --no-pager | grep -c "job started" || true)
check "journalctl -u act-runner TASK_ID=42 finds the task ($n_task)" [ "$n_task" -ge 1 ]

# --- watchdog

# --- reload: SIGHUP, RELOADING=1 + MONOTONIC_USEC, READY=1; capacity changes
nspawn_sh "$NAME" 'echo 3 >/etc/act-runner/capacity'
inside systemctl reload act-runner.service
wait_for 10 "systemctl reload: capacity 3 applied (StatusText running 1/3)" status_is "running 1/3: owner/repo build"
check "still active after reload" [ "$(show act-runner.service ActiveState)" = active ]

# --- watchdog: alive past WatchdogSec=30s only if pinged (else systemd kills it, Result=watchdog)
active_since=$(show act-runner.service ActiveEnterTimestampMonotonic)
now=$(inside cat /proc/uptime | cut -d' ' -f1 | cut -d. -f1)
uptime_us=$((now * 1000000))
remaining=$(( (active_since + 36000000 - uptime_us) / 1000000 ))
[ "$remaining" -gt 0 ] && sleep "$remaining"
check "active for more than WatchdogSec=30s: the watchdog is fed" [ "$(show act-runner.service ActiveState)" = active ]
check "no restart so far" [ "$(show act-runner.service NRestarts)" = 0 ]

# --- stop during a job: drain past TimeoutStopSec=30s thanks to EXTEND_TIMEOUT_USEC
started=$(date +%s)
inside systemctl stop act-runner.service &
stopper=$!
wait_for 10 "StatusText while stopping: draining 1 job" status_is "draining 1 job"
wait "$stopper"
took=$(($(date +%s) - started))
result=$(show act-runner.service Result)
echo "systemctl stop took ${took}s, Result=$result"
check "the drain outlived TimeoutStopSec=30s and ended cleanly (Result=success)" [ "$result" = success ] && [ "$took" -gt 30 ]
drained=$(inside journalctl -u act-runner.service -o cat --no-pager)
job_then_drained() { echo "$drained" | grep -q 'job finished' && echo "$drained" | grep -qx 'drained'; }
check "the job finished during the drain" job_then_drained

# --- logind: a delay inhibitor naming the running job, released when it ends. Root here, since
# the act-runner user needs polkit for Inhibit (without it the runner logs one debug line).
# The probe binds 127.0.0.1:9101 itself when not socket-activated: free the port first.
nspawn_sh "$NAME" 'systemctl stop act-runner-metrics.socket
    mkdir -p /tmp/inh; echo 1 >/tmp/inh/capacity; echo 8 >/tmp/inh/job
    systemd-run --quiet --unit=inhibit-probe --property=Type=notify /usr/local/bin/act-runner-probe-service /tmp/inh'
inhibitors() { inside systemd-inhibit --list --no-pager --no-legend; }
holds_lock() { inhibitors | grep -q "finishing running jobs: owner/repo build"; }
released() { ! inhibitors | grep -q "act-runner"; }
wait_for 10 "logind lists the delay inhibitor naming the job" holds_lock
echo "$(inhibitors)"
wait_for 20 "the inhibitor is released once the job ended" released
inside systemctl stop inhibit-probe.service || true

echo "$n_passed passed, $n_failed failed"
[ "$n_failed" -eq 0 ]
