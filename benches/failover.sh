#!/usr/bin/env bash
# HA failover and the shared state's write cost, from the real-process
# tests (a real ZooKeeper 3.8 ensemble on loopback, tickTime 500 ms,
# session timeout 2 s; debug build: the time is the session's, not CPU's):
# - kill -> next due page over ten SIGKILLs of the active replica of three
#   on a 3-node coordination ensemble (tests/it/ha.rs
#   three_replicas_on_a_three_node_ensemble);
# - the fenced multi writes at 1,000 and 10,000 groups, the load of 10,000
#   and the election's failover (election_failover_fencing_and_shared_state).
#
# Usage: benches/failover.sh [RUNS=1]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
for _ in $(seq "$runs"); do
  cargo test -q --test it ha:: -- --nocapture --test-threads 1 2>&1 |
    grep -E '^(failover|10,000|step of|load of)|kill ->' || true
done
