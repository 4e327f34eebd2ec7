#!/bin/bash
# The cache engine against the raw disk: save and restore of a 1 GiB entry through the v1 API
# (32 MiB chunks, 4 in flight, as @actions/cache) vs `dd conv=fsync` and `cp` + sync of the same
# bytes on the same disk, the server's peak RSS, and v1 lookups in an index of 100 000 entries.
# BENCH_DIR picks the disk (default: a scratch dir under target/); SIZE_MIB the entry size.
# PROFILE=dev for a quick (unrepresentative) run; release by default.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile="${PROFILE:-release}"
size_mib="${SIZE_MIB:-1024}"
cargo build --quiet --profile "$profile" --example cache_bench
# The figures move with the machine's load: print it with them.
echo "profile $profile, load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
dir_name=$([ "$profile" = dev ] && echo debug || echo "$profile")
bin="target/$dir_name/examples/cache_bench"
work=$(mktemp -d "${BENCH_DIR:-target}/cache-bench.XXXXXX")
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Random bytes, so nothing on the way can compress them.
head -c "$((size_mib << 20))" /dev/urandom >"$work/source"
sync "$work/source"

secs() { local start=$1 end=$2; echo "scale=3; ($end - $start) / 1000000000" | bc; }

start=$(date +%s%N); dd if="$work/source" of="$work/raw-dd" bs=32M conv=fsync status=none; end=$(date +%s%N)
raw_save=$(secs "$start" "$end")
start=$(date +%s%N); cp --reflink=never "$work/source" "$work/raw-cp"; sync "$work/raw-cp"; end=$(date +%s%N)
raw_restore=$(secs "$start" "$end")
rm -f "$work/raw-dd" "$work/raw-cp"

coproc SERVER { exec "$bin" serve "$work/cache"; }
server_pid=$SERVER_PID
read -r -t 30 url <&"${SERVER[0]}"
result=$("$bin" transfer "$url" "$work/source")
cmp -s "$work/source" "$work/source.restored" || { echo "restored bytes differ" >&2; exit 1; }
peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
exec {SERVER[1]}>&-
wait "$server_pid" || true
server_pid=

save=$(sed -E 's/.*save_s=([0-9.]+).*/\1/' <<<"$result")
restore=$(sed -E 's/.*restore_s=([0-9.]+).*/\1/' <<<"$result")
mib_s() { echo "scale=0; $size_mib / $1" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }
# A save writes the same bytes as both raws; dd's 32 MiB buffer is slower than cp on some disks.
echo "save:    $save s ($(mib_s "$save") MiB/s) vs dd conv=fsync $raw_save s ($(mib_s "$raw_save") MiB/s): $(ratio "$raw_save" "$save")x; vs cp + sync: $(ratio "$raw_restore" "$save")x"
echo "restore: $restore s ($(mib_s "$restore") MiB/s) vs cp + sync $raw_restore s ($(mib_s "$raw_restore") MiB/s): $(ratio "$raw_restore" "$restore")x"
echo "server peak RSS: $((peak_kb / 1024)) MB"
rm -rf "$work/cache" "$work/source.restored"
"$bin" lookups "$work/index"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
