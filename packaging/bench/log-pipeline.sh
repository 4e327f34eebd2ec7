#!/usr/bin/env bash
# Benchmark: the log pipeline. A Docker job step prints BENCH_LINES lines (default 1,000,000);
# `act_runner daemon --once` streams them to the fake Gitea, which must hold every row in order.
# BENCH_RUNS interleaved rounds (default 30) each time the runner against the raw limit on the
# same machine: `docker exec CONTAINER bash -c <command> >/dev/null` (the CLI, best of
# BENCH_RAW_TRIES), and the same exec read through the Engine API (raw_exec_stream.rs), whole
# and streaming only. Prints per round and as medians: lines/s, the three ratios (target >= 0.5),
# the daemon's peak RSS (target < 64 MB) and daemon and fake-Gitea CPU per million lines.
# Needs Docker and the local test image (tests/support/images/build.sh).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

lines=${BENCH_LINES:-1000000}
runs=${BENCH_RUNS:-30}
raw_tries=${BENCH_RAW_TRIES:-3}
image=${BENCH_IMAGE:-act-runner-test/debian:12}
step="seq 1 $lines"
work=$(mktemp -d)
trap cleanup_bench EXIT
docker image inspect "$image" >/dev/null 2>&1 \
    || die "image $image is missing: run tests/support/images/build.sh"
build_release
raw_bin="$repo_root/target/release/examples/raw_exec_stream"
(cd "$repo_root" && cargo build --release --quiet --example raw_exec_stream) \
    || die "cargo build of the raw exec probe failed"
start_fake
register "bench:docker://$image"

# fake_cpu: the fake Gitea's CPU seconds so far (user + system).
fake_cpu() {
    python3 - "$fake_pid" <<'PY'
import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
PY
}

# run_job COMMAND: runs one task whose step is COMMAND; prints
# "<seconds> <peak KiB> <user seconds> <system seconds> <fake CPU seconds> <task id>".
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
    local fake_before
    fake_before=$(fake_cpu)
    timeout 600 /usr/bin/time -f '%e %M %U %S' -o "$work/time" \
        "$runner_bin" -c "$work/config.yaml" daemon --once >"$work/daemon.log" 2>&1 \
        || die "daemon failed: $(tail -n 20 "$work/daemon.log")"
    echo "$(cat "$work/time") $(python3 -c "print($(fake_cpu) - $fake_before)") $task_id"
}

# check_task TASK_JSON: checks that the fake holds every line, in order, and prints the pipeline's
# seconds (from the first line's arrival at the runner to the fake storing the last line), the
# reading's (from the first line's arrival to the last's, both stamped by the runner as it read
# them) and the whole step's (from the step's start, stamped by the runner before it creates the
# exec, to the fake storing the last line).
check_task() {
    python3 - "$1" "$lines" <<'PY'
import datetime, json, sys
task = json.load(open(sys.argv[1]))
logs = task["logs"]
indexes = [i for i, row in enumerate(logs) if row["content"].isdigit()]
numbers = [logs[i]["content"] for i in indexes]
expected = int(sys.argv[2])
if task["result"] != "RESULT_SUCCESS":
    sys.exit(f"task result {task['result']}")
if len(numbers) != expected or numbers != [str(n) for n in range(1, expected + 1)]:
    sys.exit(f"{len(numbers)} number rows, expected 1..{expected} in order")
if any(row["time"] is None for row in logs):
    sys.exit("a row has no timestamp")

def unix(text):
    whole, _, fraction = text.rstrip("Z").partition(".")
    at = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    return at.replace(tzinfo=datetime.timezone.utc).timestamp() + float("0." + (fraction or "0"))

first_read = unix(logs[indexes[0]]["time"])
last_read = unix(logs[indexes[-1]]["time"])
last_stored = min(write["at"] for write in task["log_writes"] if write["rows"] > indexes[-1])
step_started = unix(task["steps"][0]["started_at"])
print(last_stored - first_read, last_read - first_read, last_stored - step_started)
PY
}

cid=$(docker run -d --rm "$image" sleep 3600)
cleanup_all() {
    docker rm -f "$cid" >/dev/null 2>&1 || true
    cleanup_bench
}
trap cleanup_all EXIT

