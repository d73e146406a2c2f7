//! The S3 backend against a real S3 server (moto, started per test on a
//! free port): the conformance suite, compatibility with Go Litestream over
//! S3 in both directions, failures injected by a proxy, leases, and bad
//! input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use litestreampp_core::client::retry::{RetryPolicy, RetryingClient};
use litestreampp_core::client::s3::{S3Connection, S3ReplicaClient};
use litestreampp_core::client::{ReplicaClient, conformance, list_all};
use litestreampp_core::lease::Lease;
use litestreampp_core::{Error, TxId};
use litestreampp_e2e::backends::write_in_bursts;
use litestreampp_e2e::faultproxy::{FaultMix, FaultProxy};
use litestreampp_e2e::moto::{Moto, settings, url_for, with_credentials};
use litestreampp_e2e::*;

fn ours_s3() -> Command {
    let mut c = ours();
    with_credentials(&mut c);
    c
}

fn go_s3() -> Command {
    let mut c = go();
    with_credentials(&mut c);
    c
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn conformance_against_moto() {
    let moto = Moto::start();
    moto.create_bucket("conf");
    rt().block_on(async {
        let raw = S3ReplicaClient::new(settings(&moto.url("conf", "raw/db"))).unwrap();
        conformance::run(&raw).await;
        let wrapped = RetryingClient::new(
            S3ReplicaClient::new(settings(&moto.url("conf", "wrapped"))).unwrap(),
            RetryPolicy::default(),
        );
        conformance::run(&wrapped).await;
    });
    // The multipart path really ran: a 12 MiB file at part size 5 MiB.
    assert!(moto.keys("conf").is_empty(), "delete_all left keys behind");
}

#[test]
fn layout_and_metadata_match_litestream() {
    let moto = Moto::start();
    moto.create_bucket("lay");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let w = Workload::new(1);
    let conn = open_app(&db, None);
    w.setup(&conn);
    for n in 1..=20 {
        w.step(&conn, n, true);
    }
    let mut c = ours_s3();
    c.args(["replicate", "-once"])
        .arg(&db)
        .arg(moto.url("lay", "x/y"));
    run_ok(c);
    assert_eq!(
        moto.keys("lay"),
        vec!["x/y/0000/0000000000000001-0000000000000001.ltx".to_string()]
    );
    // Exact timestamps come from the litestream-timestamp metadata and
    // equal the LTX header time.
    rt().block_on(async {
        let client = S3ReplicaClient::new(settings(&moto.url("lay", "x/y"))).unwrap();
        let with_meta = list_all(&client, 0, true).await.unwrap();
        let bytes = client
            .read_ltx_range(0, TxId(1), TxId(1), 0, 100)
            .await
            .unwrap();
        let h = litestreampp_core::ltx::Header::decode(&bytes, "x").unwrap();
        assert_eq!(with_meta[0].created_at.as_millisecond(), h.timestamp_ms);
    });
}

fn go_s3_config(path: &Path, db: &Path, endpoint: &str, bucket: &str, prefix: &str) {
    std::fs::write(
        path,
        format!(
            "levels:\n  - interval: 2s\n  - interval: 5s\nsnapshot:\n  interval: 7s\n  retention: 1h\nl0-retention: 3s\nl0-retention-check-interval: 1s\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: s3\n      bucket: {bucket}\n      path: {prefix}\n      endpoint: {endpoint}\n      region: us-east-1\n      force-path-style: true\n      sync-interval: 100ms\n",
            db.display()
        ),
    )
    .unwrap();
}

/// Go replicates to S3 (L0, L1, L2, L9 files); our restore is
/// byte-identical to Go's, latest and at TXIDs.
#[test]
fn go_replicates_to_s3_we_restore() {
    let moto = Moto::start();
    moto.create_bucket("gobucket");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    go_s3_config(&cfg, &db, &moto.endpoint(), "gobucket", "apps/one");
    let w = Workload::new(31);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let mut c = go_s3();
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("go.log"));
    wait_for("Go's first upload", Duration::from_secs(30), || {
        !moto.keys("gobucket").is_empty()
    });
    let steps = 1200;
    for n in 1..=steps {
        w.step(&conn, n, true);
        if n % 200 == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let keys = moto.keys("gobucket");
    for level in ["0001", "0002", "0009"] {
        assert!(
            keys.iter().any(|k| k.contains(&format!("/{level}/"))),
            "Go wrote no level {level} files: {keys:?}"
        );
    }
    let url = moto.url("gobucket", "apps/one");
    let go_out = dir.path().join("go.db");
    let our_out = dir.path().join("ours.db");
    let mut c = go_s3();
    c.args(["restore", "-o"]).arg(&go_out).arg(&url);
    run_ok(c);
    let mut c = ours_s3();
    c.args(["restore", "-o"]).arg(&our_out).arg(&url);
    run_ok(c);
    assert!(
        same_bytes(&go_out, &our_out),
        "restore from S3 differs from Go's"
    );
    assert_eq!(verify_restore(&our_out, &w), steps);
}

/// We replicate to S3 while the application writes; Go restores a correct
/// database, and agrees with our restore at TXIDs.
#[test]
fn we_replicate_to_s3_go_restores() {
    let moto = Moto::start();
    moto.create_bucket("ours");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = moto.url("ours", "tenant/a.db");
    let w = Workload::new(32);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let mut c = ours_s3();
    c.args(["replicate", "-sync-interval", "50ms"])
        .arg(&db)
        .arg(&url);
    let child = spawn_logged(c, &dir.path().join("ours.log"));
    wait_for("our first upload", Duration::from_secs(30), || {
        !moto.keys("ours").is_empty()
    });
    let steps = 1500;
    write_in_bursts(&w, &conn, steps, Duration::from_millis(120));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let go_out = dir.path().join("go.db");
    let mut c = go_s3();
    c.args(["restore", "-o"]).arg(&go_out).arg(&url);
    run_ok(c);
    assert_eq!(
        verify_restore(&go_out, &w),
        steps,
        "Go's restore holds every commit"
    );
    let max = moto
        .keys("ours")
        .iter()
        .filter_map(|k| litestreampp_core::txid::parse_ltx_file_name(k.rsplit('/').next().unwrap()))
        .map(|(_, m)| m.0)
        .max()
        .unwrap();
    for (i, txid) in [max / 3, max / 2, max].into_iter().enumerate() {
        let t = format!("{txid:016x}");
        let a = dir.path().join(format!("ours-{i}.db"));
        let b = dir.path().join(format!("go-{i}.db"));
        let mut c = ours_s3();
        c.args(["restore", "-txid", &t, "-o"]).arg(&a).arg(&url);
        run_ok(c);
        let mut c = go_s3();
        c.args(["restore", "-txid", &t, "-o"]).arg(&b).arg(&url);
        run_ok(c);
        assert!(
            same_bytes(&a, &b),
            "TXID {t}: our restore differs from Go's"
        );
        verify_restore(&a, &w);
    }
}

/// L0 TXIDs in a bucket, sorted, checked to be contiguous.
fn assert_contiguous(moto: &Moto, bucket: &str) -> u64 {
    let mut ranges: Vec<(u64, u64)> = moto
        .keys(bucket)
        .iter()
        .filter(|k| k.contains("/0000/"))
        .filter_map(|k| litestreampp_core::txid::parse_ltx_file_name(k.rsplit('/').next().unwrap()))
        .map(|(a, b)| (a.0, b.0))
        .collect();
    ranges.sort();
    assert_eq!(
        ranges.first().map(|r| r.0),
        Some(1),
        "replica starts at TXID 1"
    );
    for w in ranges.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].1 + 1,
            "TXID gap between {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    ranges.last().map(|r| r.1).unwrap_or(0)
}

