#!/usr/bin/env bash
# Benchmark: a soak, so slow leaks show (issue 22). One `act_runner daemon` (capacity
# BENCH_CAPACITY, default 4) runs short host jobs (`run: true`) from the fake Gitea: a warm-up of
# BENCH_WARMUP_JOBS (default 500), then BENCH_FIRST_JOBS (default 2,000), then the rest up to
# BENCH_HOST_JOBS (default 10,000). After each batch it prints the daemon's RSS, open descriptors,
# threads and spool directory, and at the end the bytes retained per job, RSS after N jobs minus
# RSS after the warm-up over N, at 2,000 and at 10,000 jobs (target < 100 B/job: the two agree
# when nothing grows per job; the first also carries the allocator settling after warm-up), with
# 0 descriptors and 0 spool files left. Then a second daemon runs BENCH_DOCKER_JOBS (default
# 1,000; 0 skips) Docker jobs on the local test image and, once stopped, must leave no container,
# network or volume of its own behind. Jobs are queued in bulk through the fake's admin API.
# BENCH_HOST_JOBS=0 skips the host part (to run the two parts at once, as two invocations).
# The daemons run with the MALLOC_ARENA_MAX that systemd/act-runner.service sets, as deployed;
# BENCH_MALLOC_ARENA_MAX overrides it (empty: glibc's default, to compare).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

capacity=${BENCH_CAPACITY:-4}
warmup_jobs=${BENCH_WARMUP_JOBS:-500}
first_jobs=${BENCH_FIRST_JOBS:-2000}
host_jobs=${BENCH_HOST_JOBS:-10000}
docker_jobs=${BENCH_DOCKER_JOBS:-1000}
image=${BENCH_IMAGE:-act-runner-test/debian:12}
unit_arena_max=$(sed -n 's/^Environment=MALLOC_ARENA_MAX=//p' \
    "$(dirname "${BASH_SOURCE[0]}")/../../systemd/act-runner.service")
arena_max=${BENCH_MALLOC_ARENA_MAX-$unit_arena_max}
[ "$host_jobs" -eq 0 ] || [ "$first_jobs" -lt "$host_jobs" ] \
    || die "BENCH_FIRST_JOBS must be below BENCH_HOST_JOBS"
if [ "$docker_jobs" -gt 0 ]; then
    docker image inspect "$image" >/dev/null 2>&1 \
        || die "image $image is missing: run tests/support/images/build.sh"
fi

