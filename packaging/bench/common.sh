# Shared by the benchmark scripts: build the release binaries, start the fake Gitea out of
# process (its admin API enqueues tasks and reads them back), register a runner in a scratch dir.
# Sourced, not run. Every wait is bounded.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# BENCH_RUNNER_BIN and BENCH_FAKE_BIN run given binaries instead of building (to compare two
# builds on the same machine).
runner_bin=${BENCH_RUNNER_BIN:-"$repo_root/target/release/act_runner"}
fake_bin=${BENCH_FAKE_BIN:-"$repo_root/target/release/examples/fake-gitea"}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

build_release() {
    if [ -n "${BENCH_RUNNER_BIN:-}${BENCH_FAKE_BIN:-}" ]; then
        log "using $runner_bin and $fake_bin as they are"
        return 0
    fi
    log "building release binaries"
    (cd "$repo_root" && cargo build --release --quiet --bin act_runner --example fake-gitea) \
        || die "cargo build failed"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_fake: sets fake_url and fake_pid; the fake is killed on exit.
start_fake() {
    local port
    port=$(free_port)
    "$fake_bin" --listen "127.0.0.1:$port" --registration-token BENCH >"$work/fake.log" 2>&1 &
    fake_pid=$!
    fake_url="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        curl -fsS "$fake_url/_fake/counters" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "the fake Gitea did not start (see $work/fake.log)"
}

# register LABEL: writes $work/config.yaml and $work/.runner.
register() {
    local label=$1
    cat >"$work/config.yaml" <<YAML
log:
  level: warn
runner:
  file: $work/.runner
  capacity: 1
  timeout: 1h
YAML
    "$runner_bin" -c "$work/config.yaml" register --no-interactive --instance "$fake_url" \
        --token BENCH --name bench --labels "$label" >"$work/register.log" 2>&1 \
        || die "register failed: $(cat "$work/register.log")"
}

# enqueue WORKFLOW_FILE LABEL: prints the task id.
enqueue() {
    curl -fsS -X POST --data-binary @"$1" "$fake_url/_fake/tasks?labels=$2" | jq -r .task_id
}

cleanup_bench() {
    [ -n "${fake_pid:-}" ] && kill "$fake_pid" 2>/dev/null || true
    [ -n "${work:-}" ] && rm -rf "$work"
}
