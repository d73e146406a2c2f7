//! Compatibility with the real Go Litestream 0.5.17, file backend, both
//! directions, under a workload that grows and shrinks the database, has
//! transactions of more than 1,000 pages, checkpoints in the middle and
//! thousands of small commits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use litestreampp_e2e::*;

const STEPS: u64 = 2_500;

fn write_go_config(path: &Path, db: &Path, replica: &Path) {
    // Short compaction and snapshot intervals so the replica holds L0, L1,
    // L2 and L9 files, and a short L0 retention so restores must use them.
    let yml = format!(
        "levels:\n  - interval: 2s\n  - interval: 5s\nsnapshot:\n  interval: 7s\n  retention: 1h\nl0-retention: 3s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n      sync-interval: 100ms\n",
        db.display(),
        replica.display()
    );
    std::fs::write(path, yml).expect("write config");
}

/// Restores the latest state of `url` with Go and with us, asserts the two
/// files are byte-identical, and returns ours.
fn restore_with_both(url: &str, dir: &Path, tag: &str) -> std::path::PathBuf {
    let theirs = dir.join(format!("go-{tag}.db"));
    let mine = dir.join(format!("ours-{tag}.db"));
    let mut c = go();
    c.args(["restore", "-o"]).arg(&theirs).arg(url);
    run_ok(c);
    let mut c = ours();
    c.args(["restore", "-o"]).arg(&mine).arg(url);
    run_ok(c);
    assert!(
        same_bytes(&theirs, &mine),
        "{tag}: our restore of {url} differs from Go's"
    );
    mine
}

fn run_workload(db: &Path, w: &Workload, from: u64, to: u64, pause_every: u64) {
    let conn = open_app(db, None);
    w.setup(&conn);
    for n in from..=to {
        w.step(&conn, n, true);
        if n % 300 == 100 {
            // An application checkpoint in the middle.
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .expect("checkpoint");
        }
        if pause_every > 0 && n % pause_every == 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

/// (a) Go replicates; our restore is byte-identical to Go's own restore,
/// latest and at several TXIDs, across L0, L1, L2 and L9 files.
#[test]
fn go_replicates_we_restore_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("litestream.yml");
    write_go_config(&cfg, &db, &replica);
    let w = Workload::new(11);
    w.setup(&open_app(&db, None));

    let mut c = go();
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("go.log"));
    wait_for("Go's first L0 file", Duration::from_secs(20), || {
        !replica_txids(&replica, 0).is_empty()
    });
    run_workload(&db, &w, 1, STEPS, 250);
    std::thread::sleep(Duration::from_secs(9)); // let levels and a snapshot happen
    let code = terminate(child, Duration::from_secs(30));
    assert_eq!(
        code,
        0,
        "go replicate exit: {}",
        std::fs::read_to_string(dir.path().join("go.log")).unwrap_or_default()
    );
    for level in [1, 2, 9] {
        assert!(
            !replica_txids(&replica, level).is_empty(),
            "Go wrote no level {level} files"
        );
    }

    let url = format!("file://{}", replica.display());
    let mine = restore_with_both(&url, dir.path(), "latest");
    assert_eq!(
        verify_restore(&mine, &w),
        STEPS,
        "latest restore holds every step"
    );

    // Point-in-time: every TXID that still has a restore path, sampled.
    let max = replica_txids(&replica, 0).last().map(|t| t.1).unwrap_or(0);
    let mut last_m = 0;
    for (i, txid) in [max / 5, max / 3, max / 2, (max * 2) / 3, max - 1]
        .into_iter()
        .enumerate()
    {
        let t = format!("{txid:016x}");
        let a = dir.path().join(format!("go-{i}.db"));
        let b = dir.path().join(format!("ours-{i}.db"));
        let mut c = go();
        c.args(["restore", "-txid", &t, "-o"]).arg(&a).arg(&url);
        let go_ok = c.output().expect("spawn").status.success();
        let mut c = ours();
        c.args(["restore", "-txid", &t, "-o"]).arg(&b).arg(&url);
        let ours_ok = c.output().expect("spawn").status.success();
        assert_eq!(
            go_ok, ours_ok,
            "TXID {t}: Go and we disagree on whether it is restorable"
        );
        if ours_ok {
            assert!(same_bytes(&a, &b), "TXID {t}: restore differs from Go's");
            let m = verify_restore(&b, &w);
            assert!(m >= last_m, "TXID {t}: step {m} before {last_m}");
            last_m = m;
        }
    }
}

