//! Migration and rollback on a fleet, as docs/migrating-from-litestream.md
//! tells an operator to do it: Go Litestream 0.5.17 replicates a
//! directory entry of 2,000 databases; `litestreampp run` takes the same
//! config over; then Go takes it back. Each database's replica chain goes
//! on across both hand-overs (every L0 file continues the one before), and
//! at each step every database restores (all of them by us, a sample by
//! Go) to exactly its source.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use litestreampp_e2e::moto::free_port;
use litestreampp_e2e::*;

const TENANTS: usize = 2000;
/// Go restores every this many'th database at each step.
const GO_SAMPLE_EVERY: usize = 40;

fn make_tenants(data: &Path) -> Vec<PathBuf> {
    (0..TENANTS)
        .map(|i| {
            let d = data.join(format!("shard{:02}", i % 20));
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(format!("tenant{i}.db"));
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE meta(id INTEGER PRIMARY KEY);",
            )
            .unwrap();
            p
        })
        .collect()
}

/// One committed transaction on every tenant (step `n`).
fn write_step(tenants: &[PathBuf], n: u64) {
    for (i, p) in tenants.iter().enumerate() {
        let c = rusqlite::Connection::open(p).unwrap();
        c.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            rusqlite::params![n as i64, format!("tenant {i} step {n} {}", "x".repeat(64))],
        )
        .unwrap();
    }
}

fn hash(p: &Path) -> String {
    let c = rusqlite::Connection::open(p).unwrap();
    content_hash(&c)
}

/// Each tenant's L0 files chain: every file starts one past where the one
/// before ended, from TXID 1. Returns the newest TXID of each.
fn assert_chains(replica: &Path, data: &Path, tenants: &[PathBuf], phase: &str) -> Vec<u64> {
    tenants
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(data).unwrap();
            let files = replica_txids(&replica.join(rel), 0);
            assert!(
                !files.is_empty(),
                "{phase}: {} has no L0 file",
                rel.display()
            );
            let mut next = 1;
            for (min, max) in &files {
                assert_eq!(
                    *min,
                    next,
                    "{phase}: {}: the chain breaks at {min:016x} ({files:x?})",
                    rel.display()
                );
                next = max + 1;
            }
            next - 1
        })
        .collect()
}

/// Every tenant restored by us (restore-pattern over the config) and a
/// sample by Go equals its source.
fn assert_restores(cfg: &Path, replica: &Path, data: &Path, tenants: &[PathBuf], out: &Path) {
    let mut c = ours();
    c.args(["restore-pattern", "-workers", "16", "-config"])
        .arg(cfg)
        .arg("-output-dir")
        .arg(out)
        .arg(format!("{}/**/*.db", data.display()));
    run_ok(c);
    for (i, p) in tenants.iter().enumerate() {
        let rel = p.strip_prefix(data).unwrap();
        assert_eq!(hash(&out.join(rel)), hash(p), "ours: {}", rel.display());
        if i % GO_SAMPLE_EVERY == 0 {
            let to = out.join(format!("go-{i}.db"));
            let mut g = go();
            g.args(["restore", "-o"])
                .arg(&to)
                .arg(format!("file://{}", replica.join(rel).display()));
            run_ok(g);
            assert_eq!(hash(&to), hash(p), "go: {}", rel.display());
        }
    }
}

#[test]
fn go_to_litestreampp_and_back_on_2000_databases() {
    let dir = Scratch::new();
    let data = dir.path().join("tenants");
    let replica = dir.path().join("replica");
    let tenants = make_tenants(&data);
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      url: file://{}\n",
            data.display(),
            replica.display()
        ),
    )
    .unwrap();

    // 1. Go replicates the fleet.
    write_step(&tenants, 1);
    let mut g = go();
    g.args(["replicate", "-once", "-config"]).arg(&cfg);
    run_ok(g);
    let go_tip = assert_chains(&replica, &data, &tenants, "go");
    assert_restores(&cfg, &replica, &data, &tenants, &dir.path().join("out-1"));

    // 2. litestreampp takes the same config over: every database found,
    // then writes while it runs, then SIGTERM (the final syncs).
    write_step(&tenants, 2);
    let port = free_port();
    let mut c = ours();
    c.args(["run", "--addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&cfg);
    let fleet = spawn_logged(c, &dir.path().join("run.log"));
    let backed_up = || {
        let mut s = ours();
        s.args(["status", "--json", "--addr", &format!("127.0.0.1:{port}")]);
        s.output().ok().is_some_and(|o| {
            serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| v["databases"] == TENANTS && v["queued"] == 0)
        })
    };
    wait_for(
        "the fleet to back every database up",
        Duration::from_secs(300),
        backed_up,
    );
    write_step(&tenants, 3);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(terminate(fleet, Duration::from_secs(120)), 0, "run exits 0");
    let ours_tip = assert_chains(&replica, &data, &tenants, "litestreampp");
    assert!(
        ours_tip.iter().zip(&go_tip).all(|(o, g)| o > g),
        "every chain grew under litestreampp"
    );
    assert_restores(&cfg, &replica, &data, &tenants, &dir.path().join("out-2"));

    // 3. Rollback: Go takes the config back and continues our chains.
    write_step(&tenants, 4);
    let mut g = go();
    g.args(["replicate", "-once", "-config"]).arg(&cfg);
    run_ok(g);
    let back_tip = assert_chains(&replica, &data, &tenants, "go after rollback");
    assert!(back_tip.iter().zip(&ours_tip).all(|(b, o)| b > o));
    assert_restores(&cfg, &replica, &data, &tenants, &dir.path().join("out-3"));
}
