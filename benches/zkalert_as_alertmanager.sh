#!/usr/bin/env bash
# Starts a release `zkalert run` configured as the Alertmanager of
# ../shared/bench/alertmanager/am_bench.py configures (group by alertname and
# cluster, group_wait GROUP_WAIT, group_interval 1s, repeat 1h, a webhook in
# Alertmanager's format), intake only (no sources), its state under STORAGE.
# am_bench.py's --engine-cmd runs it: it execs zkalert, so the benchmark
# measures zkalert's own process.
#
# Usage: benches/zkalert_as_alertmanager.sh STORAGE PORT HOOK_URL GROUP_WAIT
set -euo pipefail
storage=$1 port=$2 hook=$3 group_wait=$4
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$storage"
tiers=""
for tier in P0 P1 P2 P3; do
  tiers+="    $tier: {channels: [hook], group_wait: $group_wait, group_interval: 1s, repeat_interval: 1h, digest: 'off'}"$'\n'
done
cat > "$storage/zkalert.yaml" <<YAML
data_dir: $storage/data
server: {listen: '127.0.0.1:$port'}
notifiers:
  - {name: hook, type: webhook, flavor: alertmanager, url: '$hook'}
routing:
  group_by: [alertname, cluster]
  tiers:
$tiers
YAML
exec env ZKALERT_LOG=${ZKALERT_LOG:-warn} "$here/target/release/zkalert" run -c "$storage/zkalert.yaml"
