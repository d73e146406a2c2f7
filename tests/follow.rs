//! Follow mode (`restore -f`): the output is a read replica that keeps up
//! with a busy source through compaction every second, retention, a
//! follower killed and restarted after its files were pruned, a snapshot
//! taken after a continuity break, and a replica wiped and started again,
//! while a concurrent reader checks every state it sees: integrity, the
//! exact content of the step it records, never a step back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use litestreampp_e2e::*;

/// Compaction every second, snapshots and retention every few seconds.
const BUSY_LEVELS: &str = "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 4s\n  retention: 4s\nl0-retention: 1s\nl0-retention-check-interval: 1s\n";

fn config(dir: &Path, db: &Path, replica: &Path) -> PathBuf {
    let cfg = dir.join("replicate.yml");
    std::fs::write(
        &cfg,
        format!(
            "{BUSY_LEVELS}dbs:\n  - path: {}\n    monitor-interval: 50ms\n    replica:\n      path: {}\n      sync-interval: 100ms\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    cfg
}

fn replicate(cfg: &Path, log: &Path) -> std::process::Child {
    let mut c = ours();
    c.args(["replicate", "-config"]).arg(cfg);
    spawn_logged(c, log)
}

fn follower(replica: &Path, out: &Path, log: &Path) -> std::process::Child {
    follower_of(ours(), replica, out, log)
}

fn follower_of(
    mut c: std::process::Command,
    replica: &Path,
    out: &Path,
    log: &Path,
) -> std::process::Child {
    c.args(["restore", "-f", "-follow-interval", "200ms", "-o"])
        .arg(out)
        .arg(format!("file://{}", replica.display()));
    spawn_logged(c, log)
}

fn txid_file(out: &Path) -> Option<u64> {
    let mut p = out.as_os_str().to_os_string();
    p.push("-txid");
    let s = std::fs::read_to_string(PathBuf::from(p)).ok()?;
    u64::from_str_radix(s.trim(), 16).ok()
}

/// What the reader saw.
#[derive(Default)]
struct Seen {
    checks: AtomicU64,
    step: AtomicU64,
}

/// Reads `out` in a loop until `stop`: each read is one read transaction
/// that runs `integrity_check`, reads the recorded step and hashes the
/// content, which must equal the workload's state at that step; the step
/// never goes back.
fn reader(out: PathBuf, w: Workload, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut replay = Replay::new(w);
    wait_for(
        "the follower's first restore",
        Duration::from_secs(30),
        || txid_file(&out).is_some(),
    );
    let conn = rusqlite::Connection::open(&out).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        let (ic, step, hash) = {
            let tx = conn.unchecked_transaction().unwrap();
            let ic: String = tx
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            let step = committed_step(&tx);
            let hash = content_hash(&tx);
            tx.commit().unwrap();
            (ic, step, hash)
        };
        assert_eq!(
            ic, "ok",
            "integrity_check of the followed database at step {step}"
        );
        assert!(
            step >= last,
            "the reader went back from step {last} to {step}"
        );
        assert_eq!(hash, replay.hash_at(step), "content at step {step}");
        last = step;
        seen.step.store(step, Ordering::Relaxed);
        seen.checks.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn follower_keeps_up_through_compaction_kills_snapshots_and_a_wiped_replica() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let out = dir.path().join("follower").join("app.db");
    let mut w = Workload::new(77);
    // Large transactions and shrinking VACUUMs within the run.
    w.big_every = 150;
    w.shrink_every = 230;
    let conn = open_app(&db, None);
    w.setup(&conn);
    for n in 1..=20 {
        w.step(&conn, n, true);
    }
    let cfg = config(dir.path(), &db, &replica);
    let mut repl = replicate(&cfg, &dir.path().join("replicate-1.log"));
    wait_for("the first L0 file", Duration::from_secs(30), || {
        !replica_txids(&replica, 0).is_empty()
    });
    let follow_log = |n: u32| dir.path().join(format!("follow-{n}.log"));
    let mut f = follower(&replica, &out, &follow_log(1));

    // The writer: one step every few milliseconds until told to stop.
    let stop_writer = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(20));
    let writer = {
        let (db, stop, written) = (db.clone(), stop_writer.clone(), written.clone());
        std::thread::spawn(move || {
            let conn = open_app(&db, None);
            let mut n = 20;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                w.step(&conn, n, true);
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(8));
            }
        })
    };
    let stop_reader = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let reading = {
        let (out, stop, seen) = (out.clone(), stop_reader.clone(), seen.clone());
        std::thread::spawn(move || reader(out, w, stop, seen))
    };
    let caught_up_to = |n: u64, what: &str| {
        wait_for(what, Duration::from_secs(60), || {
            assert!(!reading.is_finished(), "the reader failed");
            seen.step.load(Ordering::Relaxed) >= n
        });
    };

    // Following through compaction every second and retention.
    std::thread::sleep(Duration::from_secs(6));
    caught_up_to(written.load(Ordering::Relaxed), "the follower to keep up");

    // Killed mid-run, down long enough for retention to remove the files
    // after its TXID, restarted: it resumes from OUTPUT-txid.
    signal(&f, 9);
    let _ = f.wait();
    let killed_at = txid_file(&out).unwrap();
    std::thread::sleep(Duration::from_secs(9));
    f = follower(&replica, &out, &follow_log(2));
    caught_up_to(written.load(Ordering::Relaxed), "the restarted follower");
    assert!(txid_file(&out).unwrap() > killed_at);
    let log2 = std::fs::read_to_string(follow_log(2)).unwrap();
    assert!(log2.contains("resuming follow mode"), "{log2}");

    // A continuity break: the replicator's local state is reset, so its
    // next file is a snapshot of the whole database.
    assert_eq!(terminate(repl, Duration::from_secs(30)), 0);
    let mut reset = ours();
    reset.args(["reset", "-config"]).arg(&cfg).arg(&db);
    run_ok(reset);
    repl = replicate(&cfg, &dir.path().join("replicate-2.log"));
    wait_for(
        "the snapshot after the reset",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(dir.path().join("replicate-2.log"))
                .unwrap()
                .contains("snapshot")
        },
    );
    caught_up_to(
        written.load(Ordering::Relaxed),
        "the follower after the snapshot",
    );

    // The replica wiped and started again from TXID 1: the follower finds
    // the replica behind its TXID and restores the newest state whole.
    assert_eq!(terminate(repl, Duration::from_secs(30)), 0);
    std::fs::remove_dir_all(&replica).unwrap();
    let mut reset = ours();
    reset.args(["reset", "-config"]).arg(&cfg).arg(&db);
    run_ok(reset);
    repl = replicate(&cfg, &dir.path().join("replicate-3.log"));
    wait_for(
        "the follower to restore the new replica",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(follow_log(2))
                .unwrap()
                .contains("newest state restored")
        },
    );
    caught_up_to(
        written.load(Ordering::Relaxed),
        "the follower of the new replica",
    );

    // The end: everything written is in the follower.
    stop_writer.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let last = written.load(Ordering::Relaxed);
    caught_up_to(last, "the last step");
    stop_reader.store(true, Ordering::Relaxed);
    reading.join().unwrap();
    assert_eq!(terminate(f, Duration::from_secs(30)), 0);
    assert_eq!(terminate(repl, Duration::from_secs(30)), 0);
    let checks = seen.checks.load(Ordering::Relaxed);
    assert!(checks > 50, "the reader checked only {checks} states");
    assert_eq!(verify_restore(&out, &w), last);
    eprintln!("follower: {last} steps written, {checks} states checked by the reader");
}

