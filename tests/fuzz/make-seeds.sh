#!/usr/bin/env bash
# Regenerates the fuzzers' seed corpus in tests/fuzz/seeds (committed):
# real LTX files written by litestreampp (a snapshot and incremental files
# of a small database), real WAL files written by SQLite (each with a mode
# byte in front, see fuzz_targets/wal_read.rs), and every YAML example of
# the docs. Needs a release build of litestreampp.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release/litestreampp
seeds=tests/fuzz/seeds
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$seeds" && mkdir -p "$seeds"/{ltx_decode,wal_read,config_parse}
python3 - "$work" "$bin" "$seeds" <<'PY'
import os, shutil, sqlite3, subprocess, sys
work, binary, seeds = sys.argv[1:4]
for ps in (512, 4096):
    db = os.path.join(work, f"db{ps}.db")
    rep = os.path.join(work, f"rep{ps}")
    c = sqlite3.connect(db, isolation_level=None)
    c.execute(f"PRAGMA page_size={ps}")
    c.execute("PRAGMA journal_mode=wal")
    c.execute("PRAGMA wal_autocheckpoint=0")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    for rnd in range(3):
        for i in range(4 + rnd * 3):
            c.execute("INSERT INTO t(v) VALUES (?)", ("x" * (40 + 30 * i),))
        if rnd == 1:
            c.execute("UPDATE t SET v = upper(v) WHERE id % 2 = 0")
        wal = open(db + "-wal", "rb").read()
        for mode in (0, 1) if ps == 512 or rnd == 0 else ():
            open(os.path.join(seeds, "wal_read", f"wal{ps}-{rnd}-mode{mode}"), "wb").write(bytes([mode]) + wal)
        subprocess.run([binary, "replicate", "-once", db, "file://" + rep], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for root, _, files in os.walk(rep):
        for f in files:
            if f.endswith(".ltx"):
                shutil.copy(os.path.join(root, f), os.path.join(seeds, "ltx_decode", f"ps{ps}-{f}"))
    c.close()
PY
# Every YAML block of the docs, one file each.
n=0
for doc in README.md docs/*.md; do
  awk -v dir="$seeds/config_parse" -v base="$(basename "$doc" .md)" '
    /^```yaml/ { inblock = 1; n++; file = sprintf("%s/%s-%d.yml", dir, base, n); next }
    /^```/ { inblock = 0; next }
    inblock { print > file }
  ' "$doc"
done
# The config shapes the docs do not show in full: S3 replicas with their
# keys, directory entries, the fleet section.
cat > "$seeds/config_parse/s3-full.yml" <<'YML'
access-key-id: AKID
secret-access-key: ${SECRET}
addr: 127.0.0.1:9090
log-level: debug
snapshot: {interval: 1h, retention: 24h}
levels: [{interval: 10s}, {interval: 2m}]
dbs:
  - path: /data/app.db
    checkpoint-interval: 30s
    min-checkpoint-page-count: 500
    replica:
      type: s3
      bucket: bkt
      path: app
      endpoint: http://127.0.0.1:9000
      region: eu-west-1
      force-path-style: true
      part-size: 8MB
      concurrency: 4
      sync-interval: 250ms
      sse-customer-key: abc
YML
cat > "$seeds/config_parse/fleet.yml" <<'YML'
dbs:
  - dir: /data/tenants
    pattern: "*.db"
    recursive: true
    watch: true
    replica:
      url: s3://bkt/tenants?endpoint=127.0.0.1:9000&region=us-east-1
fleet:
  max-hot: 3
  hot-idle-timeout: 30s
  sync-interval: 100ms
  backlog-rate: 1000
  exclude: ["**/tmp/*.db"]
YML
ls "$seeds"/* | wc -l
