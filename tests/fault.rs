//! The fault campaign (docs/reliability.md). S3: the fault proxy between
//! the replicator and moto fails a share of requests (HTTP 500, SlowDown,
//! resets, truncated bodies, multi-second stalls) while an application
//! commits and compaction, snapshots and retention run every few seconds;
//! midway, S3 goes away entirely for a while. Replication must resume and
//! catch up, skip nothing (every level's files contiguous), and restore
//! exactly. File backend: a replica directory that runs out of space or
//! turns read-only, then recovers.
//!
//! `FAULT_RATE` (default 0.10), `FAULT_OUTAGE_SECS` (default 10) and
//! `FAULT_SECS` (the run's length around the outage, default 24) size the
//! S3 run; docs/reliability.md has the long runs (30 %, a minute's outage).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use litestreampp_e2e::faultproxy::{FaultMix, FaultProxy};
use litestreampp_e2e::moto::{Moto, url_for, with_credentials};
use litestreampp_e2e::*;

const BUSY_LEVELS: &str = "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 4s\n  retention: 4s\nl0-retention: 2s\n";

/// The step the application has committed so far.
fn app_step(db: &Path) -> u64 {
    committed_step(&open_app(db, None))
}

/// Restores `url` (with S3 credentials) into `out`; the step it holds.
fn restored_step(url: &str, out: &Path, w: &Workload) -> Option<u64> {
    let _ = std::fs::remove_file(out);
    let mut c = ours();
    with_credentials(&mut c);
    c.args(["restore", "-o"]).arg(out).arg(url);
    let o = c.output().expect("spawn restore");
    if !o.status.success() {
        return None;
    }
    let m = verify_restore(out, w);
    std::fs::remove_file(out).expect("remove");
    Some(m)
}

/// Every level's files (but the snapshots, which all start at TXID 1)
/// are contiguous: nothing was skipped.
#[test]
fn s3_replication_rides_out_faults_and_an_outage() {
    let rate = env_or("FAULT_RATE", 0.10);
    let outage = Duration::from_secs_f64(env_or("FAULT_OUTAGE_SECS", 10.0));
    let run = Duration::from_secs_f64(env_or("FAULT_SECS", 24.0));
    let moto = Moto::start();
    moto.create_bucket("faults");
    let mix = FaultMix {
        stall: Duration::from_secs(3),
        ..FaultMix::all()
    };
    let proxy = FaultProxy::start(moto.port, mix, 11);
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let stop = dir.path().join("stop");
    let w = Workload::new(61);
    w.setup(&open_app(&db, None));
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "{BUSY_LEVELS}dbs:\n  - path: {}\n    checkpoint-interval: 1s\n    replica:\n      url: {}\n      sync-interval: 50ms\n",
            db.display(),
            url_for(&proxy.endpoint(), "faults", "db")
        ),
    )
    .unwrap();
    let direct = moto.url("faults", "db");
    proxy.set_rate(rate);
    let writer = writer_command(&db, w.seed, &stop)
        .spawn()
        .expect("spawn writer");
    let mut c = ours();
    with_credentials(&mut c);
    c.arg("replicate").arg("-config").arg(&config);
    let log = dir.path().join("replicate.log");
    let child = spawn_logged(c, &log);
    let out = dir.path().join("check.db");

    std::thread::sleep(run / 2);
    let before = restored_step(&direct, &out, &w).expect("a replica before the outage");
    proxy.set_outage(true);
    std::thread::sleep(outage);
    proxy.set_outage(false);
    // Everything committed during the outage must reach the replica.
    let at_end = app_step(&db);
    let ended = Instant::now();
    let caught_up = loop {
        if restored_step(&direct, &out, &w).is_some_and(|m| m >= at_end) {
            break ended.elapsed();
        }
        assert!(
            ended.elapsed() < Duration::from_secs(120),
            "no catch-up 120 s after the outage: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    std::thread::sleep(run / 2);
    std::fs::write(&stop, b"").expect("stop file");
    let final_step = writer_final_step(writer);
    // Through the faults to the end, then a clean stop.
    let deadline = Instant::now() + Duration::from_secs(120);
    while restored_step(&direct, &out, &w) != Some(final_step) {
        assert!(Instant::now() < deadline, "the replica never caught up");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        terminate(child, Duration::from_secs(120)),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let files = litestreampp_e2e::moto::assert_levels_contiguous(&moto, "faults");
    let mut c = ours();
    with_credentials(&mut c);
    c.args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&direct);
    run_ok(c);
    assert_eq!(verify_restore(&out, &w), final_step);
    let errors = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    // The proxy really injected faults at about the rate asked for: at
    // least the expected count less four standard deviations, and one.
    let requests = proxy
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed) as f64;
    let expected = rate * requests;
    assert!(
        proxy.stats.faults() as f64 >= (expected - 4.0 * expected.sqrt()).max(1.0),
        "too few faults for {:.0} %: {}",
        rate * 100.0,
        proxy.stats.summary()
    );
    eprintln!(
        "fault campaign at {:.0} %: {}; outage of {outage:?}: replica had step {before} before, caught up with step {at_end} {caught_up:.1?} after it ended; {final_step} commits, {files} files in the replica, every level contiguous, restore exact; {errors} warnings/errors logged",
        rate * 100.0,
        proxy.stats.summary()
    );
}

