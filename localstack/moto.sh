#!/usr/bin/env bash
# A local S3 on 127.0.0.1: moto server, the light default the tests use.
#   localstack/moto.sh start [PORT]   start in the background (default port 5555), wait until healthy
#   localstack/moto.sh check [PORT]   exit 0 if it answers
#   localstack/moto.sh stop  [PORT]   stop it
# Any credentials are accepted; buckets must be created before use
# (an unsigned PUT /BUCKET does it, see bucket.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-}"
port="${2:-${MOTO_PORT:-5555}}"
state="target/localstack"
pidfile="$state/moto-$port.pid"
mkdir -p "$state"

healthy() {
  .venv/bin/python - "$port" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2)
except Exception:
    sys.exit(1)
PY
}

case "$cmd" in
  start)
    ./tests/setup.sh
    if healthy 2>/dev/null; then echo "moto already running on 127.0.0.1:$port"; exit 0; fi
    nohup .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$state/moto-$port.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 150); do
      if healthy 2>/dev/null; then echo "moto running on http://127.0.0.1:$port (pid $(cat "$pidfile"))"; exit 0; fi
      sleep 0.2
    done
    echo "moto did not become healthy; see $state/moto-$port.log" >&2
    exit 1
    ;;
  check)
    if healthy; then echo "moto healthy on 127.0.0.1:$port"; else echo "moto not answering on 127.0.0.1:$port" >&2; exit 1; fi
    ;;
  stop)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; echo "moto stopped"; else echo "no moto started here on port $port"; fi
    ;;
  *)
    echo "usage: $0 start|check|stop [PORT]" >&2
    exit 2
    ;;
esac
