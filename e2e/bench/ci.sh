#!/usr/bin/env bash
# CI hook for the benchmark harness: run berth-bench in --quick mode and check that it
# produced every expected row (the figures themselves are not asserted: CI machines vary).
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
if ((fail)); then
  echo "berth-bench ci: FAILED (quick run took ${took}s)" >&2
  exit 1
fi
echo "berth-bench ci: all rows present; quick run took ${took}s"