work=$(mktemp -d)
daemon_pid=
stop_daemon() {
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        local status=0
        wait "$daemon_pid" || status=$?
        daemon_pid=
        [ "$status" -eq 0 ] || die "the daemon exited with $status: $(tail -n 20 "$dir/daemon.log")"
    fi
}
cleanup_soak() {
    [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    cleanup_bench
}
trap cleanup_soak EXIT
build_release
start_fake

# start_daemon DIR LABEL: registers a runner in DIR and starts its daemon; sets daemon_pid and dir.
start_daemon() {
    dir=$1
    mkdir -p "$dir/work"
    cat >"$dir/config.yaml" <<YAML
log:
  level: warn
runner:
  file: $dir/.runner
  capacity: $capacity
  timeout: 1h
host:
  workdir_parent: $dir/work
YAML
    "$runner_bin" -c "$dir/config.yaml" register --no-interactive --instance "$fake_url" \
        --token BENCH --name "soak-$(basename "$dir")" --labels "$2" >"$dir/register.log" 2>&1 \
        || die "register failed: $(cat "$dir/register.log")"
    env ${arena_max:+"MALLOC_ARENA_MAX=$arena_max"} "$runner_bin" -c "$dir/config.yaml" daemon \
        >"$dir/daemon.log" 2>&1 &
    daemon_pid=$!
    sleep 3
    kill -0 "$daemon_pid" 2>/dev/null || die "the daemon exited: $(tail -n 20 "$dir/daemon.log")"
}

# run_jobs N LABEL: queues N jobs and waits until none is waiting or running; fails on any job
# that did not succeed.
done_jobs=0
run_jobs() {
    local n_jobs=$1 label=$2 deadline counts
    cat >"$work/workflow.yml" <<YAML
on: push
jobs:
  soak:
    runs-on: $label
    steps:
      - run: "true"
YAML
    curl -fsS -X POST --data-binary @"$work/workflow.yml" \
        "$fake_url/_fake/tasks?labels=$label&count=$n_jobs" >/dev/null \
        || die "cannot queue $n_jobs jobs"
    done_jobs=$((done_jobs + n_jobs))
    deadline=$((SECONDS + 60 + n_jobs * 5))
    while :; do
        counts=$(curl -fsS "$fake_url/_fake/task-counts")
        if [ "$(jq '(.waiting // 0) + (.running // 0) + (.cancelling // 0)' <<<"$counts")" -eq 0 ]; then
            break
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "jobs still queued or running: $counts"
        kill -0 "$daemon_pid" 2>/dev/null || die "the daemon exited: $(tail -n 20 "$dir/daemon.log")"
        sleep 1
    done
    [ "$(jq '.success // 0' <<<"$counts")" -eq "$done_jobs" ] \
        || die "not every job succeeded: $counts; the daemon's log ends: $(tail -n 20 "$dir/daemon.log")"
    # The reporter removes a task's spool just after the final state is acknowledged, and tokio
    # ends a blocking-pool thread after 10 s idle: sample once those are gone.
    sleep 12
}

# sample NAME: one line "NAME rss_kib anon_kib fds threads spool_bytes spool_files work_entries".
sample() {
    local status=/proc/$daemon_pid/status
    printf '%s %s %s %s %s %s %s %s\n' "$1" \
        "$(awk '/^VmRSS:/ { print $2 }' "$status")" \
        "$(awk '/^RssAnon:/ { print $2 }' "$status")" \
        "$(find "/proc/$daemon_pid/fd" -mindepth 1 | wc -l)" \
        "$(awk '/^Threads:/ { print $2 }' "$status")" \
        "$(du -sb "$dir/spool" 2>/dev/null | cut -f1 || echo 0)" \
        "$(find "$dir/spool" -type f 2>/dev/null | wc -l)" \
        "$(find "$dir/work" -mindepth 1 -maxdepth 1 | wc -l)"
}

: >"$work/samples"
host_seconds=0
if [ "$host_jobs" -gt 0 ]; then
    log "host soak: $warmup_jobs + $first_jobs + $((host_jobs - first_jobs)) jobs, capacity $capacity, MALLOC_ARENA_MAX=${arena_max:-unset}"
    start_daemon "$work/host" soak-host:host
    sample start >>"$work/samples"
    run_jobs "$warmup_jobs" soak-host
    sample warm-up >>"$work/samples"
    started=$SECONDS
    run_jobs "$first_jobs" soak-host
    sample "$first_jobs" >>"$work/samples"
    run_jobs "$((host_jobs - first_jobs))" soak-host
    sample "$host_jobs" >>"$work/samples"
    host_seconds=$((SECONDS - started))
    stop_daemon
fi

docker_report=
if [ "$docker_jobs" -gt 0 ]; then
    log "docker soak: $docker_jobs jobs on $image, capacity $capacity"
    # Streamed from the start: the engine keeps only its last few hundred events for --since.
    docker events --filter type=container --filter type=volume --filter event=create \
        --filter event=mount \
        --format '{{.Type}}|{{.Action}}|{{.Actor.ID}}|{{index .Actor.Attributes "container"}}|{{index .Actor.Attributes "com.gitea.runner.uuid"}}' \
        >"$work/events" &
    events_pid=$!
    start_daemon "$work/docker" "soak-docker:docker://$image"
    uuid=$(jq -r .uuid "$dir/.runner")
    started=$SECONDS
    run_jobs "$docker_jobs" soak-docker
    docker_seconds=$((SECONDS - started))
    stop_daemon
    sleep 1
    kill "$events_pid" 2>/dev/null || true
    filter="label=com.gitea.runner.uuid=$uuid"
    containers=$(docker ps -aq --filter "$filter" | wc -l)
    networks=$(docker network ls -q --filter "$filter" | wc -l)
    # Volumes carry no runner label: those mounted by the runner's containers must be gone.
    awk -F'|' -v uuid="$uuid" '$1 == "container" && $2 == "create" && $5 == uuid { print $3 }' \
        "$work/events" | sort -u >"$work/containers"
    awk -F'|' 'NR == FNR { ours[$1] = 1; next } $1 == "volume" && $2 == "mount" && ($4 in ours) { print $3 }' \
        "$work/containers" "$work/events" | sort -u >"$work/volumes"
    volumes=0
    while read -r volume; do
        docker volume inspect "$volume" >/dev/null 2>&1 && volumes=$((volumes + 1))
    done <"$work/volumes"
    docker_report="$docker_jobs $docker_seconds $(wc -l <"$work/containers") $containers $networks $(wc -l <"$work/volumes") $volumes"
fi

host="$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end, MALLOC_ARENA_MAX=${arena_max:-unset}"
python3 - "$work/samples" "$host_jobs" "$first_jobs" "$host_seconds" "$host" "$docker_report" <<'PY'
import sys
samples = {}
for line in open(sys.argv[1]):
    name, *values = line.split()
    samples[name] = [int(v) for v in values]
host_jobs, first_jobs, seconds, machine = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
failed = False
if host_jobs:
    print(f"soak: {host_jobs} host jobs after the warm-up in {seconds} s "
          f"({host_jobs / max(seconds, 1):.1f} jobs/s; {machine})")
    print("  sample       RSS KiB  anon KiB  fds  threads  spool bytes  spool files  work dirs")
    for name, (rss, anon, fds, threads, spool_bytes, spool_files, work) in samples.items():
        print(f"  {name:<10} {rss:>9} {anon:>9} {fds:>4} {threads:>8} {spool_bytes:>12} {spool_files:>12} {work:>10}")
    warm = samples["warm-up"]
    for n in (first_jobs, host_jobs):
        after = samples[str(n)]
        retained = (after[0] - warm[0]) * 1024 / n
        anon = (after[1] - warm[1]) * 1024 / n
        print(f"  retained per job after {n} jobs: {retained:.1f} B RSS, {anon:.1f} B anonymous "
              f"(target < 100 B/job)")
    last = samples[str(host_jobs)]
    retained = (last[0] - warm[0]) * 1024 / host_jobs
    # The warm-up opens what the daemon keeps (connections to Gitea): what a job leaves is counted
    # from there. Fewer is no leak: the pool closed a connection it kept.
    fds_left = last[2] - warm[2]
    print(f"  descriptors left: {fds_left} (target 0; {warm[2] - samples['start'][2]} opened in the "
          f"warm-up and kept); spool files left: {last[5]} (target 0); job directories left: {last[6]}")
    failed = retained >= 100 or fds_left > 0 or last[5] != 0
if sys.argv[6]:
    jobs, secs, created, containers, networks, mounted, volumes = map(int, sys.argv[6].split())
    print(f"docker soak: {jobs} jobs in {secs} s, {created} containers created; left after the daemon "
          f"stopped: {containers} containers, {networks} networks, {volumes} of the {mounted} volumes "
          f"they mounted (target 0)")
    failed = failed or containers or networks or volumes
sys.exit(1 if failed else 0)
PY