/// 10% of requests fail (500, SlowDown, resets, truncated bodies, stalls):
/// replication keeps going, the replica has no TXID gap, and the restore
/// equals the source.
#[test]
fn replication_survives_injected_faults() {
    let moto = Moto::start();
    moto.create_bucket("faulty");
    let proxy = FaultProxy::start(moto.port, FaultMix::all(), 7);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let w = Workload::new(41);
    let conn = open_app(&db, None);
    w.setup(&conn);
    proxy.set_rate(0.10);
    let mut c = ours_s3();
    c.args(["replicate", "-sync-interval", "50ms"])
        .arg(&db)
        .arg(url_for(&proxy.endpoint(), "faulty", "db"));
    let log = dir.path().join("ours.log");
    let child = spawn_logged(c, &log);
    let steps = 1500;
    for n in 1..=steps {
        w.step(&conn, n, true);
        if n % 5 == 0 {
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    // Let it catch up through the faults, then stop cleanly.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        terminate(child, Duration::from_secs(60)),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!("fault proxy: {}", proxy.stats.summary());
    assert!(
        proxy.stats.faults() >= 5,
        "too few faults injected: {}",
        proxy.stats.summary()
    );
    let last = assert_contiguous(&moto, "faulty");
    assert!(last > 10, "replicated {last} TXIDs");
    // Restore straight from the server.
    let out = dir.path().join("restored.db");
    let mut c = ours_s3();
    c.args(["restore", "-o"])
        .arg(&out)
        .arg(moto.url("faulty", "db"));
    run_ok(c);
    assert_eq!(verify_restore(&out, &w), steps);
}

/// A restore whose streams are cut midway (half of all large response
/// bodies truncated) resumes at the offset reached and completes.
#[test]
fn restore_resumes_cut_streams() {
    let moto = Moto::start();
    moto.create_bucket("cut");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let w = Workload {
        seed: 51,
        big_every: 10,
        shrink_every: 0,
    };
    let conn = open_app(&db, None);
    w.setup(&conn);
    // Six L0 files, several of them megabytes: many GETs to cut.
    for round in 0..6u64 {
        for n in round * 10 + 1..=round * 10 + 10 {
            w.step(&conn, n, true);
        }
        let mut c = ours_s3();
        c.args(["replicate", "-once"])
            .arg(&db)
            .arg(moto.url("cut", "db"));
        run_ok(c);
    }
    drop(conn);
    // Half of all bodies of 256 KiB or more are cut in the middle.
    let proxy = FaultProxy::start(moto.port, FaultMix::cut_large_bodies(256 << 10), 9);
    proxy.set_rate(0.5);
    let out = dir.path().join("restored.db");
    let mut c = ours_s3();
    c.env("LITESTREAM_LOG_LEVEL", "warn")
        .args(["restore", "-o"])
        .arg(&out)
        .arg(url_for(&proxy.endpoint(), "cut", "db"));
    let o = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "restore failed: {stderr}");
    eprintln!("fault proxy: {}", proxy.stats.summary());
    assert!(
        proxy
            .stats
            .truncated
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert!(stderr.contains("resuming"), "no resumed read in:\n{stderr}");
    assert_eq!(verify_restore(&out, &w), 60);
}

#[test]
fn leases_on_conditional_writes() {
    let moto = Moto::start();
    moto.create_bucket("leases");
    rt().block_on(async {
        let conn = S3Connection::new(settings(&moto.url("leases", "fleet"))).unwrap();
        let key = "fleet/shard-1.lease";
        // Two holders contend at once: exactly one wins.
        for round in 0..5 {
            let k = format!("{key}.{round}");
            let (a, b) = tokio::join!(
                Lease::acquire(&conn, &k, "host-a", Duration::from_secs(30)),
                Lease::acquire(&conn, &k, "host-b", Duration::from_secs(30))
            );
            let wins = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
            assert_eq!(wins, 1, "round {round}: {a:?} / {b:?}");
            let loser = if a.is_ok() { b.err() } else { a.err() };
            assert!(
                matches!(loser, Some(Error::HeldByAnother { .. })),
                "{loser:?}"
            );
        }
        // Expiry and takeover.
        let mut first = Lease::acquire(&conn, key, "host-a", Duration::from_millis(600))
            .await
            .unwrap();
        first.renew().await.unwrap();
        let early = Lease::acquire(&conn, key, "host-b", Duration::from_secs(30)).await;
        assert!(
            matches!(early, Err(Error::HeldByAnother { ref holder, .. }) if holder == "host-a"),
            "{early:?}"
        );
        tokio::time::sleep(Duration::from_millis(900)).await;
        let second = Lease::acquire(&conn, key, "host-b", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(second.holder(), "host-b");
        // The old holder can neither renew nor release any more.
        assert!(matches!(
            first.renew().await,
            Err(Error::HeldByAnother { .. })
        ));
        assert!(matches!(
            first.release().await,
            Err(Error::HeldByAnother { .. })
        ));
        second.release().await.unwrap();
        assert!(Lease::current(&conn, key).await.unwrap().is_none());
    });
}

/// A wrong bucket, bad credentials and an unreachable endpoint each give a
/// clear error quickly; no credential ever appears in the output, even at
/// debug level.
#[test]
fn bad_s3_input_fails_fast_without_leaking_secrets() {
    let moto = Moto::start_with(true);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let w = Workload::new(61);
    let conn = open_app(&db, None);
    w.setup(&conn);
    w.step(&conn, 1, true);
    drop(conn);
    let secret = "SuperSecretValue-do-not-print-0123456789";
    let key_id = "AKIAUNKNOWNTESTKEY77";
    let run = |url: &str, args: &[&str]| -> (String, Duration) {
        let mut c = ours();
        c.env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("LITESTREAM_LOG_LEVEL", "debug")
            .args(args)
            .arg(url);
        let t = Instant::now();
        let o = c.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.status.success(), "{args:?} {url} succeeded");
        assert!(!all.contains(secret), "secret printed:\n{all}");
        assert!(!all.contains(key_id), "access key ID printed:\n{all}");
        assert!(!all.contains("panicked"), "{all}");
        (all, t.elapsed())
    };
    let dbs = db.display().to_string();
    // Bad credentials (moto with authentication on).
    let (out, took) = run(&moto.url("b", "db"), &["replicate", "-once", &dbs]);
    assert!(
        out.contains("InvalidAccessKeyId") || out.contains("403"),
        "{out}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // A bucket that does not exist (moto without authentication).
    let open = Moto::start();
    let (out, took) = run(
        &open.url("no-such-bucket", "db"),
        &["replicate", "-once", &dbs],
    );
    assert!(
        out.contains("NoSuchBucket") && out.contains("no-such-bucket"),
        "{out}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let out_db = dir.path().join("out.db");
    let (out, _) = run(
        &open.url("no-such-bucket", "db"),
        &["restore", "-o", &out_db.display().to_string()],
    );
    assert!(out.contains("NoSuchBucket"), "{out}");
    assert!(!out_db.exists());
    // An endpoint nobody listens on.
    let dead = format!("http://127.0.0.1:{}", litestreampp_e2e::moto::free_port());
    let (out, took) = run(&url_for(&dead, "b", "db"), &["replicate", "-once", &dbs]);
    assert!(
        out.contains("127.0.0.1") || out.contains("connect"),
        "{out}"
    );
    assert!(
        took < Duration::from_secs(30),
        "unreachable endpoint took {took:?}"
    );
    // Secrets in a config file are not echoed either.
    let cfg = dir.path().join("l.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {dbs}\n    replica:\n      type: s3\n      bucket: no-such-bucket\n      path: db\n      endpoint: {}\n      access-key-id: {key_id}\n      secret-access-key: {secret}\n",
            open.endpoint()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["replicate", "-once", "-config"])
        .arg(&cfg);
    let o = c.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success());
    assert!(!all.contains(secret) && !all.contains(key_id), "{all}");
}
