//! `litestreampp restore-pattern`: whole fleets restored from moto (ours
//! and Go Litestream's replicas), interrupted and resumed, through a
//! fault-injecting proxy, from hostile keys, and from file replicas and a
//! config file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestreampp_e2e::faultproxy::{FaultMix, FaultProxy};
use litestreampp_e2e::moto::{Moto, url_for, with_credentials};
use litestreampp_e2e::{go, ours, run_err, run_ok, spawn_logged, terminate, wait_for};

/// Row count and values of table `t`.
fn content(path: &Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT count(*) || ':' || coalesce(group_concat(v, ','), '') FROM (SELECT v FROM t ORDER BY id)",
        [],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `n` WAL-mode databases under `data`, spread over `dirs` directories,
/// each with its own rows.
fn make_fleet(data: &Path, n: usize, dirs: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let d = data.join(format!("r{}", i % dirs));
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(format!("t{i}.db"));
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
            )
            .unwrap();
            for j in 0..=(i % 3) {
                c.execute(
                    "INSERT INTO t(v) VALUES (?1)",
                    [format!("tenant {i} row {j}")],
                )
                .unwrap();
            }
            p
        })
        .collect()
}

/// Every database of `paths` (relative to `data`) equals its copy under
/// `out`.
fn assert_restored(data: &Path, paths: &[PathBuf], out: &Path) {
    for p in paths {
        let rel = p.strip_prefix(data).unwrap();
        assert_eq!(content(&out.join(rel)), content(p), "{}", rel.display());
    }
}

fn report(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn count(report: &[serde_json::Value], status: &str) -> usize {
    report.iter().filter(|o| o["status"] == status).count()
}

fn s3_cmd() -> Command {
    let mut c = ours();
    with_credentials(&mut c);
    c.env("LITESTREAM_LOG_LEVEL", "warn");
    c
}

/// `restore-pattern` with 10 workers (Go-style flags) to completion; its
/// report.
fn restore_with_report(out: &Path, pattern: &str, report_path: &Path) -> Vec<serde_json::Value> {
    let mut c = s3_cmd();
    c.args(["restore-pattern", "-workers", "10", "-output-dir"])
        .arg(out)
        .arg("-report")
        .arg(report_path)
        .arg(pattern);
    run_ok(c);
    report(report_path)
}

/// Backs up every database under `data` to `template` with `run --once`.
fn back_up(data: &Path, template: &str) {
    let mut c = s3_cmd();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .args(["--replica", template]);
    run_ok(c);
}

/// 1,000 databases replicated by us and a set replicated by Go Litestream
/// (directory mode), restored with 10 workers; then a run killed midway
/// and started again finishes the rest.
#[test]
fn restores_a_fleet_from_s3_and_resumes() {
    let moto = Moto::start();
    moto.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ours_dbs = make_fleet(&data.join("ours"), 1000, 10);
    back_up(
        &data.join("ours"),
        &url_for(&moto.endpoint(), "fleet", "backups/ours/{path}"),
    );

    // Go Litestream 0.5.17 replicates a directory of its own.
    let go_data = data.join("go");
    let go_dbs = make_fleet(&go_data, 12, 3);
    let cfg = dir.path().join("go.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      type: s3\n      bucket: fleet\n      path: backups/go\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n",
            go_data.display(),
            moto.endpoint()
        ),
    )
    .unwrap();
    let mut c = go();
    with_credentials(&mut c);
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("go.log"));
    wait_for("Go's replicas", Duration::from_secs(60), || {
        let keys = moto.keys("fleet");
        go_dbs.iter().all(|p| {
            let rel = p.strip_prefix(&go_data).unwrap().display().to_string();
            keys.iter()
                .any(|k| k.starts_with(&format!("backups/go/{rel}/0000/")))
        })
    });
    terminate(child, Duration::from_secs(30));

    let pattern = url_for(&moto.endpoint(), "fleet", "backups/**/*.db");
    let out = dir.path().join("out");
    let r = restore_with_report(&out, &pattern, &dir.path().join("report.json"));
    assert_restored(&data, &ours_dbs, &out);
    assert_restored(&data, &go_dbs, &out);
    assert_eq!(count(&r, "restored"), 1012, "{:?}", &r[..3]);
    assert!(
        r.iter()
            .all(|o| o["txid"].is_string() && o["bytes"].as_u64() > Some(0))
    );

    // Killed midway (two workers, so it is still running), then resumed.
    let out2 = dir.path().join("out2");
    let journal = out2.join(".litestreampp-restore.journal");
    let mut c = s3_cmd();
    c.args(["restore-pattern", "--workers", "2", "--output-dir"])
        .arg(&out2)
        .arg(&pattern);
    let child = spawn_logged(c, &dir.path().join("killed.log"));
    wait_for("100 journaled restores", Duration::from_secs(120), || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.lines().count() >= 100)
    });
    let pid = child.id() as i32;
    litestreampp_e2e::signal(&child, libc::SIGKILL);
    let _ = terminate(child, Duration::from_secs(10));
    let journaled = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(journaled < 1012, "pid {pid} finished before it was killed");
    // Whatever is at an output path is a whole database.
    for p in &ours_dbs {
        let o = out2.join(p.strip_prefix(&data).unwrap());
        if o.exists() {
            assert_eq!(content(&o), content(p));
        }
    }
    let r = restore_with_report(&out2, &pattern, &dir.path().join("report2.json"));
    assert_restored(&data, &ours_dbs, &out2);
    assert_restored(&data, &go_dbs, &out2);
    let skipped = count(&r, "skipped");
    assert!(
        skipped >= journaled.saturating_sub(2) && skipped >= 98,
        "{skipped} skipped of {journaled} journaled"
    );
    assert_eq!(skipped + count(&r, "restored"), 1012);
}

