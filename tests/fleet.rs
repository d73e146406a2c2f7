//! The fleet: `litestreampp run --once` over thousands of databases found
//! by a pattern, each with its own replica from a template; every one of
//! them restores equal to its source, written or not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use litestreampp_core::client::from_url;
use litestreampp_core::restore::{RestoreOptions, restore};
use litestreampp_e2e::*;

const TENANTS: usize = 2_000;

fn content(path: &Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT count(*) || ':' || coalesce(group_concat(v, ','), '') FROM (SELECT v FROM t ORDER BY id)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn run_once_backs_up_every_database_of_a_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let replicas = dir.path().join("replicas");
    // One template database, copied into 40 directories; every other
    // tenant then gets its own rows (the rest are never written).
    let template = dir.path().join("template.db");
    {
        let c = rusqlite::Connection::open(&template).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t(v) VALUES ('template'); PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }
    let mut paths = Vec::new();
    for i in 0..TENANTS {
        let d = data.join(format!("shard-{:02}", i % 40));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("tenant-{i:05}.db"));
        std::fs::copy(&template, &p).unwrap();
        if i % 2 == 0 {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute("INSERT INTO t(v) VALUES (?1)", [format!("tenant {i}")])
                .unwrap();
        }
        paths.push(p);
    }
    // Not databases: skipped.
    std::fs::write(data.join("shard-00/notes.db"), b"not a database").unwrap();
    std::fs::write(data.join("shard-01/readme.txt"), b"hello").unwrap();

    let mut c = ours();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()));
    let out = run_ok(c);
    let _ = out;
    // A template that would put every tenant into one replica is refused,
    // and continuous mode says what exists today.
    let mut c = ours();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .args(["--replica", "file:///tmp/one-replica"]);
    let (_, err) = run_err(c);
    assert!(err.contains("{path}"), "{err}");
    let mut c = ours();
    c.args(["run", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()));
    let (_, err) = run_err(c);
    assert!(err.contains("--once"), "{err}");

    // Every tenant has its own replica at its path under the template.
    for p in &paths {
        let rel = p.strip_prefix(&data).unwrap();
        assert!(
            !replica_txids(&replicas.join(rel), 0).is_empty(),
            "no replica for {}",
            rel.display()
        );
    }
    assert!(!replicas.join("shard-00/notes.db").exists());

    // Every tenant restores equal to its source.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let checked = rt.block_on(async {
        futures::stream::iter(paths.iter().enumerate())
            .map(|(i, p)| {
                let rel = p.strip_prefix(&data).unwrap().to_path_buf();
                let url = format!("file://{}", replicas.join(&rel).display());
                let out = restored.join(format!("{i}.db"));
                async move {
                    let client = from_url(&url).unwrap();
                    restore(Arc::clone(&client), &RestoreOptions::new(&out))
                        .await
                        .unwrap_or_else(|e| panic!("restore {}: {e}", rel.display()));
                    (p.clone(), out)
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
    });
    assert_eq!(checked.len(), TENANTS);
    for (src, out) in checked {
        assert_eq!(content(&out), content(&src), "{}", src.display());
    }
}

/// The same over S3 (moto): every tenant's replica under its own prefix of
/// one bucket, through one shared S3 client, each restoring equal.
#[test]
fn run_once_to_s3() {
    use litestreampp_e2e::moto::{Moto, with_credentials};
    let moto = Moto::start();
    moto.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut paths = Vec::new();
    for i in 0..60 {
        let d = data.join(format!("region-{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("t{i}.db"));
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("tenant {i}")])
            .unwrap();
        paths.push(p);
    }
    let template = format!(
        "s3://fleet/backups/{{dir}}/{{name}}?endpoint={}&region=us-east-1&forcePathStyle=true",
        moto.endpoint()
    );
    let mut c = ours();
    with_credentials(&mut c);
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .args(["--replica", &template]);
    run_ok(c);
    let keys = moto.keys("fleet");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("backups/region-1/t1.db/0000/")),
        "{keys:?}"
    );
    for p in &paths {
        let rel = p.strip_prefix(&data).unwrap();
        let (dir_part, name) = (
            rel.parent().unwrap().display().to_string(),
            rel.file_name().unwrap().to_string_lossy().to_string(),
        );
        let url = template
            .replace("{dir}", &dir_part)
            .replace("{name}", &name);
        let out = dir.path().join(format!("restored-{name}"));
        let mut c = ours();
        with_credentials(&mut c);
        c.args(["restore", "-o"]).arg(&out).arg(&url);
        run_ok(c);
        assert_eq!(content(&out), content(p), "{}", rel.display());
    }
}
