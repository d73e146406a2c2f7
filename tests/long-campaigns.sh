#!/usr/bin/env bash
# The long runs of the reliability campaigns (docs/reliability.md), one
# after another so that they do not compete for the machine: 501 crash
# trials, the fault campaign at 1 % and at 30 % with a one-minute outage,
# then 10 minutes of fuzzing per target, then a replica outage of an
# hour's failed syncs (6 minutes at a 100 ms sync interval) under a fleet
# of 100,000 databases, 1,000 of them hot, then the hour-long soak of 10,000
# databases (restarts, kills, a 5-minute outage; docs/reliability.md).
# About four and a half hours on 2 cores. Each
# campaign's output (tallies, fault counts, catch-up time, fuzz stats) goes
# to target/long-campaigns/<campaign>.log; the run stops at the first
# failure.
#
#   tests/long-campaigns.sh [crash] [fault] [fuzz] [outage] [soak]   # default: all
set -euo pipefail
cd "$(dirname "$0")/.."
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(crash fault fuzz outage soak)
out=target/long-campaigns
mkdir -p "$out"
./tests/setup.sh
cargo build --profile ci --workspace --bins
nextest=(cargo nextest run --profile long --cargo-profile ci -p litestreampp-e2e --no-capture)

run() { # NAME COMMAND...: runs COMMAND with its output in $out/NAME.log
  local name="$1"
  shift
  echo "$(date -u +%H:%M:%S) $name: $*"
  local start=$SECONDS
  if ! "$@" >"$out/$name.log" 2>&1; then
    tail -n 60 "$out/$name.log"
    echo "$name failed; the log is $out/$name.log" >&2
    exit 1
  fi
  echo "$(date -u +%H:%M:%S) $name passed in $((SECONDS - start)) s"
}

for c in "${want[@]}"; do
  case "$c" in
  crash)
    run crash env CRASH_TRIALS=501 "${nextest[@]}" --test crash
    ;;
  fault)
    run fault-1pct env FAULT_RATE=0.01 "${nextest[@]}" --test fault -- s3_
    run fault-30pct env FAULT_RATE=0.30 FAULT_OUTAGE_SECS=60 FAULT_SECS=60 "${nextest[@]}" --test fault
    ;;
  fuzz)
    run fuzz ./tests/fuzz.sh 600
    ;;
  outage)
    run outage env OUTAGE_DBS=100000 OUTAGE_HOT=1000 OUTAGE_SECS=360 "${nextest[@]}" --test outage
    ;;
  soak)
    run soak env SOAK_DBS=10000 SOAK_SECS=3600 SOAK_RESTART_SECS=600 SOAK_KILL_SECS=900 \
      SOAK_OUTAGE_SECS=300 SOAK_SAMPLE_SECS=60 SOAK_SETTLE_SECS=600 SOAK_L0_RETENTION=5m \
      "${nextest[@]}" --test soak
    ;;
  *)
    echo "unknown campaign $c (crash, fault, fuzz, outage or soak)" >&2
    exit 2
    ;;
  esac
done