/// Files of a file replica whose names say they are temporary.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|x| x != "ltx") {
                v.push(p);
            }
        }
    }
    v
}

/// `replicate -once` of a small database of its own into a folder of
/// `replica`.
fn once_beside(dir: &Scratch, replica: &Path) -> Command {
    let db = dir.path().join("other.db");
    if !db.exists() {
        open_app(&db, None)
            .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .expect("other.db");
    }
    let mut once = ours();
    once.args(["replicate", "-once"])
        .arg(&db)
        .arg(format!("file://{}", replica.join("other").display()));
    once
}

/// The file backend on a replica directory that fills up, then turns
/// read-only, and recovers from both: the replicator keeps running,
/// `replicate -once` fails naming the replica, the replica never holds a
/// partial file, and after the space comes back everything is replicated.
#[test]
fn file_replica_full_disk_and_read_only() {
    let dir = Scratch::new();
    let replica = dir.path().join("replica");
    let Some(fs) = Tmpfs::try_mount(&replica, "256m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let db = dir.path().join("app.db");
    let stop = dir.path().join("stop");
    let w = Workload::new(71);
    w.setup(&open_app(&db, None));
    let url = format!("file://{}", replica.display());
    let writer = writer_command(&db, w.seed, &stop)
        .spawn()
        .expect("spawn writer");
    let mut c = ours();
    c.args(["replicate", "-sync-interval", "50ms"])
        .arg(&db)
        .arg(&url);
    let log = dir.path().join("replicate.log");
    let child = spawn_logged(c, &log);
    wait_for("a first upload", Duration::from_secs(20), || {
        !replica_txids(&replica, 0).is_empty()
    });
    // Fill the disk: only a ballast file's worth of space was free.
    let ballast = replica.join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![7u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    std::thread::sleep(Duration::from_secs(3));
    // `-once` on a database of its own: a second engine on `app.db` is
    // refused (its meta directory is locked).
    let (_, err) = run_err(once_beside(&dir, &replica));
    assert!(
        err.contains(&replica.display().to_string()) && err.contains("No space left"),
        "the error should name the replica and the cause: {err}"
    );
    let full_log = std::fs::read_to_string(&log).unwrap();
    assert!(full_log.contains("No space left"), "{full_log}");
    let stray: Vec<_> = temp_files(&replica)
        .into_iter()
        .filter(|p| *p != ballast)
        .collect();
    assert!(stray.is_empty(), "partial files in the replica: {stray:?}");
    std::fs::remove_file(&ballast).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Read-only: the same, then writable again.
    fs.remount("ro");
    std::thread::sleep(Duration::from_secs(3));
    let (_, err) = run_err(once_beside(&dir, &replica));
    assert!(
        err.contains(&replica.display().to_string()) && err.contains("Read-only"),
        "the error should name the replica and the cause: {err}"
    );
    fs.remount("rw");
    std::fs::write(&stop, b"").expect("stop file");
    let final_step = writer_final_step(writer);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        terminate(child, Duration::from_secs(60)),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        temp_files(&replica).is_empty(),
        "{:?}",
        temp_files(&replica)
    );
    let out = dir.path().join("out.db");
    let mut c = ours();
    c.args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&url);
    run_ok(c);
    let log = std::fs::read_to_string(&log).unwrap();
    let mut files: Vec<_> = litestreampp_e2e::files_under(&replica)
        .into_iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    files.sort();
    assert_eq!(
        verify_restore(&out, &w),
        final_step,
        "{log}\nreplica:\n{}",
        files.join("\n")
    );
    assert!(log.contains("Read-only"), "{log}");
    eprintln!(
        "file replica: filled up and read-only while {final_step} commits were made; errors named the replica, no partial files, restore exact"
    );
}
