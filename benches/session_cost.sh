#!/usr/bin/env bash
# What held sessions cost (issue 13), and a healthy soak: a real 3-node
# ZooKeeper ensemble (the tests' harness, maxClientCnxns=0) and a release
# `zkalert run` with the built-in pack over SOURCES sources, each the
# ensemble's three nodes (3 × SOURCES polled nodes; with sessions, as many
# held sessions), for SECONDS with sessions and again without. Prints CPU
# share of one core, peak RSS, the connections the ensemble counted and
# what paged; with QUIET=1, fails if anything paged.
#
# Usage: benches/session_cost.sh [SOURCES=333] [SECONDS=120] [MODES=true,false]
#   QUIET=1 benches/session_cost.sh 1 600 true   # the 10-minute healthy soak
#   SESSION_TIMEOUT=10s benches/session_cost.sh   # pings scale with 1/timeout
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin zkalert
export SC_SOURCES=${1:-333} SC_SECONDS=${2:-120} SC_MODES=${3:-true,false} SC_QUIET=${QUIET:-0} SC_SESSION_TIMEOUT=${SESSION_TIMEOUT:-4s}
export ZKALERT_BENCH_BIN=$PWD/target/release/zkalert
ulimit -n 65536 2>/dev/null || true
cargo test -q --test it ensemble::session_cost_benchmark -- --ignored --nocapture 2>&1 |
  grep -E '^sessions|^  paged|panicked|assert' || true
