//! The crash campaign (docs/reliability.md): the replicator is SIGKILLed
//! and restarted over and over while applications in other processes keep
//! committing numbered transactions. Half the kills come at random
//! moments, half at a crash point (`LITESTREAMPP_CRASH_AT`, see
//! `core/src/crashpoint.rs`): right after an L0 file is written, an
//! upload, a checkpoint, a TRUNCATE, a compaction, a snapshot upload, a
//! retention delete, a demotion's seal. The writer is killed too, often
//! inside a transaction, and other processes checkpoint the database while
//! the replicator is down. After every kill the replica is restored and
//! must be exactly the state after some committed transaction, never
//! older than the restore before; after a clean stop, the last one.
//!
//! `CRASH_TRIALS` sets the number of kills over both tests (default 54:
//! 36 of one database, 18 of a fleet); `CRASH_SEED` the randomness.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use litestreampp_e2e::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Crash points a single database's replicator passes: all but the seal,
/// which only a fleet's demotion does, and the merge of unshipped files,
/// which only an unreachable replica causes (its crash leftovers are a
/// unit test in `core::unshipped`).
fn single_points() -> Vec<&'static str> {
    litestreampp_core::crashpoint::POINTS
        .iter()
        .copied()
        .filter(|p| !matches!(*p, "sealed" | "l0-merged"))
        .collect()
}

/// Crash points of the fleet: syncs, uploads and the demotion's seal
/// (its TRUNCATE, then its upload).
const FLEET_POINTS: &[&str] = &["sealed", "truncated", "uploaded", "l0-written", "compacted"];

/// Compaction, snapshots and retention every few seconds, checkpoints
/// often: every kind of work the replicator does happens in each trial.
const BUSY_LEVELS: &str = "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 4s\n  retention: 4s\nl0-retention: 1s\n";

