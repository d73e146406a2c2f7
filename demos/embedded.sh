#!/usr/bin/env bash
# The embedded-replication demo: the REST server of demos/embedded-server
# replicates its own database (to ./demo-data/embedded/replica, a file
# replica), takes writes over HTTP, stops on SIGTERM with a final sync,
# loses its database file, and on the next start restores it before it
# answers a request.
#   demos/embedded.sh [WRITES]
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES="${1:-200}"
cargo build --release -p embedded-server
BIN="$PWD/target/release/embedded-server"
DIR="$PWD/demo-data/embedded"
rm -rf "$DIR" && mkdir -p "$DIR"
PORT="${EMBEDDED_PORT:-8088}"
export SQLITEREST_DB="$DIR/app.db" SQLITEREST_LISTEN="127.0.0.1:$PORT"
export SQLITEREST_REPLICATION_ENABLED=true SQLITEREST_REPLICATION_REPLICA_URL="file://$DIR/replica"

start() {
  "$BIN" 2>>"$DIR/server.log" &
  PID=$!
  for _ in $(seq 1 300); do
    curl -sf "127.0.0.1:$PORT/healthz" >/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$DIR/server.log"; exit 1; }
    sleep 0.05
  done
  echo "server did not start"; cat "$DIR/server.log"; exit 1
}
stop() { kill -TERM "$PID"; wait "$PID"; }
count() { curl -sf "127.0.0.1:$PORT/items?limit=1000" | grep -o '"id":' | wc -l | tr -d ' '; }

echo "== start with an empty replica; $WRITES writes over HTTP"
start
for i in $(seq 1 "$WRITES"); do
  curl -sf -X POST "127.0.0.1:$PORT/items" -H 'content-type: application/json' \
    -d "{\"name\":\"item $i\",\"value\":\"$RANDOM\"}" >/dev/null
done
before=$(count)
curl -s "127.0.0.1:$PORT/healthz"; echo
echo "== SIGTERM: requests in flight answered, final sync, exit"
stop
echo "== the database file is lost"
rm -f "$DIR/app.db"
echo "== start again: restored before the first request"
start
after=$(count)
grep -E "restored|restore check" "$DIR/server.log" | tail -2 | sed 's/^/   /'
stop
echo "rows before: $before; rows after the restore: $after"
[ "$before" = "$after" ] && echo "OK: every acknowledged write is back" || { echo "MISMATCH"; exit 1; }
