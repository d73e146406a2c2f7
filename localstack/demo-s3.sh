#!/usr/bin/env bash
# Replicate a demo database to a local S3, list the objects, restore it and
# compare. Uses moto by default; pass --localstack for LocalStack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
server="moto"
[ "${1:-}" = "--localstack" ] && server="localstack"
if [ "$server" = moto ]; then
  port="${MOTO_PORT:-5555}"
  ./localstack/moto.sh start "$port"
  endpoint="http://127.0.0.1:$port"
  py=.venv/bin/python
  trap './localstack/moto.sh stop "$port" >/dev/null' EXIT
else
  ./localstack/localstack.sh start
  endpoint="http://127.0.0.1:4566"
  py=.venv-localstack/bin/python
  trap './localstack/localstack.sh stop >/dev/null' EXIT
fi
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
bucket="litestreampp-demo"
"$py" - "$endpoint" "$bucket" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
try:
    s3.create_bucket(Bucket=sys.argv[2])
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
PY
cargo build --release --bins -p litestreampp -p litestreampp-demos
BIN="$ROOT/target/release"
rm -rf "$ROOT/demo-data/s3"
mkdir -p "$ROOT/demo-data/s3"
DB="$ROOT/demo-data/s3/app.db"
URL="s3://$bucket/apps/demo.db?endpoint=$endpoint&region=us-east-1&forcePathStyle=true"

echo "== writing to $DB while replicating it to $URL"
"$BIN/lsdemo" write --db "$DB" --txs 1 --interval-ms 0 >/dev/null
"$BIN/litestreampp" replicate "$DB" "$URL" &
REPLICATOR=$!
"$BIN/lsdemo" write --db "$DB" --txs 200 --interval-ms 10
sleep 1
kill -TERM "$REPLICATOR"
wait "$REPLICATOR"

echo "== objects in s3://$bucket"
"$py" - "$endpoint" "$bucket" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]):
    for o in page.get("Contents", []):
        head = s3.head_object(Bucket=sys.argv[2], Key=o["Key"])
        print(f'{o["Size"]:>9}  {o["Key"]}  litestream-timestamp={head["Metadata"].get("litestream-timestamp")}')
PY

echo "== restoring"
"$BIN/litestreampp" restore -integrity-check full -o "$ROOT/demo-data/s3/restored.db" "$URL"
"$BIN/lsdemo" compare "$DB" "$ROOT/demo-data/s3/restored.db"