/// Restores through a proxy failing 10% of requests: every database
/// arrives, some after retries.
#[test]
fn faults_are_retried_per_database() {
    let moto = Moto::start();
    moto.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dbs = make_fleet(&data, 200, 4);
    back_up(&data, &url_for(&moto.endpoint(), "fleet", "f/{path}"));
    let proxy = FaultProxy::start(moto.port, FaultMix::all(), 11);
    proxy.set_rate(0.10);
    let out = dir.path().join("out");
    let rep = dir.path().join("report.json");
    let mut c = s3_cmd();
    c.args([
        "restore-pattern",
        "--workers",
        "10",
        "--retries",
        "6",
        "--output-dir",
    ])
    .arg(&out)
    .arg("--report")
    .arg(&rep)
    .arg(url_for(&proxy.endpoint(), "fleet", "f/**/*.db"));
    run_ok(c);
    assert_restored(&data, &dbs, &out);
    assert!(
        proxy.stats.faults() > 0,
        "no fault injected: {}",
        proxy.stats.summary()
    );
    assert_eq!(count(&report(&rep), "restored"), 200);
}

/// Keys with `..` or a leading `/`, and a symbolic link in the output
/// tree pointing outside it: refused, nothing written outside the output
/// directory, the good database restored, exit code non-zero.
#[test]
fn hostile_keys_write_nothing_outside_the_output() {
    let moto = Moto::start();
    moto.create_bucket("evil");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dbs = make_fleet(&data, 3, 1);
    back_up(&data, &url_for(&moto.endpoint(), "evil", "b/{path}"));
    // Copies of a valid replica under hostile names, written with our own
    // S3 client (the keys are taken verbatim).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use litestreampp_core::client::ReplicaClient;
        use litestreampp_core::client::s3::{S3ReplicaClient, S3Settings};
        let settings = |path: &str| S3Settings {
            bucket: "evil".into(),
            path: path.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(moto.endpoint()),
            force_path_style: Some(true),
            access_key_id: Some(litestreampp_e2e::moto::ACCESS_KEY.into()),
            secret_access_key: Some(litestreampp_e2e::moto::SECRET_KEY.into()),
            ..S3Settings::default()
        };
        let good = S3ReplicaClient::new(settings("b/r0/t0.db")).unwrap();
        let files = good.all_ltx_files().await.unwrap();
        assert!(!files.is_empty());
        for bad in ["b/../x.db", "b/a/../../y.db", "b/link/z.db"] {
            let c = S3ReplicaClient::new(settings(bad)).unwrap();
            for f in &files {
                let body = litestreampp_core::client::read_range(&good, f, 0, f.size)
                    .await
                    .unwrap();
                c.write_ltx_file(
                    f.level,
                    f.min_txid,
                    f.max_txid,
                    litestreampp_core::client::LtxBody::Bytes(bytes::Bytes::from(body)),
                )
                .await
                .unwrap();
            }
        }
    });
    let keys = moto.keys("evil");
    assert!(keys.iter().any(|k| k.starts_with("b/../x.db/")), "{keys:?}");
    let out = dir.path().join("out");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("link")).unwrap();
    let rep = dir.path().join("report.json");
    let mut c = s3_cmd();
    c.args(["restore-pattern", "--output-dir"])
        .arg(&out)
        .arg("--report")
        .arg(&rep)
        .arg(url_for(&moto.endpoint(), "evil", "b/**/*.db"));
    let (code, stderr) = run_err(c);
    assert_ne!(code, 0);
    assert!(stderr.contains("refusing"), "{stderr}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!dir.path().join("x.db").exists() && !dir.path().join("y.db").exists());
    assert_restored(&data, &dbs, &out);
    let r = report(&rep);
    assert_eq!(count(&r, "restored"), 3);
    assert_eq!(count(&r, "failed"), 3, "{r:?}");

    // The same bucket as a config file's directory entry: the hostile
    // replicas are that run's failures, the others are restored.
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      type: s3\n      bucket: evil\n      path: b\n      endpoint: {}\n      region: us-east-1\n      force-path-style: true\n",
            data.display(),
            moto.endpoint()
        ),
    )
    .unwrap();
    let out4 = dir.path().join("out4");
    let rep4 = dir.path().join("report4.json");
    let mut c = s3_cmd();
    c.args(["restore-pattern", "-config"])
        .arg(&cfg)
        .arg("-output-dir")
        .arg(&out4)
        .arg("-report")
        .arg(&rep4)
        .arg(format!("{}/**/*.db", data.display()));
    let (_, stderr) = run_err(c);
    assert!(stderr.contains("refusing"), "{stderr}");
    assert_restored(&data, &dbs, &out4);
    let r = report(&rep4);
    assert_eq!(count(&r, "failed"), 2, "{r:?}");
    assert_eq!(count(&r, "restored"), 4, "{r:?}");
    assert!(!dir.path().join("x.db").exists() && !dir.path().join("y.db").exists());
}

