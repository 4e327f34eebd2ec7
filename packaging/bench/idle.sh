#!/usr/bin/env bash
# Benchmark: the idle footprint. `act_runner daemon` with a host label polls the fake Gitea (no
# task queued) for BENCH_SECONDS (default 60) after a 5 s warm-up. Prints its RSS (target < 20 MB)
# and its CPU use in percent of one core over the window (target < 0.5 %), plus the FetchTask
# calls it made.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

seconds=${BENCH_SECONDS:-60}
work=$(mktemp -d)
daemon_pid=
stop_daemon() {
    [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
    cleanup_bench
}
trap stop_daemon EXIT
build_release
start_fake
register "idle:host"

"$runner_bin" -c "$work/config.yaml" daemon >"$work/daemon.log" 2>&1 &
daemon_pid=$!
sleep 5
kill -0 "$daemon_pid" 2>/dev/null || die "the daemon exited: $(tail -n 20 "$work/daemon.log")"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat"; }
fetches() { curl -fsS "$fake_url/_fake/counters" | jq '.FetchTask // 0'; }
ticks_before=$(cpu_ticks)
fetches_before=$(fetches)
sleep "$seconds"
ticks_after=$(cpu_ticks)
fetches_after=$(fetches)
rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$daemon_pid/status")
hwm_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status")

python3 - "$seconds" "$ticks_before" "$ticks_after" "$(getconf CLK_TCK)" "$rss_kib" "$hwm_kib" \
    "$((fetches_after - fetches_before))" <<'PY'
import sys
seconds, before, after, clk_tck, rss_kib, hwm_kib, n_fetches = map(int, sys.argv[1:])
cpu = (after - before) / clk_tck / seconds * 100
print(f"idle daemon over {seconds} s of polling: {n_fetches} FetchTask calls")
print(f"  RSS {rss_kib / 1024:.1f} MB (peak {hwm_kib / 1024:.1f} MB) (target < 20 MB)")
print(f"  CPU {cpu:.3f} % of one core (target < 0.5 %)")
PY
