#!/usr/bin/env python3
"""What each backend costs to build: the compile time of the crates that
only it brings in, from one cold build's `cargo build --timings` report.

    time CARGO_TARGET_DIR=/tmp/cold cargo build --profile ci -p litestreampp --timings
    bench/build_cost.py /tmp/cold/cargo-timings/cargo-timing.html [CPU_SECONDS]

For each backend feature of the litestreampp binary, the crates `cargo
tree` lists with that feature alone and not without any backend are its
own;
their units' durations in the report (library, build script, its run)
are summed. Durations are per unit, so a sum is CPU-bound compile time,
not wall time: on N cores, units run N at a time. Crates two backends
share (OpenDAL's HTTP stack for gcs, azure and webdav) are counted under
each, and once in the "OpenDAL backends together" row. Prints Markdown.

A unit's duration is its wall time, which a loaded machine stretches; the
shares hold better than the seconds. Given the build's CPU time (user +
sys from `time`), each share of it is printed too.
"""

import json
import re
import subprocess
import sys

FEATURES = ["s3", "gcs", "azure", "webdav", "nats", "sftp"]


def crates(features):
    """(name, version) of every crate the binary builds with `features`."""
    out = subprocess.run(
        ["cargo", "tree", "-p", "litestreampp", "-e", "normal,build",
         "--no-default-features", "--features", ",".join(features),
         "--prefix", "none"],
        check=True, capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("v"):
            found.add((parts[0], parts[1][1:]))
    return found


def unit_seconds(report):
    """Seconds per (name, version), summed over its units."""
    html = open(report, encoding="utf-8").read()
    m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S)
    if not m:
        sys.exit(f"{report}: no UNIT_DATA (not a cargo --timings report?)")
    secs = {}
    for u in json.loads(m.group(1)):
        key = (u["name"], u["version"])
        secs[key] = secs.get(key, 0.0) + float(u["duration"])
    return secs


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    secs = unit_seconds(sys.argv[1])
    cpu = float(sys.argv[2]) if len(sys.argv) == 3 else None
    base = crates([])
    total = sum(secs.values())
    rows = []
    for group in [[f] for f in FEATURES] + [["gcs", "azure", "webdav"]]:
        own = crates(group) - base
        missing = [c for c in own if c not in secs]
        cost = sum(secs.get(c, 0.0) for c in own)
        label = ", ".join(f"`{f}`" for f in group)
        if len(group) > 1:
            label = f"OpenDAL backends together ({label})"
        rows.append((label, len(own), cost, missing))
    print(f"Every unit of the build: {total:.0f} s of compile time "
          f"({len(secs)} crates). Without any backend: "
          f"{sum(secs.get(c, 0.0) for c in base):.0f} s ({len(base)} crates).\n")
    head = "| backend feature | crates only it brings | their units' time | share of the build |"
    rule = "|---|---:|---:|---:|"
    if cpu:
        head += " that share of the build's CPU time |"
        rule += "---:|"
    print(head)
    print(rule)
    for label, n, cost, missing in rows:
        note = f" ({len(missing)} not in the report)" if missing else ""
        line = f"| {label} | {n}{note} | {cost:.0f} s | {100 * cost / total:.0f} % |"
        if cpu:
            line += f" {cpu * cost / total:.0f} s |"
        print(line)


if __name__ == "__main__":
    main()
