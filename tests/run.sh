#!/usr/bin/env bash
# Runs every test of litestreampp on a fresh machine: installs the test
# dependencies into the project's .venv (Go Litestream 0.5.17), checks
# formatting and lints, builds the binaries the end-to-end tests run, and
# runs all tests with cargo-nextest (release build: the tests do heavy I/O).
set -euo pipefail
cd "$(dirname "$0")/.."
./tests/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo build --release --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast
fi
