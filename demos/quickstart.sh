#!/usr/bin/env bash
# Quickstart: build litestreampp, generate a database while replicating it
# to ./replica, then restore it and check the copy against the source.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
cargo build --release --bins -p litestreampp -p litestreampp-demos
BIN="$ROOT/target/release"
rm -rf "$ROOT/demo-data" "$ROOT/replica"
mkdir -p "$ROOT/demo-data"
DB="$ROOT/demo-data/app.db"
URL="file://$ROOT/replica"

echo "== writing to $DB while replicating it to $URL"
"$BIN/lsdemo" write --db "$DB" --txs 1 --interval-ms 0 >/dev/null
"$BIN/litestreampp" replicate "$DB" "$URL" &
REPLICATOR=$!
trap 'kill $REPLICATOR 2>/dev/null || true' EXIT
"$BIN/lsdemo" write --db "$DB" --txs 300 --interval-ms 10
sleep 1
kill -TERM "$REPLICATOR"
wait "$REPLICATOR"
trap - EXIT

echo "== replica files"
"$BIN/litestreampp" ltx "$URL" | tail -n 5

echo "== restoring"
"$BIN/litestreampp" restore -integrity-check full -o "$ROOT/demo-data/restored.db" "$URL"
"$BIN/lsdemo" compare "$DB" "$ROOT/demo-data/restored.db"
