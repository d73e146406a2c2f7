//! Crash safety: the replicator is SIGKILLed at random moments and
//! restarted while an application in another process keeps committing with
//! SQLite's default auto-checkpoint, so the WAL is checkpointed and
//! restarted while nobody watches. Every restore taken meanwhile must be
//! exactly some committed state; after a clean stop, the last one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::Duration;

use litestreampp_e2e::*;
use rand::{Rng, SeedableRng};

const KILLS: usize = 24;

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let stop = dir.path().join("stop");
    let seed = 7;
    let w = Workload::new(seed);
    w.setup(&open_app(&db, None));
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(42),
    );

    // The application: its own process, default auto-checkpoint (1000 pages).
    let writer = Command::new(env!("CARGO_BIN_EXE_workload"))
        .arg(&db)
        .args([
            seed.to_string(),
            "100000000".into(),
            "2".into(),
            "-1".into(),
        ])
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");

    let log = dir.path().join("replicate.log");
    let mut checked = 0;
    let mut last_m = 0;
    for i in 0..KILLS {
        let mut c = ours();
        c.args(["replicate", "-sync-interval", "20ms"])
            .arg(&db)
            .arg(&url);
        let mut child = spawn_logged(c, &log.with_extension(format!("{i}.log")));
        std::thread::sleep(Duration::from_millis(rng.random_range(80..900)));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // Down for a while: the application checkpoints unseen.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..700)));
        if i % 3 == 2 && !replica_txids(&replica, 0).is_empty() {
            let out = dir.path().join(format!("restore-{i}.db"));
            let mut c = ours();
            c.args(["restore", "-o"]).arg(&out).arg(&url);
            run_ok(c);
            let m = verify_restore(&out, &w);
            assert!(
                m >= last_m,
                "restore after kill {i} went back from step {last_m} to {m}"
            );
            last_m = m;
            checked += 1;
            std::fs::remove_file(&out).expect("remove restore");
        }
    }
    std::fs::write(&stop, b"").expect("stop file");
    let out = writer.wait_with_output().expect("writer");
    assert!(out.status.success(), "writer failed");
    let final_step: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("final step");

    // A clean run to the end: every commit must be in the replica.
    let mut c = ours();
    c.args(["replicate", "-sync-interval", "20ms"])
        .arg(&db)
        .arg(&url);
    let child = spawn_logged(c, &log.with_extension("final.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let out = dir.path().join("final.db");
    let mut c = ours();
    c.args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&url);
    run_ok(c);
    assert_eq!(
        verify_restore(&out, &w),
        final_step,
        "after a clean stop the restore holds every commit"
    );
    assert!(checked >= KILLS / 3 - 1, "restores checked: {checked}");
    // How continuity was kept after each restart, for the record.
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for e in std::fs::read_dir(dir.path()).expect("list").flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains(" snapshot ")) {
            let r = line
                .split("reason=")
                .nth(1)
                .unwrap_or("?")
                .trim_matches('"')
                .to_string();
            *reasons.entry(r).or_default() += 1;
        }
    }
    eprintln!("snapshots by reason: {reasons:?}");
    eprintln!("{KILLS} kills, {checked} intermediate restores verified, {final_step} commits");
}