fn trials() -> usize {
    std::env::var("CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(54)
}

fn rng(salt: u64) -> StdRng {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    StdRng::seed_from_u64(seed ^ salt)
}

/// What one campaign saw, printed at its end for docs/reliability.md.
#[derive(Default, Debug)]
struct Tally {
    kills_random: usize,
    points_reached: BTreeMap<&'static str, usize>,
    points_missed: BTreeMap<&'static str, usize>,
    writer_kills: usize,
    outside_checkpoints: usize,
    restores_verified: usize,
}

impl Tally {
    fn kills(&self) -> usize {
        self.kills_random + self.points_reached.values().sum::<usize>()
    }
}

/// An application process committing workload steps to `db`, each
/// transaction held open 3 ms so that kills land inside them.
fn start_writer(db: &Path, seed: u64, stop: &Path, burst: Option<&str>) -> Child {
    let mut c = writer_command(db, seed, stop);
    c.env("WORKLOAD_HOLD_MS", "3");
    if let Some(b) = burst {
        c.env("WORKLOAD_BURST", b);
    }
    c.spawn().expect("spawn writer")
}

/// Runs the replicator (`cmd`) until the kill this trial calls for: a
/// SIGKILL after a random time, or its own at a crash point (given up
/// after a while if the point is not reached: then it is SIGKILLed too).
fn run_until_killed(
    mut cmd: Command,
    log: &Path,
    rng: &mut StdRng,
    point: Option<&'static str>,
    tally: &mut Tally,
) {
    if let Some(p) = point {
        cmd.env(
            "LITESTREAMPP_CRASH_AT",
            format!("{p}:{}", rng.random_range(1..=3)),
        );
    }
    let mut child = spawn_logged(cmd, log);
    match point {
        None => {
            std::thread::sleep(Duration::from_millis(rng.random_range(50..1200)));
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            tally.kills_random += 1;
        }
        Some(p) => {
            let start = Instant::now();
            let status = loop {
                if let Some(s) = child.try_wait().expect("wait") {
                    break Some(s);
                }
                if start.elapsed() > Duration::from_secs(10) {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            use std::os::unix::process::ExitStatusExt;
            match status {
                Some(s) if s.signal() == Some(libc::SIGKILL) => {
                    *tally.points_reached.entry(p).or_default() += 1;
                }
                Some(s) => panic!(
                    "replicator exited on its own ({s}) before crash point {p}: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                ),
                None => {
                    child.kill().expect("SIGKILL");
                    let _ = child.wait();
                    *tally.points_missed.entry(p).or_default() += 1;
                    tally.kills_random += 1;
                }
            }
        }
    }
}

/// While the replicator is down, another process checkpoints the
/// database: PASSIVE, RESTART or TRUNCATE in turn.
fn checkpoint_from_outside(db: &Path, i: usize, tally: &mut Tally) {
    let mode = ["PASSIVE", "RESTART", "TRUNCATE"][i % 3];
    let c = open_app(db, None);
    let busy: i64 = c
        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
        .expect("checkpoint");
    if busy == 0 {
        tally.outside_checkpoints += 1;
    }
}

/// Restores `url` and checks it against the workload; returns the step.
fn restore_and_verify(url: &str, out: &Path, replay: &mut Replay, last: u64, what: &str) -> u64 {
    let mut c = ours();
    c.args(["restore", "-o"]).arg(out).arg(url);
    run_ok(c);
    let m = verify_restore_with(out, &mut |m| replay.hash_at(m));
    assert!(
        m >= last,
        "{what}: the restore went back from step {last} to {m}: committed writes lost"
    );
    std::fs::remove_file(out).expect("remove restore");
    m
}

/// Why each restart began with a snapshot, from the replicator logs.
fn snapshot_reasons(dir: &Path) -> BTreeMap<String, usize> {
    let mut reasons = BTreeMap::<String, usize>::new();
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        if e.path().extension().is_none_or(|x| x != "log") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains(" snapshot ")) {
            if let Some(r) = line.split("reason=").nth(1) {
                // Without its details (offsets, salts): one entry per kind.
                let r = r.trim_matches('"');
                let kind = r.split(" (").next().unwrap_or(r).to_string();
                *reasons.entry(kind).or_default() += 1;
            }
        }
    }
    reasons
}

#[test]
fn single_database_survives_kills_at_random_moments_and_crash_points() {
    let n = trials() * 2 / 3;
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let stop = dir.path().join("stop");
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "{BUSY_LEVELS}dbs:\n  - path: {}\n    checkpoint-interval: 500ms\n    min-checkpoint-page-count: 50\n    truncate-page-n: 600\n    replica:\n      url: {url}\n      sync-interval: 20ms\n",
            db.display()
        ),
    )
    .expect("config");
    let seed = 7;
    let w = Workload::new(seed);
    w.setup(&open_app(&db, None));
    let mut replay = Replay::new(w);
    let mut rng = rng(1);
    let mut tally = Tally::default();
    let mut writer = start_writer(&db, seed, &stop, None);
    let mut last = 0;
    let out = dir.path().join("restore.db");
    let points = single_points();
    for i in 0..n {
        let point = (i % 2 == 1).then(|| points[(i / 2) % points.len()]);
        let mut c = ours();
        c.arg("replicate").arg("-config").arg(&config);
        let log = dir.path().join(format!("replicate-{i}.log"));
        run_until_killed(c, &log, &mut rng, point, &mut tally);
        // Down for a while: the application goes on, checkpointing unseen
        // (its own auto-checkpoint, and sometimes another process's).
        if i % 4 == 1 {
            checkpoint_from_outside(&db, i, &mut tally);
        }
        if i % 5 == 3 {
            // The application dies (inside a transaction, as often as not:
            // each one is held open 3 ms of its ~8 ms) and starts again.
            writer.kill().expect("kill writer");
            let _ = writer.wait();
            tally.writer_kills += 1;
            writer = start_writer(&db, seed, &stop, None);
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        if !replica.join("ltx").exists() {
            continue; // killed before its first upload
        }
        last = restore_and_verify(&url, &out, &mut replay, last, &format!("kill {i}"));
        tally.restores_verified += 1;
    }
    std::fs::write(&stop, b"").expect("stop file");
    let final_step = writer_final_step(writer);

    // A clean run to the end: every commit must be in the replica.
    let mut c = ours();
    c.arg("replicate").arg("-config").arg(&config);
    let child = spawn_logged(c, &dir.path().join("replicate-final.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let mut c = ours();
    c.args(["restore", "-integrity-check", "full", "-o"])
        .arg(&out)
        .arg(&url);
    run_ok(c);
    assert_eq!(
        verify_restore_with(&out, &mut |m| replay.hash_at(m)),
        final_step,
        "after a clean stop the restore holds every commit"
    );
    assert!(tally.restores_verified + 2 >= n, "{tally:?}");
    let reached = tally.points_reached.len();
    assert!(reached >= 4, "crash points reached: {tally:?}");
    eprintln!("snapshots by reason: {:?}", snapshot_reasons(dir.path()));
    eprintln!(
        "single database: {} kills ({} at random moments, at crash points {:?}; not reached {:?}), {} writer kills, {} outside checkpoints, {} restores verified, {final_step} commits, 0 lost, 0 corrupt",
        tally.kills(),
        tally.kills_random,
        tally.points_reached,
        tally.points_missed,
        tally.writer_kills,
        tally.outside_checkpoints,
        tally.restores_verified
    );
}

#[test]
fn fleet_survives_kills_during_sync_and_demotion() {
    let n = trials() - trials() * 2 / 3;
    let dir = Scratch::new();
    let data = dir.path().join("data");
    let replicas = dir.path().join("replicas");
    std::fs::create_dir_all(&data).expect("data dir");
    let stop = dir.path().join("stop");
    let config = dir.path().join("litestream.yml");
    std::fs::write(&config, BUSY_LEVELS).expect("config");
    // Three tenants written in bursts with pauses longer than the idle
    // timeout: each is promoted and demoted again and again.
    let names = ["a", "b", "c"];
    let mut tenants: Vec<(PathBuf, Replay, u64)> = Vec::new();
    let mut writers = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let db = data.join(format!("{name}.db"));
        let w = Workload::new(100 + k as u64);
        w.setup(&open_app(&db, None));
        writers.push(start_writer(&db, w.seed, &stop, Some("30:400")));
        tenants.push((db, Replay::new(w), 0));
    }
    let url = |name: &str| format!("file://{}/{name}.db", replicas.display());
    let mut rng = rng(2);
    let mut tally = Tally::default();
    let run = || {
        let mut c = ours();
        c.args(["run", "--config"])
            .arg(&config)
            .arg("--pattern")
            .arg(format!("{}/*.db", data.display()))
            .arg("--replica")
            .arg(format!("file://{}/{{path}}", replicas.display()))
            .args([
                "--hot-idle-timeout",
                "150ms",
                "--sync-interval",
                "20ms",
                "--addr",
                "off",
            ]);
        c
    };
    let out = dir.path().join("restore.db");
    for i in 0..n {
        let point = (i % 2 == 1).then(|| FLEET_POINTS[(i / 2) % FLEET_POINTS.len()]);
        let log = dir.path().join(format!("run-{i}.log"));
        run_until_killed(run(), &log, &mut rng, point, &mut tally);
        if i % 4 == 2 {
            checkpoint_from_outside(&tenants[i % 3].0, i, &mut tally);
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        for (k, (_, replay, last)) in tenants.iter_mut().enumerate() {
            if !replicas.join(format!("{}.db/ltx", names[k])).exists() {
                continue;
            }
            *last = restore_and_verify(
                &url(names[k]),
                &out,
                replay,
                *last,
                &format!("tenant {} after kill {i}", names[k]),
            );
            tally.restores_verified += 1;
        }
    }
    std::fs::write(&stop, b"").expect("stop file");
    let finals: Vec<u64> = writers.into_iter().map(writer_final_step).collect();
    let child = spawn_logged(run(), &dir.path().join("run-final.log"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    for (k, (_, replay, _)) in tenants.iter_mut().enumerate() {
        let mut c = ours();
        c.args(["restore", "-integrity-check", "full", "-o"])
            .arg(&out)
            .arg(url(names[k]));
        run_ok(c);
        assert_eq!(
            verify_restore_with(&out, &mut |m| replay.hash_at(m)),
            finals[k],
            "tenant {}: after a clean stop the restore holds every commit",
            names[k]
        );
        std::fs::remove_file(&out).expect("remove restore");
    }
    assert!(
        tally.points_reached.get("sealed").copied().unwrap_or(0) > 0,
        "no kill landed in a demotion: {tally:?}"
    );
    eprintln!("snapshots by reason: {:?}", snapshot_reasons(dir.path()));
    eprintln!(
        "fleet: {} kills ({} at random moments, at crash points {:?}; not reached {:?}), {} outside checkpoints, {} restores verified, commits {finals:?}, 0 lost, 0 corrupt",
        tally.kills(),
        tally.kills_random,
        tally.points_reached,
        tally.points_missed,
        tally.outside_checkpoints,
        tally.restores_verified
    );
}

/// Found by the long crash campaign: a replicator whose read transaction
/// began when the WAL was fully checkpointed reads only the database file,
/// so it does not stop a writer from restarting the WAL. If that happens
/// between locating a sync's frames and reading their pages, the new
/// generation's frames stand where the old ones were located: the file
/// written mixed two states (a corrupt restore). The sync must notice and
/// write nothing; the next one ships the database exactly.
#[test]
fn wal_restarted_between_locating_and_reading_frames() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let out = dir.path().join("restore.db");
    let url = format!("file://{}", dir.path().join("replica").display());
    let w = Workload::new(11);
    let conn = open_app(&db, Some(0));
    w.setup(&conn);
    w.step(&conn, 1, false);
    let once = || {
        let mut c = ours();
        c.args(["replicate", "-once"]).arg(&db).arg(&url);
        c
    };
    run_ok(once());
    // More committed frames in the same WAL, all checkpointed: the next
    // replicator's read transaction will use the database file only.
    for n in 2..=150 {
        w.step(&conn, n, false);
    }
    let busy: (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((busy.0, busy.1), (0, busy.2), "checkpoint incomplete");
    let log = dir.path().join("paused.log");
    let mut paused = once();
    paused.env("LITESTREAMPP_PAUSE_AT", "frames-located:3000");
    let child = spawn_logged(paused, &log);
    wait_for("the sync to pause", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("paused at frames-located"))
    });
    // The writer restarts the WAL and writes over the frames located.
    for n in 151..=400 {
        w.step(&conn, n, false);
    }
    let first = child.wait_with_output().expect("paused replicator");
    let first_log = std::fs::read_to_string(&log).unwrap();
    if !first.status.success() {
        assert!(
            first_log.contains("restarted while its frames were read"),
            "{first_log}"
        );
    }
    // Whatever the paused sync did, the replica holds a committed state...
    let mut replay = Replay::new(w);
    let m = restore_and_verify(&url, &out, &mut replay, 0, "after the paused sync");
    // ...and the next sync ships the last one.
    run_ok(once());
    let last = restore_and_verify(&url, &out, &mut replay, m, "after the next sync");
    assert_eq!(last, 400, "{first_log}");
}
