#!/usr/bin/env bash
# CI hook for the benchmark harness: run berth-bench and the fleet simulation in --quick mode and
# the plan-growth micro-benchmark at two sizes, and check that they produced every expected row
# (the figures themselves are not asserted: CI machines vary).
#
#   bash e2e/bench/ci.sh            from the workspace root (needs dockerd, python3 + pip)
#
# Writes to target/bench-ci/ so that a developer's full-run results in target/bench/ stay put.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=target/bench-ci
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
started=$SECONDS
cargo run --release -p berth-bench -- --quick --out "$OUT" >"$OUT.stdout"
took=$((SECONDS - started))
cat "$OUT.stdout"

fail=0
need() { # need SECTION,METRIC,CONTENDER — a row with at least one sample
  if ! awk -F, -v key="$1" '($1","$2","$3) == key && $6 > 0 { found = 1 } END { exit !found }' "$OUT/results.csv"; then
    echo "berth-bench ci: missing row $1" >&2
    fail=1
  fi
}
for c in berth compose raw; do
  need "cold_converge,wall_time,$c"
  need "cold_converge,api_calls,$c"
done
need cold_converge,ratio_berth_to_raw,berth
need cold_converge,ratio_berth_to_compose,berth
need noop,apply_api_reads,berth
need noop,apply_api_writes,berth
need noop,up_api_reads,compose
need noop,process_wall_time,berth
need noop,process_wall_time,compose
need noop,agent_pass_time,berth
need noop,list_floor,raw
need noop,agent_pass_api_reads,berth
need noop,agent_pass_api_writes,berth
need floor,create_start,raw
need floor,stop_remove_create_start,raw
need change,latency,berth
need drift,latency,berth
need idle,rss,berth
need idle,cpu,berth
need idle,api_calls_per_minute,berth
if ! grep -q '^growth,ratio_t' "$OUT/results.csv"; then
  echo "berth-bench ci: missing growth rows" >&2
  fail=1
fi
for f in results.md results.csv converge.svg; do
  [[ -s $OUT/$f ]] || { echo "berth-bench ci: $OUT/$f missing or empty" >&2; fail=1; }
done
grep -q '<text' "$OUT/converge.svg" || { echo "berth-bench ci: converge.svg has no text" >&2; fail=1; }
for s in '### 1. Cold converge' '### 2. No-op pass' '### 3–4. Change and drift' '### 5. Idle cost' '### 6. Growth'; do
  grep -qF "$s" "$OUT.stdout" || { echo "berth-bench ci: section '$s' missing from the markdown" >&2; fail=1; }
done

# The fleet simulation, short version: 10 agents, 100 custom resources, 5 changes.
FLEET=target/fleet-ci
rm -rf "$FLEET"
started=$SECONDS
cargo run --release -p berth-bench --bin fleet -- --quick --out "$FLEET" >"$FLEET.stdout"
fleet_took=$((SECONDS - started))
cat "$FLEET.stdout"
fleet_need() { # fleet_need METRIC — a row with at least one sample
  if ! awk -F, -v m="$1" '$1 == "fleet" && $2 == m && $6 > 0 { found = 1 } END { exit !found }' "$FLEET/results.csv"; then
    echo "berth-bench ci: missing fleet row $1" >&2
    fail=1
  fi
}
for m in converge_time startup_requests idle_requests_per_minute idle_lease_per_minute open_watches \
  open_watches_per_agent open_connections change_latency_first_host change_latency_all_hosts \
  status_writes_per_change status_writes_per_targeted_host status_writes_by_other_hosts \
  aggregate_correct rss idle_cpu; do
  fleet_need "$m"
done
for f in results.md results.csv latency.svg; do
  [[ -s $FLEET/$f ]] || { echo "berth-bench ci: $FLEET/$f missing or empty" >&2; fail=1; }
done
grep -qF '### Fleet:' "$FLEET.stdout" || { echo "berth-bench ci: fleet table missing" >&2; fail=1; }

# The plan-growth micro-benchmark, short version: 100 and 1,000 containers, 2 rounds.
GROWTH=target/plan-growth-ci
rm -rf "$GROWTH"
started=$SECONDS
cargo run --release -p berth-bench --bin plan-growth -- --sizes 100,1000 --rounds 2 --out "$GROWTH" \
  >"$GROWTH.stdout"
growth_took=$((SECONDS - started))
cat "$GROWTH.stdout"
for stage in decode resolve observe_rollouts plan; do
  grep -q "^$stage,1000," "$GROWTH/plan-growth.csv" ||
    { echo "berth-bench ci: plan-growth row $stage missing" >&2; fail=1; }
done

if ((fail)); then
  echo "berth-bench ci: FAILED (quick runs took ${took}s, ${fleet_took}s and ${growth_took}s)" >&2
  exit 1
fi
echo "berth-bench ci: all rows present; quick runs took ${took}s (bench), ${fleet_took}s (fleet) and ${growth_took}s (plan growth)"
