#!/usr/bin/env bash
# The fleet demo: build N tenant databases (default 5,000), run
# `litestreampp run` over them against a local S3 (moto; --localstack for
# LocalStack; --file for a local directory), drive writes on a skewed
# subset (a few hot tenants, some warm, most idle), print what happened
# (hot/cold counts over time, lag, bytes), then restore a sample and compare.
#   demos/fleet.sh [--file|--localstack] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
target="moto"
case "${1:-}" in
  --file) target="file"; shift ;;
  --localstack) target="localstack"; shift ;;
esac
COUNT="${1:-5000}"
cargo build --release --bins -p litestreampp -p litestreampp-demos
BIN="$ROOT/target/release"
DATA="$ROOT/demo-data/fleet"
ADDR="127.0.0.1:${FLEET_PORT:-9099}"
rm -rf "$DATA" "$ROOT/demo-data/fleet-replicas" "$ROOT/demo-data/fleet-restored"
mkdir -p "$ROOT/demo-data/fleet-restored"

RUNNER=""
stop_server() { :; }
cleanup() { [ -n "$RUNNER" ] && kill "$RUNNER" 2>/dev/null; stop_server; }
trap cleanup EXIT
if [ "$target" = file ]; then
  TEMPLATE="file://$ROOT/demo-data/fleet-replicas/{path}"
  restore_url() { echo "file://$ROOT/demo-data/fleet-replicas/$1"; }
else
  if [ "$target" = moto ]; then
    port="${MOTO_PORT:-5556}"
    ./localstack/moto.sh start "$port"
    endpoint="http://127.0.0.1:$port"
    py=.venv/bin/python
    stop_server() { ./localstack/moto.sh stop "$port" >/dev/null; }
  else
    ./localstack/localstack.sh start
    endpoint="http://127.0.0.1:4566"
    py=.venv-localstack/bin/python
    stop_server() { ./localstack/localstack.sh stop >/dev/null; }
  fi
  export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
  "$py" - "$endpoint" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
try:
    s3.create_bucket(Bucket="fleet-demo")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
PY
  Q="endpoint=$endpoint&region=us-east-1&forcePathStyle=true"
  TEMPLATE="s3://fleet-demo/tenants/{path}?$Q"
  restore_url() { echo "s3://fleet-demo/tenants/$1?$Q"; }
fi

echo "== building $COUNT databases"
"$BIN/lsdemo" fleet-build --dir "$DATA" --count "$COUNT" --shards 50

echo "== litestreampp run (replicas: ${TEMPLATE%%\?*})"
"$BIN/litestreampp" run --pattern "$DATA/**/*.db" --replica "$TEMPLATE" \
  --hot-idle-timeout 5s --max-hot 100 --addr "$ADDR" 2>"$ROOT/demo-data/fleet.log" &
RUNNER=$!

status_line() {
  "$BIN/litestreampp" status --addr "$ADDR" --json 2>/dev/null | "${py:-python3}" -c '
import json, sys
s = json.load(sys.stdin)
lag = max([h["lag_seconds"] for h in s["most_lagging"]] or [0])
print("t=%6.1fs  databases=%d  hot=%d  cold=%d  queued=%d  failed=%d  promotions=%d  demotions=%d  max lag=%.2fs" % (
    s["uptime_seconds"], s["databases"], s["hot"], s["cold"], s["queued"], s["failed"], s["promotions"], s["demotions"], lag))
' || echo "(starting)"
}

echo "== initial backlog"
until "$BIN/litestreampp" status --addr "$ADDR" --json 2>/dev/null | grep -q '"queued": 0'; do
  status_line; sleep 2
done
status_line

echo "== writes on a skewed subset for 20s (10 hot, 200 warm, the rest idle)"
"$BIN/lsdemo" fleet-drive --dir "$DATA" --hot 10 --warm 200 --rate 200 --seconds 20 &
DRIVER=$!
while kill -0 "$DRIVER" 2>/dev/null; do status_line; sleep 4; done
wait "$DRIVER"
echo "== idle: hot databases are demoted"
for _ in 1 2 3 4; do status_line; sleep 2; done

echo "== metrics"
curl -s "http://$ADDR/metrics" | grep -E '^litestreampp_(databases|promotions|demotions|syncs|uploaded|wal_bytes|replication_lag_seconds_(sum|count)|upload_seconds_(sum|count))' || true

kill -TERM "$RUNNER"; wait "$RUNNER" || true; RUNNER=
echo "== restoring 20 tenants and comparing"
for db in $(find "$DATA" -name '*.db' | sort | awk 'NR % int('"$COUNT"'/20+1) == 1' | head -20); do
  rel="${db#$DATA/}"
  out="$ROOT/demo-data/fleet-restored/$(echo "$rel" | tr / _)"
  "$BIN/litestreampp" restore -o "$out" "$(restore_url "$rel")" 2>/dev/null
  "$BIN/lsdemo" compare "$db" "$out" >/dev/null
done
echo "20 restores match their sources; log in demo-data/fleet.log"
