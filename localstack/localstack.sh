#!/usr/bin/env bash
# A local S3 on 127.0.0.1:4566: LocalStack in host mode (no Docker), with
# pinned packages in its own venv (.venv-localstack).
#   localstack/localstack.sh start | check | stop
# The `localstack` CLI wants a licence token; its runtime module does not.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-}"
venv=".venv-localstack"
state="target/localstack"
pidfile="$state/localstack.pid"
mkdir -p "$state"

healthy() {
  "$venv/bin/python" -P - <<'PY'
import json, sys, urllib.request
try:
    h = json.load(urllib.request.urlopen("http://127.0.0.1:4566/_localstack/health", timeout=2))
    sys.exit(0 if h.get("services", {}).get("s3") in ("running", "available") else 1)
except Exception:
    sys.exit(1)
PY
}

case "$cmd" in
  start)
    if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
    # -P: do not import this repository's localstack/ folder by mistake.
    if ! "$venv/bin/python" -P -c "import localstack.runtime.main" 2>/dev/null; then
      "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'localstack-core[runtime]==4.13.1' 'cbor2<6' 'pyopenssl<25' 'cryptography<45' service_identity boto3
    fi
    if healthy 2>/dev/null; then echo "LocalStack already running"; exit 0; fi
    SERVICES=s3 EAGER_SERVICE_LOADING=1 GATEWAY_LISTEN=127.0.0.1:4566 DISABLE_EVENTS=1 \
      SKIP_SSL_CERT_DOWNLOAD=1 DNS_ADDRESS=0 LOCALSTACK_VOLUME_DIR="$PWD/$state/volume" \
      nohup "$venv/bin/python" -P -m localstack.runtime.main >"$state/localstack.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 300); do
      if healthy 2>/dev/null; then echo "LocalStack S3 running on http://127.0.0.1:4566 (pid $(cat "$pidfile"))"; exit 0; fi
      sleep 0.5
    done
    echo "LocalStack did not become healthy; see $state/localstack.log" >&2
    exit 1
    ;;
  check)
    if healthy; then echo "LocalStack S3 healthy on 127.0.0.1:4566"; else echo "LocalStack not answering on 127.0.0.1:4566" >&2; exit 1; fi
    ;;
  stop)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; echo "LocalStack stopped"; else echo "no LocalStack started here"; fi
    ;;
  *)
    echo "usage: $0 start|check|stop" >&2
    exit 2
    ;;
esac
