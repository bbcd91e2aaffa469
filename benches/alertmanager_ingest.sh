#!/usr/bin/env bash
# Alert intake side by side (issue 14): the yardstick driver
# ../shared/bench/alertmanager/am_bench.py posts the same alerts, in batches
# as Prometheus does, to Alertmanager 0.25 (Debian prometheus-alertmanager)
# and to a release zkalert configured alike (benches/zkalert_as_alertmanager.sh):
# accepted alerts/s, CPU seconds, RSS per active alert at 10k and 100k
# alerts, POST -> webhook latency, dedup. One engine at a time.
#
# Usage: benches/alertmanager_ingest.sh [--quick | am_bench.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
yardstick=../shared/bench/alertmanager
[ -f "$yardstick/am_bench.py" ] || { echo "the yardstick is not at $yardstick" >&2; exit 1; }
cargo build --release -q --bin zkalert
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=${TMPDIR:-/tmp}/zkalert-ingest-$stamp
mkdir -p "$out"
python3 "$yardstick/am_bench.py" --out "$out/alertmanager.json" "$@"
python3 "$yardstick/am_bench.py" --out "$out/zkalert.json" \
  --engine-cmd "$PWD/benches/zkalert_as_alertmanager.sh {storage} {port} {hook_url} {group_wait}" "$@"
echo "## Alertmanager"
python3 "$yardstick/summarise.py" "$out/alertmanager.json"
echo "## zkalert"
python3 "$yardstick/summarise.py" "$out/zkalert.json"