/// File replicas: dry run, restore, a second run skips everything, exists
/// checks, a config file's directory entry, a pattern matching nothing.
#[test]
fn file_replicas_dry_run_resume_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let dbs = make_fleet(&data, 30, 3);
    let rep = dir.path().join("rep");
    let mut c = ours();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", rep.display()));
    run_ok(c);
    let pattern = format!("file://{}/**/*.db", rep.display());
    let out = dir.path().join("out");

    let mut c = ours();
    c.args(["restore-pattern", "--dry-run", "--output-dir"])
        .arg(&out)
        .arg(&pattern);
    let stdout = run_ok(c);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(" -> ")).count(),
        30,
        "{stdout}"
    );
    assert!(
        stdout.contains("30 databases would be restored"),
        "{stdout}"
    );
    assert!(!out.join("r0").exists(), "a dry run wrote to the output");

    let mut c = ours();
    c.args([
        "restore-pattern",
        "--integrity-check",
        "quick",
        "--txid",
        "0000000000000001",
    ])
    .arg("--output-dir")
    .arg(&out)
    .arg(&pattern);
    run_ok(c);
    assert_restored(&data, &dbs, &out);

    // Again: the journal says every one is done.
    let report_path = dir.path().join("again.json");
    let mut c = ours();
    c.args([
        "restore-pattern",
        "--txid",
        "0000000000000001",
        "--output-dir",
    ])
    .arg(&out)
    .arg("--report")
    .arg(&report_path)
    .arg(&pattern);
    run_ok(c);
    assert_eq!(count(&report(&report_path), "skipped"), 30);
    // Another target is not what the journal recorded: restored again,
    // which needs --force as the outputs exist.
    let mut c = ours();
    c.args(["restore-pattern", "--force", "--output-dir"])
        .arg(&out)
        .arg("--report")
        .arg(&report_path)
        .arg(&pattern);
    run_ok(c);
    assert_eq!(count(&report(&report_path), "restored"), 30);
    assert_restored(&data, &dbs, &out);

    // Without the journal, existing outputs are errors unless asked.
    std::fs::remove_file(out.join(".litestreampp-restore.journal")).unwrap();
    let mut c = ours();
    c.args(["restore-pattern", "--output-dir"])
        .arg(&out)
        .arg(&pattern);
    let (_, stderr) = run_err(c);
    assert!(stderr.contains("output already exists"), "{stderr}");
    let mut c = ours();
    c.args(["restore-pattern", "--if-db-not-exists", "--output-dir"])
        .arg(&out)
        .arg(&pattern);
    run_ok(c);

    // A config file's directory entry: its replicas found by listing.
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      type: file\n      path: {}\n",
            data.display(),
            rep.display()
        ),
    )
    .unwrap();
    let out3 = dir.path().join("out3");
    let mut c = ours();
    c.args(["restore-pattern", "-config"])
        .arg(&cfg)
        .arg("-output-dir")
        .arg(&out3)
        .arg(format!("{}/r1/*.db", data.display()));
    run_ok(c);
    let r1: Vec<PathBuf> = dbs
        .iter()
        .filter(|p| p.starts_with(data.join("r1")))
        .cloned()
        .collect();
    assert_eq!(r1.len(), 10);
    for p in &r1 {
        let name = p.file_name().unwrap();
        assert_eq!(content(&out3.join(name)), content(p));
    }
    assert!(!out3.join("r0").exists());

    // Nothing matches: a clear error.
    let mut c = ours();
    c.args(["restore-pattern", "--output-dir"])
        .arg(dir.path().join("none"))
        .arg(format!("file://{}/**/*.sqlite", rep.display()));
    let (_, stderr) = run_err(c);
    assert!(stderr.contains("no replica matches"), "{stderr}");
}