: >"$work/rounds"
for round in $(seq 1 "$runs"); do
    log "round $round/$runs: baseline job (true)"
    read -r base_seconds _ base_user base_sys base_fake _ < <(run_job true)
    log "round $round/$runs: job printing $lines lines"
    read -r job_seconds peak_kib job_user job_sys job_fake task_id < <(run_job "$step")
    curl -fsS "$fake_url/_fake/tasks/$task_id" >"$work/task.json"
    read -r pipeline_seconds read_seconds step_seconds < <(check_task "$work/task.json") \
        || die "round $round: the fake does not hold every row in order"
    log "round $round/$runs: raw docker exec, output thrown away (best of $raw_tries)"
    raw_seconds=1e9
    for _ in $(seq 1 "$raw_tries"); do
        read -r seconds total raw_bytes < <("$raw_bin" "$cid" "$step") \
            || die "round $round: the raw exec failed"
        [ "$raw_bytes" -gt 0 ] || die "round $round: the raw exec printed nothing"
        if python3 -c "import sys; sys.exit(not $seconds < $raw_seconds)"; then
            raw_seconds=$seconds
            raw_total=$total
        fi
    done
    log "round $round/$runs: docker exec CLI, output to /dev/null (best of $raw_tries)"
    cli_seconds=1e9
    for _ in $(seq 1 "$raw_tries"); do
        started=$EPOCHREALTIME
        docker exec "$cid" bash -c "$step" >/dev/null || die "round $round: docker exec failed"
        seconds=$(python3 -c "print($EPOCHREALTIME - $started)")
        if python3 -c "import sys; sys.exit(not $seconds < $cli_seconds)"; then
            cli_seconds=$seconds
        fi
    done
    cpu=$(python3 -c "print($job_user + $job_sys - $base_user - $base_sys)")
    fake=$(python3 -c "print($job_fake - $base_fake)")
    echo "$base_seconds $job_seconds $raw_total $raw_seconds $peak_kib $cpu $fake $pipeline_seconds $read_seconds $step_seconds $cli_seconds" \
        >>"$work/rounds"
done

host="$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
host="$host, Docker $(docker version --format '{{.Server.Version}}') on $(docker info --format '{{.Driver}}')"
python3 - "$lines" "$work/rounds" "$host" <<'PY'
import statistics, sys
lines = int(sys.argv[1])
rounds = [[float(x) for x in line.split()] for line in open(sys.argv[2])]
print(f"log pipeline: {lines} lines delivered in order in each of {len(rounds)} rounds ({sys.argv[3]})")
rates, ratios, peaks, cpus, fakes = [], [], [], [], []
reads, whole_ratios, cli_ratios = [], [], []
for n, (base, job, raw_total, raw, peak_kib, cpu, fake, pipeline, read, step, cli) in enumerate(rounds, 1):
    pipeline = max(pipeline, 1e-3)
    raw_net = max(raw, 1e-3)
    rates.append(lines / pipeline)
    ratios.append(raw_net / pipeline)
    whole_ratios.append(raw_total / max(step, 1e-3))
    cli_ratios.append(cli / max(step, 1e-3))
    peaks.append(peak_kib / 1024)
    cpus.append(cpu * 1e6 / lines)
    fakes.append(fake * 1e6 / lines)
    reads.append(read)
    print(f"  round {n}: first line read to last line stored {pipeline:.3f} s "
          f"({lines / pipeline:,.0f} lines/s; all read after {read:.3f} s; job {job:.2f} s, baseline job {base:.2f} s); "
          f"raw exec streamed in {raw_net:.3f} s ({lines / raw_net:,.0f} lines/s; {raw_total:.3f} s from its creation); ratio {raw_net / pipeline:.2f}; "
          f"whole step {step:.3f} s from its start to the last line stored, ratio {raw_total / max(step, 1e-3):.2f}; "
          f"docker exec CLI {cli:.3f} s, ratio {cli / max(step, 1e-3):.2f}; "
          f"peak RSS {peak_kib / 1024:.1f} MB; CPU daemon {cpu:.2f} s, fake Gitea {fake:.2f} s")
print(f"  median throughput: {statistics.median(rates):,.0f} lines/s")
print(f"  median time to read every line: {statistics.median(reads):.3f} s (the rest is delivery lag)")
print(f"  median ratio to `docker exec ... >/dev/null` (the CLI, from its start to its exit, "
      f"against the step's start to its last line stored): {statistics.median(cli_ratios):.2f} (target >= 0.5)")
print(f"  median ratio to raw docker exec, streaming alone (first line read to last stored, "
      f"against first byte to end of stream): {statistics.median(ratios):.2f} (target >= 0.5)")
print(f"  median ratio to raw docker exec, whole exec (step start to last line stored, "
      f"against the exec's creation to the end of its stream): {statistics.median(whole_ratios):.2f} (target >= 0.5)")
print(f"  median raw docker exec: {lines / max(statistics.median(r[3] for r in rounds), 1e-3):,.0f} lines/s")
print(f"  median CPU per million lines: daemon {statistics.median(cpus):.3f} s, "
      f"fake Gitea {statistics.median(fakes):.3f} s")
print(f"  daemon peak RSS: median {statistics.median(peaks):.1f} MB, max {max(peaks):.1f} MB (target < 64 MB)")
PY
