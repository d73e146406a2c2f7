#!/usr/bin/env bash
# Fuzzes the LTX decoder, the WAL reader and the config parser with
# cargo fuzz (libFuzzer), each for SECONDS (default 60, or $FUZZ_SECONDS),
# starting from the committed seed corpus (tests/fuzz/seeds) plus what
# earlier runs here found (target/fuzz/corpus). A crash, panic, timeout or
# runaway allocation fails the run and leaves the input in
# target/fuzz/artifacts/<target>/; turn it into a regression test.
#
#   tests/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${FUZZ_SECONDS:-60}}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ltx_decode wal_read config_parse)
want="0.13.2"
if ! .tools/bin/cargo-fuzz --version 2>/dev/null | grep -q "$want"; then
  cargo install --quiet --locked cargo-fuzz --version "$want" --root .tools
fi
# No sanitizer: the code under test has no unsafe; -O -a: optimised, with
# debug assertions and overflow checks. Builds on the stable toolchain.
fuzz=(.tools/bin/cargo-fuzz fuzz)
opts=(--fuzz-dir tests/fuzz --target-dir target/fuzz -O -a -s none)
"${fuzz[@]}" build "${opts[@]}"
for t in "${targets[@]}"; do
  # Every input that once crashed a target runs first (regression tests).
  if [ -d "tests/fuzz/regressions/$t" ]; then
    "${fuzz[@]}" run "${opts[@]}" "$t" tests/fuzz/regressions/"$t"/* -- -runs=1 >"target/fuzz/$t.regressions.log" 2>&1 \
      || { tail -n 40 "target/fuzz/$t.regressions.log"; echo "a regression input of $t fails again" >&2; exit 1; }
  fi
  corpus="target/fuzz/corpus/$t"
  artifacts="target/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="target/fuzz/$t.log"
  echo "fuzzing $t for ${secs}s"
  if ! "${fuzz[@]}" run "${opts[@]}" "$t" "$corpus" "tests/fuzz/seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $t failed; the input is in $artifacts/" >&2
    exit 1
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added" "$log" | sed "s/^/  $t: /"
done
