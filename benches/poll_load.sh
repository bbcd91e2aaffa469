#!/usr/bin/env bash
# Polling load: one `zkalert run` polling N fake ZooKeeper nodes (fake_zk:
# real 3.8.0 captures replayed on loopback, in one separate process) every
# INTERVAL, with the built-in rule pack. Reports zkalert's CPU share (of one
# core) and peak RSS over DURATION seconds.
#
# Usage: benches/poll_load.sh [NODES=1000] [INTERVAL=10s] [DURATION=120]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-1000}
interval=${2:-10s}
duration=${3:-120}
cargo build --release -q -p zkalert -p zkalert-benches --bins
work=$(mktemp -d)
trap 'kill $fake_pid $zk_pid 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || true
./target/release/fake_zk "$nodes" tests/fixtures/zk/3.8.0 "$work/zkalert.yaml" "$interval" &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/zkalert.yaml" ] && break; sleep 0.1; done
(cd "$work" && exec env ZKALERT_LOG=${ZKALERT_LOG:-info} "$OLDPWD/target/release/zkalert" run -c zkalert.yaml 2>"$work/zkalert.log") &
zk_pid=$!
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$zk_pid/stat"; }
sleep 5 # let it start and poll once
start_cpu=$(cpu); start=$(date +%s.%N); peak_rss=0
end=$(( $(date +%s) + duration ))
while [ "$(date +%s)" -lt "$end" ]; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$zk_pid/status")
  [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
  sleep 1
done
used=$(( $(cpu) - start_cpu )); elapsed=$(echo "$(date +%s.%N) - $start" | bc)
share=$(echo "scale=2; 100 * $used / $ticks / $elapsed" | bc)
polls=$(grep -c "polled" "$work/zkalert.log" || true)
echo "nodes=$nodes interval=$interval duration=${elapsed%.*}s cpu_share_of_one_core=${share}% peak_rss=$((peak_rss / 1024))MiB"
grep -E "WARN|ERROR" "$work/zkalert.log" | head -5 || true
