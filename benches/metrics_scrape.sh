#!/usr/bin/env bash
# `GET /metrics` end to end: one `zkalert run` (release, the built-in rule
# pack) polls N fake ZooKeeper nodes (fake_zk: real 3.8.0 captures replayed
# on loopback) every 10 s; after two polls, SCRAPES scrapes of /metrics are
# timed with curl (request to last byte), and the last one is checked with
# `promtool check metrics`.
#
# Usage: benches/metrics_scrape.sh [NODES=1000] [SCRAPES=20]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-1000}
scrapes=${2:-20}
cargo build --release -q -p zkalert -p zkalert-benches --bins
work=$(mktemp -d)
trap 'kill $fake_pid $zk_pid 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 65536 2>/dev/null || true
./target/release/fake_zk "$nodes" tests/fixtures/zk/3.8.0 "$work/zkalert.yaml" 10s &
fake_pid=$!
for _ in $(seq 100); do [ -s "$work/zkalert.yaml" ] && break; sleep 0.1; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'server: {listen: "127.0.0.1:%s"}\n' "$port" >>"$work/zkalert.yaml"
(cd "$work" && exec env ZKALERT_LOG=${ZKALERT_LOG:-info} "$OLDPWD/target/release/zkalert" run -c zkalert.yaml 2>"$work/zkalert.log") &
zk_pid=$!
sleep 25 # start, and two polls of every node
times=()
for _ in $(seq "$scrapes"); do
  times+=("$(curl -sS -o "$work/metrics.txt" -w '%{time_total}' "http://127.0.0.1:$port/metrics")")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "nodes=$nodes scrapes=$scrapes bytes=$(wc -c <"$work/metrics.txt") samples=$(grep -vc '^#' "$work/metrics.txt")" \
  "zk_series=$(grep -c '^zk_' "$work/metrics.txt") time_s: min=$(echo "$sorted" | head -1)" \
  "median=$(echo "$sorted" | sed -n "$(( (scrapes + 1) / 2 ))p") max=$(echo "$sorted" | tail -1)"
promtool check metrics <"$work/metrics.txt" && echo "promtool check metrics: no problem"
grep -E "WARN|ERROR" "$work/zkalert.log" | head -5 || true
