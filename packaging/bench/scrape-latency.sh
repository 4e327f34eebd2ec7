#!/bin/sh
# Scrape latency of /metrics: p99 with 200 concurrent scrapers on an idle registry and while the
# registry is updated hot (simulated running jobs). Prints one line per phase.
# PROFILE=dev for a quick (unrepresentative) run; release by default.
set -eu
cd "$(dirname "$0")/../.."
profile="${PROFILE:-release}"
exec cargo run --quiet --profile "$profile" --example scrape_latency
