#!/usr/bin/env bash
# Time to page (issue 13): a real 3-node ZooKeeper ensemble (the tests'
# harness), `zkalert run` with sessions held, a webhook receiver on
# loopback; TTP_KILLS follower SIGKILLs, one SIGSTOP, one quorum loss.
# Prints kill -> webhook (median, p90, max) and its split. Debug build
# (the integration tests'); the time is the engine's waits, not CPU.
#
# Usage: benches/time_to_page.sh [POLL=15s] [KILLS=10] [SESSIONS=true]
# The yardstick (Prometheus + blackbox_exporter + Alertmanager) is
# ../shared/bench/time-to-page/run.py; run it in the same session.
set -euo pipefail
cd "$(dirname "$0")/.."
export TTP_POLL=${1:-15s} TTP_KILLS=${2:-10} TTP_SESSIONS=${3:-true}
cargo test -q --test it ensemble::time_to_page_benchmark -- --ignored --nocapture 2>&1 |
  grep -E '^(time to page|  |\[ttp)' || true
