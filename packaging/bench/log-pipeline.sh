#!/usr/bin/env bash
# Benchmark: the log pipeline. One job step prints BENCH_LINES lines (default 1,000,000) inside a
# Docker job container; `act_runner daemon --once` streams them to the fake Gitea, which must hold
# every row when the task is final. Prints:
#   - lines/s delivered: lines / (wall time of the job − wall time of the same job running `true`),
#     so container set-up and tear-down are not counted;
#   - the ratio to a raw `docker exec` of the same command into /dev/null (target ≥ 0.5);
#   - the daemon's peak RSS (target < 64 MB).
# Needs Docker and the local test image (tests/support/images/build.sh).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

lines=${BENCH_LINES:-1000000}
image=${BENCH_IMAGE:-act-runner-test/debian:12}
step="seq 1 $lines"

work=$(mktemp -d)
trap cleanup_bench EXIT
docker image inspect "$image" >/dev/null 2>&1 \
    || die "image $image is missing: run tests/support/images/build.sh"
build_release
start_fake
register "bench:docker://$image"

# run_job COMMAND: runs one task whose step is COMMAND; prints "<seconds> <peak KiB> <task id>".
run_job() {
    cat >"$work/workflow.yml" <<YAML
on: push
jobs:
  bench:
    runs-on: bench
    steps:
      - run: $1
YAML
    local task_id
    task_id=$(enqueue "$work/workflow.yml" bench)
    timeout 600 /usr/bin/time -f '%e %M' -o "$work/time" \
        "$runner_bin" -c "$work/config.yaml" daemon --once >"$work/daemon.log" 2>&1 \
        || die "daemon failed: $(tail -n 20 "$work/daemon.log")"
    echo "$(cat "$work/time") $task_id"
}

log "baseline job (true)"
read -r base_seconds _ _ < <(run_job true)
log "job printing $lines lines"
read -r job_seconds peak_kib task_id < <(run_job "$step")

curl -fsS "$fake_url/_fake/tasks/$task_id" >"$work/task.json"
result=$(jq -r .result "$work/task.json")
n_numbers=$(jq '[.logs[].content | select(test("^[0-9]+$"))] | length' "$work/task.json")
in_order=$(jq '[.logs[].content | select(test("^[0-9]+$")) | tonumber] as $n
    | ($n | length) > 0 and ([range(0; $n | length)] | all(. as $i | $n[$i] == $i + 1))' "$work/task.json")
[ "$n_numbers" -eq "$lines" ] || die "the fake holds $n_numbers number rows, expected $lines"
[ "$in_order" = "true" ] || die "rows are not in order"

log "raw docker exec of the same command into /dev/null"
cid=$(docker run -d --rm "$image" sleep 600)
start=$(date +%s.%N)
docker exec "$cid" bash -c "$step" >/dev/null
end=$(date +%s.%N)
docker rm -f "$cid" >/dev/null

python3 - "$lines" "$base_seconds" "$job_seconds" "$start" "$end" "$peak_kib" "$result" <<'PY'
import sys
lines, base, job, start, end, peak_kib, result = sys.argv[1:]
lines, base, job = int(lines), float(base), float(job)
raw = float(end) - float(start)
pipeline = max(job - base, 1e-3)
peak_mb = int(peak_kib) / 1024
print(f"log pipeline: {lines} lines delivered in order, task result {result}")
print(f"  job wall time {job:.2f} s, baseline job {base:.2f} s, pipeline {pipeline:.2f} s")
print(f"  throughput: {lines / pipeline:,.0f} lines/s")
print(f"  raw docker exec into /dev/null: {raw:.2f} s ({lines / raw:,.0f} lines/s)")
print(f"  ratio to raw docker exec: {raw / pipeline:.2f} (target >= 0.5)")
print(f"  daemon peak RSS: {peak_mb:.1f} MB (target < 64 MB)")
PY