#[test]
fn follow_flags_are_checked_as_go_checks_them() {
    let dir = Scratch::new();
    let url = format!("file://{}", dir.path().join("replica").display());
    let out = dir.path().join("out.db");
    for (args, msg) in [
        (
            &["-f", "-txid", "0000000000000002"][..],
            "cannot use follow mode with -txid",
        ),
        (
            &["-f", "-timestamp", "2026-01-01T00:00:00Z"],
            "cannot use follow mode with -timestamp",
        ),
        (&["-f", "-dry-run"], "cannot use -dry-run with -f"),
        (&["-f", "-force"], "cannot use -force with -f"),
        (
            &["-follow-interval", "1s"],
            "-follow-interval applies to follow mode",
        ),
        (
            &["-f", "-follow-interval", "soon"],
            "-follow-interval \"soon\"",
        ),
    ] {
        let mut c = ours();
        c.arg("restore").args(args).arg("-o").arg(&out).arg(&url);
        let (code, err) = run_err(c);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // An output without its -txid file is not resumed.
    std::fs::write(&out, b"not empty").unwrap();
    let mut c = ours();
    c.args(["restore", "-f", "-o"]).arg(&out).arg(&url);
    let (code, err) = run_err(c);
    assert_ne!(code, 0);
    assert!(err.contains("out.db-txid does not"), "{err}");
    assert!(!dir.path().join("out.db-txid").exists());
}

/// Go's follower and ours on one replica reach the same state, and ours
/// resumes the output Go's follower left (its -txid file, its rollback
/// journal mode).
#[test]
fn follows_alongside_go_and_resumes_gos_output() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let w = Workload::new(78);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let cfg = config(dir.path(), &db, &replica);
    let repl = replicate(&cfg, &dir.path().join("replicate.log"));
    wait_for("the first L0 file", Duration::from_secs(30), || {
        !replica_txids(&replica, 0).is_empty()
    });
    let go_out = dir.path().join("go").join("app.db");
    let our_out = dir.path().join("ours").join("app.db");
    std::fs::create_dir_all(go_out.parent().unwrap()).unwrap();
    let go_f = follower_of(go(), &replica, &go_out, &dir.path().join("go.log"));
    let our_f = follower(&replica, &our_out, &dir.path().join("ours.log"));
    let step_of = |p: &Path| {
        // Without SQLITE_OPEN_CREATE: an empty file would stop Go's start.
        rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .ok()
            .and_then(|c| {
                c.query_row("SELECT n FROM meta", [], |r| r.get::<_, i64>(0))
                    .ok()
            })
            .unwrap_or(-1)
    };
    for n in 1..=300 {
        w.step(&conn, n, true);
        if n == 150 {
            wait_for(
                "both followers at step 150",
                Duration::from_secs(60),
                || step_of(&go_out) == 150 && step_of(&our_out) == 150,
            );
        }
    }
    wait_for(
        "both followers at step 300",
        Duration::from_secs(60),
        || step_of(&go_out) == 300 && step_of(&our_out) == 300,
    );
    assert_eq!(terminate(our_f, Duration::from_secs(30)), 0);
    assert_eq!(terminate(go_f, Duration::from_secs(30)), 0);
    // Ours takes over Go's output.
    let gos_txid = txid_file(&go_out).unwrap();
    for n in 301..=400 {
        w.step(&conn, n, true);
    }
    let taken_over = follower(&replica, &go_out, &dir.path().join("takeover.log"));
    wait_for(
        "ours to carry Go's output on",
        Duration::from_secs(60),
        || step_of(&go_out) == 400,
    );
    assert!(txid_file(&go_out).unwrap() > gos_txid);
    assert_eq!(terminate(taken_over, Duration::from_secs(30)), 0);
    assert_eq!(terminate(repl, Duration::from_secs(30)), 0);
    assert_eq!(verify_restore(&go_out, &w), 400);
    assert_eq!(verify_restore(&our_out, &w), 300);
}