/// (d) We replicate with short compaction intervals and L0 retention, so
/// the replica holds L1, L2 and L9 files and few L0 files; Go restores it
/// (latest and at TXIDs) byte-identically to our restore.
#[test]
fn we_compact_go_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("litestream.yml");
    write_go_config(&cfg, &db, &replica);
    let w = Workload::new(33);
    w.setup(&open_app(&db, None));

    let mut c = ours();
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("ours.log"));
    wait_for("our first L0 file", Duration::from_secs(20), || {
        !replica_txids(&replica, 0).is_empty()
    });
    run_workload(&db, &w, 1, STEPS, 250);
    std::thread::sleep(Duration::from_secs(9)); // let levels and a snapshot happen
    let code = terminate(child, Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.path().join("ours.log")).unwrap_or_default();
    assert_eq!(code, 0, "replicate exit code; log:\n{log}");
    assert!(!log.contains("ERROR"), "errors while replicating:\n{log}");
    for level in [1, 2, 9] {
        assert!(
            !replica_txids(&replica, level).is_empty(),
            "we wrote no level {level} files"
        );
    }
    let l0 = replica_txids(&replica, 0);
    let l1 = replica_txids(&replica, 1);
    let max = l0.last().map(|t| t.1).unwrap_or(0);
    assert!(
        (l0.len() as u64) < max / 2,
        "L0 retention left {} of {max} L0 files",
        l0.len()
    );

    let url = format!("file://{}", replica.display());
    let mine = restore_with_both(&url, dir.path(), "latest");
    assert_eq!(verify_restore(&mine, &w), STEPS);
    // At the ends of L1 files (restorable from the levels alone).
    for (i, (_, txid)) in [l1[l1.len() / 3], l1[(l1.len() * 2) / 3]]
        .into_iter()
        .enumerate()
    {
        let t = format!("{txid:016x}");
        let a = dir.path().join(format!("go-l1-{i}.db"));
        let b = dir.path().join(format!("ours-l1-{i}.db"));
        let mut c = go();
        c.args(["restore", "-txid", &t, "-o"]).arg(&a).arg(&url);
        run_ok(c);
        let mut c = ours();
        c.args(["restore", "-txid", &t, "-o"]).arg(&b).arg(&url);
        run_ok(c);
        assert!(same_bytes(&a, &b), "TXID {t}: restore differs from Go's");
        verify_restore(&b, &w);
    }
}

