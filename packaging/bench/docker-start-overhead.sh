#!/usr/bin/env bash
# Start overhead of a one-step job on the Docker backend (run_job -> the step's first log line)
# against a raw docker create + start + exec of the same image, in the same run (rounds interleaved).
# Prints the medians and the median of per-round ratios; the target (issue 3) is at most 1.3x.
# Usage: packaging/bench/docker-start-overhead.sh [RUNS] [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-30}"
image="${2:-act-runner-test/debian:12}"
tests/support/images/build.sh
exec cargo bench --bench docker_start_overhead -- --runs "$runs" --image "$image"
