//! Compaction levels, snapshots, retention and point-in-time restore, driven
//! in-process through the core API with short intervals, against a file
//! replica (and a request-counting wrapper around it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use litestreampp_core::client::file::FileReplicaClient;
use litestreampp_core::client::{
    ByteReader, FileInfo, FileStream, LtxBody, ReplicaClient, SNAPSHOT_LEVEL,
};
use litestreampp_core::levels::{LevelState, LevelsConfig, Maintainer};
use litestreampp_core::meta_dir::MetaDir;
use litestreampp_core::replica::Replica;
use litestreampp_core::replicator::{Replicator, ReplicatorOptions};
use litestreampp_core::restore::{RestoreOptions, RestoreTarget, plan_restore, restore};
use litestreampp_core::scheduler::Scheduler;
use litestreampp_core::{Result, TxId};
use litestreampp_e2e::*;
use rand::{Rng, SeedableRng};

/// Counts every request made to the wrapped client.
#[derive(Debug)]
struct Counting {
    inner: FileReplicaClient,
    requests: AtomicU64,
}

impl Counting {
    fn hit(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
    fn count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ReplicaClient for Counting {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn ltx_files(&self, level: u32, seek: TxId, use_metadata: bool) -> Result<FileStream> {
        self.hit();
        self.inner.ltx_files(level, seek, use_metadata).await
    }
    async fn open_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        offset: u64,
        size: u64,
    ) -> Result<ByteReader> {
        self.hit();
        self.inner
            .open_ltx_file(level, min, max, offset, size)
            .await
    }
    async fn write_ltx_file(
        &self,
        level: u32,
        min: TxId,
        max: TxId,
        body: LtxBody,
    ) -> Result<FileInfo> {
        self.hit();
        self.inner.write_ltx_file(level, min, max, body).await
    }
    async fn delete_ltx_files(&self, files: &[FileInfo]) -> Result<()> {
        self.hit();
        self.inner.delete_ltx_files(files).await
    }
    async fn delete_all(&self) -> Result<()> {
        self.hit();
        self.inner.delete_all().await
    }
}

fn fast_levels() -> LevelsConfig {
    LevelsConfig {
        intervals: vec![
            Duration::from_millis(300),
            Duration::from_millis(900),
            Duration::from_millis(1800),
        ],
        snapshot_interval: Duration::from_secs(3),
        snapshot_retention: Duration::from_secs(5),
        l0_retention: Duration::from_millis(600),
        retention_enabled: true,
        verify_compaction: true,
    }
}

fn options(levels: LevelsConfig) -> ReplicatorOptions {
    ReplicatorOptions {
        sync_interval: Duration::from_millis(20),
        monitor_interval: Duration::from_millis(100),
        levels,
        ..ReplicatorOptions::default()
    }
}

/// A fresh directory with a database set up for a workload (seed, a big
/// step every `big_every`, no shrinking) and the root of its file replica.
struct Fixture {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    root: std::path::PathBuf,
    w: Workload,
    conn: rusqlite::Connection,
}

impl Fixture {
    fn new(db_name: &str, seed: u64, big_every: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(db_name);
        let root = dir.path().join("replica");
        let w = Workload {
            seed,
            big_every,
            shrink_every: 0,
        };
        let conn = open_app(&db, None);
        w.setup(&conn);
        Fixture {
            dir,
            db,
            root,
            w,
            conn,
        }
    }
}

/// A replicator with a maintainer whose scheduler is closed: the test
/// syncs, compacts and enforces retention itself.
fn hand_driven(db: &Path, client: &Arc<dyn ReplicaClient>, cfg: LevelsConfig) -> Replicator {
    let sched = Scheduler::start(1);
    sched.close();
    Replicator::new(db, Replica::new(client.clone()), options(cfg)).with_scheduler(sched)
}

/// The L0 files a maintainer remembers, as (min, max) TXIDs.
fn remembered_l0(m: &Maintainer) -> Vec<(u64, u64)> {
    m.state()
        .l0
        .iter()
        .map(|f| (f.min_txid.0, f.max_txid.0))
        .collect()
}

fn level_counts(root: &Path) -> BTreeMap<u32, usize> {
    (0..=SNAPSHOT_LEVEL)
        .map(|l| (l, replica_txids(root, l).len()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

async fn restore_to(client: Arc<dyn ReplicaClient>, out: &Path, target: RestoreTarget) {
    let mut o = RestoreOptions::new(out);
    o.target = target;
    o.overwrite = true;
    restore(client, &o)
        .await
        .unwrap_or_else(|e| panic!("restore {target:?}: {e}"));
}

/// For every committed TXID: its L0 file's timestamp and the content. A
/// restore at 50 random TXIDs and 50 random timestamps each equals the
/// recorded state, with L1-L3 and snapshots present (the planner mixes
/// levels).
#[test]
fn point_in_time_restore_at_random_txids_and_timestamps() {
    let Fixture {
        dir,
        db,
        root,
        w,
        conn,
    } = Fixture::new("pitr.db", 41, 97);
    let client: Arc<dyn ReplicaClient> = Arc::new(FileReplicaClient::new(&root));
    let mut levels = fast_levels();
    // L0 files stay, so every TXID is restorable; the levels above still
    // build and the planner prefers them.
    levels.l0_retention = Duration::from_secs(3600);
    levels.snapshot_retention = Duration::from_secs(3600);
    // (txid, created_at of its L0 file, content hash)
    let mut history: Vec<(TxId, jiff::Timestamp, String)> = Vec::new();
    let rt = litestreampp_e2e::runtime();
    rt.block_on(async {
        let sched = Scheduler::start(2);
        let mut r = Replicator::new(&db, Replica::new(client.clone()), options(levels))
            .with_scheduler(sched.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 1..=400u64 {
            w.step(&conn, n, false);
            let rep = r.sync_once().await.unwrap();
            let hash = content_hash(&conn);
            for f in &rep.upload.files {
                history.push((f.max_txid, f.created_at, hash.clone()));
            }
            if n % 100 == 50 {
                r.snapshot().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(2..15))).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        sched.settle().await;
        r.close().unwrap();
    });
    drop(conn);
    let counts = level_counts(&root);
    for l in [0, 1, 2, 3, SNAPSHOT_LEVEL] {
        assert!(counts.contains_key(&l), "level {l} missing: {counts:?}");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let out = dir.path().join("out.db");
    let mut used_levels = std::collections::BTreeSet::new();
    rt.block_on(async {
        for _ in 0..50 {
            let (txid, _, hash) = &history[rng.random_range(0..history.len())];
            let plan = plan_restore(client.as_ref(), RestoreTarget::TxId(*txid))
                .await
                .unwrap();
            used_levels.extend(plan.files.iter().map(|f| f.level));
            restore_to(client.clone(), &out, RestoreTarget::TxId(*txid)).await;
            let conn = rusqlite::Connection::open(&out).unwrap();
            assert_eq!(&content_hash(&conn), hash, "restore at TXID {txid}");
        }
        let (t0, t1) = (history[0].1, history[history.len() - 1].1);
        let span = t1.as_millisecond() - t0.as_millisecond();
        for _ in 0..50 {
            let ms = t0.as_millisecond() + 1 + rng.random_range(0..span);
            let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
            // The newest TXID whose file was created strictly before `ts`.
            let want = history.iter().rev().find(|(_, c, _)| *c < ts).unwrap();
            restore_to(client.clone(), &out, RestoreTarget::Timestamp(ts)).await;
            let conn = rusqlite::Connection::open(&out).unwrap();
            assert_eq!(
                content_hash(&conn),
                want.2,
                "restore at {ts} (expected TXID {})",
                want.0
            );
        }
    });
    assert!(
        used_levels.len() >= 3,
        "restores should mix levels, used {used_levels:?}"
    );
}

/// Many compaction cycles with short intervals and retention on: after
/// each, the latest state restores; retention deletes only what newer files
/// cover and never the newest snapshot.
#[test]
fn retention_over_many_cycles_never_breaks_a_restore() {
    let Fixture {
        dir,
        db,
        root,
        w,
        conn,
    } = Fixture::new("ret.db", 5, 0);
    let client: Arc<dyn ReplicaClient> = Arc::new(FileReplicaClient::new(&root));
    let cfg = fast_levels();
    let rt = litestreampp_e2e::runtime();
    let mut max_snapshots = 0;
    let mut restores = 0;
    rt.block_on(async {
        let sched = Scheduler::start(2);
        let r = Replicator::new(&db, Replica::new(client.clone()), options(cfg.clone()))
            .with_scheduler(sched.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(r.run(async {
            let _ = stop_rx.await;
        }));
        let started = Instant::now();
        let mut n = 0u64;
        let out = dir.path().join("cycle.db");
        // About 14 s: five snapshot intervals, many L1-L3 cycles.
        while started.elapsed() < Duration::from_secs(14) {
            for _ in 0..10 {
                n += 1;
                w.step(&conn, n, false);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let the replicator catch up, then restore the latest state.
            tokio::time::sleep(Duration::from_millis(150)).await;
            restore_to(client.clone(), &out, RestoreTarget::Latest).await;
            let m = verify_restore(&out, &w);
            assert!(m <= n && m + 10 >= n, "restored step {m}, written {n}");
            restores += 1;
            let snaps = replica_txids(&root, SNAPSHOT_LEVEL);
            assert!(!snaps.is_empty() || started.elapsed() < Duration::from_secs(1));
            max_snapshots = max_snapshots.max(snaps.len());
        }
        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
        sched.settle().await;
    });
    drop(conn);
    assert!(restores >= 20, "only {restores} restores");
    // Snapshots every 3 s kept 5 s: never more than a few at once.
    assert!(
        (1..=4).contains(&max_snapshots),
        "{max_snapshots} snapshots at once"
    );
    let counts = level_counts(&root);
    for l in [1, 2, 3, SNAPSHOT_LEVEL] {
        assert!(counts.contains_key(&l), "level {l} missing: {counts:?}");
    }
    // L0 files covered by L1 and older than the L0 retention are gone.
    let l0 = replica_txids(&root, 0);
    let l1_max = replica_txids(&root, 1).last().unwrap().1;
    let covered = l0.iter().filter(|(_, max)| *max <= l1_max).count();
    assert!(
        covered < 40,
        "{covered} L0 files covered by L1 remain (retention not working)"
    );
    // Every level's files are contiguous and the final state restores.
    let out = dir.path().join("final.db");
    rt.block_on(restore_to(client.clone(), &out, RestoreTarget::Latest));
    verify_restore(&out, &w);
}

/// Once its levels have settled, an idle database makes no requests at all
/// (Litestream lists every database every 15 s).
#[test]
fn idle_database_makes_no_requests() {
    let Fixture {
        dir,
        db,
        root,
        w,
        conn,
    } = Fixture::new("idle.db", 9, 0);
    let counting = Arc::new(Counting {
        inner: FileReplicaClient::new(&root),
        requests: AtomicU64::new(0),
    });
    let client: Arc<dyn ReplicaClient> = counting.clone();
    let mut cfg = fast_levels();
    cfg.snapshot_interval = Duration::from_secs(1);
    cfg.snapshot_retention = Duration::from_secs(2);
    let rt = litestreampp_e2e::runtime();
    rt.block_on(async {
        let sched = Scheduler::start(2);
        let r = Replicator::new(&db, Replica::new(client.clone()), options(cfg))
            .with_scheduler(sched.clone());
        let status = r.status_handle();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(r.run(async {
            let _ = stop_rx.await;
        }));
        for n in 1..=60 {
            w.step(&conn, n, false);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Settle: L1-L3 boundaries, the last snapshot, snapshot and L0
        // retention (about 5 s), then count over 6 s: 20 L1 intervals,
        // 3 L3 intervals, 6 snapshot intervals.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let before = counting.count();
        let syncs_before = status.lock().unwrap().syncs;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let during = counting.count() - before;
        let syncs = status.lock().unwrap().syncs - syncs_before;
        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
        assert!(syncs > 10, "the replicator kept polling ({syncs} syncs)");
        assert_eq!(during, 0, "requests from an idle database over 6 s");
        let (queued, running) = sched.counts();
        assert_eq!((queued, running), (0, 0), "nothing scheduled when idle");
    });
    drop(conn);
    let counts = level_counts(&root);
    assert_eq!(
        counts.get(&SNAPSHOT_LEVEL),
        Some(&1),
        "one snapshot once settled: {counts:?}"
    );
    // The settled replica holds the last step.
    let out = dir.path().join("out.db");
    rt.block_on(restore_to(client, &out, RestoreTarget::Latest));
    assert_eq!(verify_restore(&out, &w), 60);
    // -timestamp as a duration before now, from the command line.
    let url = format!("file://{}", root.display());
    let now_out = dir.path().join("now.db");
    let mut c = ours();
    c.args(["restore", "-timestamp", "-0s", "-o"])
        .arg(&now_out)
        .arg(&url);
    run_ok(c);
    assert_eq!(verify_restore(&now_out, &w), 60);
    let early = dir.path().join("early.db");
    let mut c = ours();
    c.args(["restore", "-timestamp", "-10m", "-o"])
        .arg(&early)
        .arg(&url);
    let (_, err) = run_err(c);
    assert!(err.contains("not available"), "{err}");
    assert!(!early.exists());
}

/// A snapshot of a large database is encoded while writers go on: no
/// commit waits for it (Litestream holds the write lock, upstream #1332).
#[test]
fn snapshot_does_not_stall_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let root = dir.path().join("replica");
    let conn = open_app(&db, None);
    conn.execute_batch(
        "CREATE TABLE b(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 40000)
         INSERT INTO b(v) SELECT randomblob(3000) FROM c;",
    )
    .unwrap();
    let client: Arc<dyn ReplicaClient> = Arc::new(FileReplicaClient::new(&root));
    let rt = litestreampp_e2e::runtime();
    let (snap_time, worst, commits) = rt.block_on(async {
        let sched = Scheduler::start(1);
        let mut r = Replicator::new(
            &db,
            Replica::new(client.clone()),
            options(LevelsConfig::default()),
        )
        .with_scheduler(sched);
        r.sync_once().await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let p = db.clone();
        let writer = std::thread::spawn(move || {
            let c = open_app(&p, None);
            let mut worst = Duration::ZERO;
            let mut commits = 0u32;
            while !s2.load(Ordering::SeqCst) {
                let t = Instant::now();
                c.execute(
                    "UPDATE b SET v = randomblob(3000) WHERE id = ?1",
                    [commits % 40000 + 1],
                )
                .unwrap();
                worst = worst.max(t.elapsed());
                commits += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (worst, commits)
        });
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let info = r.snapshot().await.unwrap().expect("a snapshot");
        let snap_time = t.elapsed();
        stop.store(true, Ordering::SeqCst);
        let (worst, commits) = writer.join().unwrap();
        assert!(info.size > 50 << 20, "snapshot of {} bytes", info.size);
        r.close().unwrap();
        (snap_time, worst, commits)
    });
    eprintln!("snapshot took {snap_time:?}; {commits} commits meanwhile, slowest {worst:?}");
    assert!(commits > 20, "writers made progress: {commits} commits");
    assert!(
        worst < Duration::from_millis(250) && worst * 4 < snap_time,
        "a commit waited {worst:?} during a {snap_time:?} snapshot"
    );
    let out = dir.path().join("out.db");
    rt.block_on(restore_to(client, &out, RestoreTarget::Latest));
    let ic: String = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ic, "ok");
}

/// `retention.enabled: false` leaves every replica file in place (bucket
/// lifecycle rules delete them), and the schedule still settles: no
/// request loop over files it chose not to delete.
#[test]
fn retention_disabled_deletes_nothing() {
    let Fixture {
        dir,
        db,
        root,
        w,
        conn,
    } = Fixture::new("keep.db", 12, 0);
    let counting = Arc::new(Counting {
        inner: FileReplicaClient::new(&root),
        requests: AtomicU64::new(0),
    });
    let client: Arc<dyn ReplicaClient> = counting.clone();
    let mut cfg = fast_levels();
    cfg.retention_enabled = false;
    cfg.snapshot_interval = Duration::from_secs(1);
    cfg.snapshot_retention = Duration::from_secs(1);
    let rt = litestreampp_e2e::runtime();
    let uploaded = rt.block_on(async {
        let sched = Scheduler::start(2);
        let r = Replicator::new(&db, Replica::new(client.clone()), options(cfg))
            .with_scheduler(sched.clone());
        let status = r.status_handle();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(r.run(async {
            let _ = stop_rx.await;
        }));
        for n in 1..=40 {
            w.step(&conn, n, false);
            tokio::time::sleep(Duration::from_millis(75)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = counting.count();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = counting.count() - before;
        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
        assert_eq!(during, 0, "requests once settled with retention off");
        assert_eq!(sched.counts(), (0, 0));
        status.lock().unwrap().files_uploaded
    });
    drop(conn);
    // Every L0 file uploaded is still there, and the expired snapshots too.
    assert_eq!(replica_txids(&root, 0).len() as u64, uploaded);
    assert!(
        replica_txids(&root, SNAPSHOT_LEVEL).len() >= 2,
        "snapshots were deleted: {:?}",
        level_counts(&root)
    );
    let out = dir.path().join("out.db");
    rt.block_on(restore_to(client, &out, RestoreTarget::Latest));
    assert_eq!(verify_restore(&out, &w), 40);
}

/// An upload pass that fails midway still records what it uploaded: the
/// file that reached the replica before the failure is compacted into L1
/// (no TXID gap there) and deleted by L0 retention like every other (the
/// long fault campaign at 30 % found such files left behind). The file
/// backend is made to refuse one file by a directory in its place.
#[test]
fn upload_failing_midway_records_the_files_it_uploaded() {
    let Fixture {
        dir,
        db,
        root,
        w,
        conn,
    } = Fixture::new("mid.db", 14, 0);
    let client: Arc<dyn ReplicaClient> = Arc::new(FileReplicaClient::new(&root));
    let mut cfg = fast_levels();
    cfg.l0_retention = Duration::from_millis(1);
    let rt = litestreampp_e2e::runtime();
    rt.block_on(async {
        let mut r = hand_driven(&db, &client, cfg);
        w.step(&conn, 1, false);
        r.sync_once().await.unwrap();
        let pos = replica_txids(&root, 0).last().unwrap().1;
        let l0_dir = root.join("ltx/0");
        let in_the_way = |txid: u64| {
            l0_dir
                .join(litestreampp_core::txid::ltx_file_name(
                    TxId(txid),
                    TxId(txid),
                ))
                .join("in-the-way")
        };
        std::fs::create_dir_all(in_the_way(pos + 1)).unwrap();
        w.step(&conn, 2, false);
        r.sync_once().await.unwrap_err();
        w.step(&conn, 3, false);
        r.sync_once().await.unwrap_err();
        // Both files wait locally; the first now goes, the second fails.
        std::fs::remove_dir_all(in_the_way(pos + 1).parent().unwrap()).unwrap();
        std::fs::create_dir_all(in_the_way(pos + 2)).unwrap();
        r.sync_once().await.unwrap_err();
        assert!(replica_txids(&root, 0).contains(&(pos + 1, pos + 1)));
        std::fs::remove_dir_all(in_the_way(pos + 2).parent().unwrap()).unwrap();
        r.sync_once().await.unwrap();

        let m = r.maintainer().unwrap().clone();
        let known = remembered_l0(&m);
        assert_eq!(known, replica_txids(&root, 0), "L0 files known");
        m.compact(1).await.unwrap();
        m.verify_level(1).await.unwrap();
        assert_eq!(replica_txids(&root, 1).last().unwrap().1, pos + 2);
        m.enforce_l0_retention().await.unwrap();
        assert_eq!(replica_txids(&root, 0), vec![(pos + 2, pos + 2)]);
        r.close().unwrap();
    });
    drop(conn);
    let out = dir.path().join("out.db");
    rt.block_on(restore_to(client, &out, RestoreTarget::Latest));
    assert_eq!(verify_restore(&out, &w), 3);
}

/// Should the remembered L0 files ever lack one the replica holds (a bug,
/// or a late copy of a retried upload), L1 compaction relearns them from
/// a listing instead of leaving a TXID gap at L1.
#[test]
fn compaction_relearns_l0_files_it_does_not_remember() {
    let Fixture {
        dir,
        db,
        root,
        w,
        conn,
    } = Fixture::new("gap.db", 15, 0);
    let client: Arc<dyn ReplicaClient> = Arc::new(FileReplicaClient::new(&root));
    let cfg = fast_levels();
    let rt = litestreampp_e2e::runtime();
    rt.block_on(async {
        let mut r = hand_driven(&db, &client, cfg.clone());
        w.step(&conn, 1, false);
        r.sync_once().await.unwrap();
        r.maintainer().unwrap().compact(1).await.unwrap();
        for n in 2..=4 {
            w.step(&conn, n, false);
            r.sync_once().await.unwrap();
        }
        r.close().unwrap();
        let l1 = replica_txids(&root, 1);
        let l0 = replica_txids(&root, 0);
        assert_eq!(l1.len(), 1);
        let forgotten = l0.iter().find(|f| f.0 == l1[0].1 + 1).copied().unwrap();
        // A maintainer that remembers every L0 file but the one after L1.
        let mut state = LevelState::load(client.as_ref()).await.unwrap();
        state
            .l0
            .retain(|f| (f.min_txid.0, f.max_txid.0) != forgotten);
        // A meta directory without local L0 files.
        let m = Maintainer::new(
            "gap",
            client.clone(),
            cfg,
            MetaDir::new(dir.path().join("work")),
            state,
        );
        let out = m.compact(1).await.unwrap().unwrap();
        assert_eq!(out.min_txid.0, forgotten.0, "L1 continues without a gap");
        m.verify_level(1).await.unwrap();
        let known = remembered_l0(&m);
        assert_eq!(known, l0, "relearned from the listing");
    });
}