/// (b) We replicate (live, killed with SIGTERM at the end); Go restores a
/// database that passes integrity_check and holds every commit.
/// (c) Our restore at many TXIDs equals the source as it was then, and is
/// byte-identical to Go's restore at the same TXID.
#[test]
fn we_replicate_go_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let w = Workload::new(22);
    w.setup(&open_app(&db, None));

    let mut c = ours();
    c.args(["replicate", "-sync-interval", "50ms"])
        .arg(&db)
        .arg(&url);
    let child = spawn_logged(c, &dir.path().join("ours.log"));
    wait_for("our first L0 file", Duration::from_secs(20), || {
        !replica_txids(&replica, 0).is_empty()
    });
    run_workload(&db, &w, 1, STEPS, 100);
    let code = terminate(child, Duration::from_secs(30));
    let log = std::fs::read_to_string(dir.path().join("ours.log")).unwrap_or_default();
    assert_eq!(code, 0, "replicate exit code; log:\n{log}");
    assert!(!log.contains("ERROR"), "errors while replicating:\n{log}");

    let theirs = dir.path().join("go-restore.db");
    let mut c = go();
    c.args(["restore", "-o"]).arg(&theirs).arg(&url);
    run_ok(c);
    assert_eq!(
        verify_restore(&theirs, &w),
        STEPS,
        "Go's restore holds every commit"
    );

    let txids = replica_txids(&replica, 0);
    let max = txids.last().map(|t| t.1).unwrap_or(0);
    assert!(max > 20, "expected many L0 files, got {max}");
    let mut last_m = 0;
    let picks: Vec<u64> = (1..=12).map(|i| (max * i / 12).max(1)).collect();
    for (i, txid) in picks.into_iter().enumerate() {
        let t = format!("{txid:016x}");
        let mine = dir.path().join(format!("ours-{i}.db"));
        let mut c = ours();
        c.args(["restore", "-integrity-check", "full", "-txid", &t, "-o"])
            .arg(&mine)
            .arg(&url);
        run_ok(c);
        let m = verify_restore(&mine, &w);
        assert!(m >= last_m, "TXID {t}: step {m} before {last_m}");
        last_m = m;
        let go_out = dir.path().join(format!("go-{i}.db"));
        let mut c = go();
        c.args(["restore", "-txid", &t, "-o"])
            .arg(&go_out)
            .arg(&url);
        run_ok(c);
        assert!(
            same_bytes(&mine, &go_out),
            "TXID {t}: our restore differs from Go's"
        );
    }
    assert_eq!(last_m, STEPS);

    // Point in time by timestamp: just after an L0 file's creation time
    // (its mtime, the LTX header timestamp); both tools must agree.
    for (i, (min, max)) in [txids[txids.len() / 4], txids[txids.len() / 2]]
        .into_iter()
        .enumerate()
    {
        let path = replica.join(format!("ltx/0/{min:016x}-{max:016x}.ltx"));
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let ms = mtime
            .duration_since(std::time::UNIX_EPOCH)
            .expect("epoch")
            .as_millis() as i64
            + 1;
        let ts = format!(
            "{}",
            jiff::Timestamp::from_millisecond(ms)
                .expect("timestamp")
                .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        let mine = dir.path().join(format!("ours-ts-{i}.db"));
        let mut c = ours();
        c.args(["restore", "-timestamp", &ts, "-o"])
            .arg(&mine)
            .arg(&url);
        run_ok(c);
        let theirs = dir.path().join(format!("go-ts-{i}.db"));
        let mut c = go();
        c.args(["restore", "-timestamp", &ts, "-o"])
            .arg(&theirs)
            .arg(&url);
        run_ok(c);
        assert!(
            same_bytes(&mine, &theirs),
            "-timestamp {ts}: our restore differs from Go's"
        );
        verify_restore(&mine, &w);
    }
    // Before the first file: nothing to restore.
    let early = dir.path().join("too-early.db");
    let mut c = ours();
    c.args(["restore", "-timestamp", "2001-01-01T00:00:00Z", "-o"])
        .arg(&early)
        .arg(&url);
    let (_, err) = run_err(c);
    assert!(err.contains("not available"), "{err}");
    assert!(!early.exists());
}

/// A replica written by the config-file path of `replicate -once`, listed
/// with `ltx -json` in Go's format.
#[test]
fn config_file_and_ltx_listing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cfg.db");
    let replica = dir.path().join("replica");
    let w = Workload::new(3);
    let conn = open_app(&db, None);
    w.setup(&conn);
    for n in 1..=30 {
        w.step(&conn, n, true);
    }
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: file://{}\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    let mut c = ours();
    c.args(["replicate", "-once", "-config"]).arg(&cfg);
    run_ok(c);
    let mut c = ours();
    c.args(["ltx", "-json", "-level", "0", "-config"])
        .arg(&cfg)
        .arg(&db);
    let out = run_ok(c);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let files = v.as_array().expect("array");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["min_txid"], "0000000000000001");
    // Restore through the config: output defaults to the database path,
    // which exists, so -o elsewhere.
    let out_db = dir.path().join("restored.db");
    let mut c = ours();
    c.args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out_db)
        .arg(&db);
    run_ok(c);
    assert_eq!(verify_restore(&out_db, &w), 30);
    let mut c = go();
    c.args(["databases", "-config"]).arg(&cfg);
    run_ok(c);
}

/// A replica written by Litestream 0.5.15 stores each page as a standalone
/// LZ4 frame (page flags 0): we decode it and restore the same bytes as Go
/// 0.5.17 does.
#[test]
fn legacy_replica_from_litestream_0_5_15() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("old.db");
    let replica = dir.path().join("replica");
    let w = Workload::new(15);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      type: file\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    let mut c = go_0_5_15();
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("go.log"));
    wait_for("0.5.15's first L0 file", Duration::from_secs(20), || {
        !replica_txids(&replica, 0).is_empty()
    });
    for n in 1..=400 {
        w.step(&conn, n, true);
        if n % 50 == 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);

    // The files really are in the legacy form.
    let first = replica.join("ltx/0/0000000000000001-0000000000000001.ltx");
    let bytes = std::fs::read(&first).expect("read first L0");
    assert_eq!(&bytes[104..106], &[0, 0], "page flags of the legacy form");

    let url = format!("file://{}", replica.display());
    let mine = restore_with_both(&url, dir.path(), "legacy");
    assert_eq!(verify_restore(&mine, &w), 400);
}
