//! The per-database engine against real SQLite files: every restore equals
//! the database as it was at that TXID, across checkpoints, WAL restarts
//! seen and unseen, shrinking and growth.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use litestreampp_core::TxId;
use litestreampp_core::client::ReplicaClient;
use litestreampp_core::client::file::FileReplicaClient;
use litestreampp_core::db::{CheckpointMode, Db, DbOptions};
use litestreampp_core::replica::{Replica, UploadReport};
use litestreampp_core::restore::{RestoreOptions, RestoreTarget, restore};
use rusqlite::Connection;

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db_path: PathBuf,
    app: Connection,
    db: Db,
    replica: Replica,
    client: Arc<dyn ReplicaClient>,
    /// Content hash at each TXID we synced.
    states: BTreeMap<TxId, String>,
    snapshots: usize,
}

fn content(conn: &Connection) -> String {
    let mut out = String::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for t in tables {
        out.push_str(&t);
        let mut st = conn
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))
            .unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).unwrap();
                out.push_str(&format!("{v:?},"));
            }
            out.push('\n');
        }
    }
    format!("{:016x}:{}", fxhash(&out), out.len())
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn open_app(path: &Path, autocheckpoint: i64) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c.execute_batch("PRAGMA journal_mode=wal;").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", autocheckpoint)
        .unwrap();
    c
}

impl Env {
    fn new(opts: DbOptions, autocheckpoint: i64) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let db_path = root.join("app.db");
        let app = open_app(&db_path, autocheckpoint);
        app.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB); CREATE INDEX ti ON t(v);",
        )
        .unwrap();
        let client: Arc<dyn ReplicaClient> = Arc::new(FileReplicaClient::new(root.join("replica")));
        Env {
            _dir: dir,
            db: Db::new(&db_path, opts),
            replica: Replica::new(client.clone()),
            client,
            root,
            db_path,
            app,
            states: BTreeMap::new(),
            snapshots: 0,
        }
    }

    fn insert(&self, n: usize, size: usize) {
        let tx = self.app.unchecked_transaction().unwrap();
        for _ in 0..n {
            tx.execute("INSERT INTO t(v) VALUES (randomblob(?1))", [size as i64])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    async fn sync(&mut self) {
        let out = self.db.sync().unwrap();
        self.snapshots += out
            .files
            .iter()
            .filter(|f| f.snapshot && f.txid != TxId(1))
            .count();
        self.replica
            .upload(self.db.meta(), 0, &mut UploadReport::default())
            .await
            .unwrap();
        if let Some(p) = self.db.position().unwrap() {
            self.states.insert(p.txid, content(&self.app));
        }
    }

    async fn restore_at(&self, target: RestoreTarget, name: &str) -> PathBuf {
        let out = self.root.join(name);
        let mut o = RestoreOptions::new(&out);
        o.target = target;
        o.integrity_check = litestreampp_core::restore::IntegrityCheck::Full;
        restore(self.client.clone(), &o).await.unwrap();
        out
    }

    /// Every recorded TXID restores to the recorded content.
    async fn check_all(&self) {
        for (i, (txid, want)) in self.states.iter().enumerate() {
            let p = self
                .restore_at(RestoreTarget::TxId(*txid), &format!("r-{i}.db"))
                .await;
            let got = content(&Connection::open(&p).unwrap());
            assert_eq!(&got, want, "restore at TXID {txid}");
        }
        let p = self.restore_at(RestoreTarget::Latest, "latest.db").await;
        let got = content(&Connection::open(&p).unwrap());
        assert_eq!(Some(&got), self.states.values().last(), "latest restore");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_syncs_restore_at_every_txid() {
    let mut e = Env::new(DbOptions::default(), 0);
    e.sync().await;
    for i in 0..20 {
        e.insert(1 + i % 4, 100 + i * 50);
        e.sync().await;
    }
    e.app.execute("DELETE FROM t WHERE id % 2 = 0", []).unwrap();
    e.sync().await;
    assert_eq!(e.snapshots, 0, "no snapshot after the first");
    e.check_all().await;

    // The restored file is byte-identical to the source after a checkpoint.
    let latest = e.restore_at(RestoreTarget::Latest, "bytes.db").await;
    e.db.close().unwrap();
    e.app
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    assert_eq!(
        std::fs::read(&latest).unwrap(),
        std::fs::read(&e.db_path).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_checkpoints_keep_continuity() {
    let opts = DbOptions {
        min_checkpoint_page_count: 50,
        ..DbOptions::default()
    };
    let mut e = Env::new(opts, 0);
    e.sync().await;
    let mut checkpoints = 0;
    for _ in 0..30 {
        e.insert(20, 1000);
        let out = e.db.sync().unwrap();
        checkpoints += usize::from(out.checkpoint.is_some());
        e.snapshots += out
            .files
            .iter()
            .filter(|f| f.snapshot && f.txid != TxId(1))
            .count();
        e.replica
            .upload(e.db.meta(), 0, &mut UploadReport::default())
            .await
            .unwrap();
        let p = e.db.position().unwrap().unwrap();
        e.states.insert(p.txid, content(&e.app));
    }
    assert!(checkpoints >= 5, "checkpoints ran: {checkpoints}");
    assert_eq!(
        e.snapshots, 0,
        "WAL restarts after our own checkpoints need no snapshot"
    );
    e.check_all().await;
}

/// The application checkpoints (and restarts the WAL) while the replicator
/// is away: the old generation's committed frames beyond our position are
/// shipped first, so the restore holds every commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_checkpoint_and_restart_ships_old_tail() {
    let mut e = Env::new(DbOptions::default(), 0);
    e.insert(50, 500);
    e.sync().await;
    e.insert(5, 500);
    e.sync().await;
    e.db.close().unwrap();
    // While nobody watches: more commits, a full checkpoint, a restart.
    e.insert(3, 700);
    e.insert(2, 700);
    let want_before_restart = content(&e.app);
    e.app
        .pragma_update(None, "wal_checkpoint", "PASSIVE")
        .unwrap();
    e.insert(1, 100); // restarts the WAL (salt1 + 1)
    let out = e.db.sync().unwrap();
    assert!(
        out.snapshot_reason.is_none(),
        "snapshot taken: {:?}",
        out.snapshot_reason
    );
    assert_eq!(out.files.len(), 2, "old tail, then the new generation");
    e.replica
        .upload(e.db.meta(), 0, &mut UploadReport::default())
        .await
        .unwrap();
    let p = e.db.position().unwrap().unwrap();
    e.states.insert(TxId(p.txid.0 - 1), want_before_restart);
    e.states.insert(p.txid, content(&e.app));
    e.check_all().await;
}

/// Restarted twice, or truncated, while away: continuity cannot be proven
/// and a snapshot is taken; the restore still equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprovable_continuity_takes_a_snapshot() {
    for case in ["truncate", "two-restarts", "deleted-wal"] {
        let mut e = Env::new(DbOptions::default(), 0);
        e.insert(30, 400);
        e.sync().await;
        e.db.close().unwrap();
        match case {
            "truncate" => {
                e.insert(4, 400);
                e.app
                    .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                    .unwrap();
                e.insert(1, 10);
            }
            "two-restarts" => {
                for _ in 0..2 {
                    e.insert(4, 400);
                    e.app
                        .pragma_update(None, "wal_checkpoint", "PASSIVE")
                        .unwrap();
                }
                e.insert(1, 10);
            }
            _ => {
                e.insert(4, 400);
                // The last connection closing checkpoints and deletes the WAL.
                let Env { app, .. } = &mut e;
                let old = std::mem::replace(app, Connection::open_in_memory().unwrap());
                old.close().unwrap();
                assert!(!e.root.join("app.db-wal").exists());
                e.app = open_app(&e.db_path, 0);
            }
        }
        let out = e.db.sync().unwrap();
        assert!(out.snapshot_reason.is_some(), "{case}: expected a snapshot");
        e.replica
            .upload(e.db.meta(), 0, &mut UploadReport::default())
            .await
            .unwrap();
        let p = e.db.position().unwrap().unwrap();
        e.states.insert(p.txid, content(&e.app));
        e.check_all().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrink_and_grow() {
    let mut e = Env::new(DbOptions::default(), 0);
    e.insert(200, 2000);
    e.sync().await;
    e.app.execute("DELETE FROM t", []).unwrap();
    e.sync().await;
    e.app.execute_batch("VACUUM").unwrap();
    e.sync().await;
    e.insert(100, 3000);
    e.sync().await;
    e.check_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_truncate_checkpoint() {
    let mut e = Env::new(DbOptions::default(), 0);
    e.insert(100, 1000);
    e.sync().await;
    let out = e.db.checkpoint(CheckpointMode::Truncate).unwrap();
    e.replica
        .upload(e.db.meta(), 0, &mut UploadReport::default())
        .await
        .unwrap();
    assert_eq!(
        out.checkpoint,
        Some(CheckpointMode::Passive),
        "PASSIVE was enough"
    );
    e.insert(10, 1000);
    e.sync().await;
    assert_eq!(e.snapshots, 0);
    e.check_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_ahead_of_local_state_gets_a_higher_txid() {
    let mut e = Env::new(DbOptions::default(), 0);
    e.insert(10, 100);
    e.sync().await;
    e.insert(10, 100);
    e.sync().await;
    // Lose the local meta directory: the next sync must not reuse TXIDs.
    e.db.close().unwrap();
    std::fs::remove_dir_all(e.db.meta_dir()).unwrap();
    let mut db = Db::new(&e.db_path, DbOptions::default());
    let remote = e.replica.fetch_position().await.unwrap();
    db.set_txid_floor(remote);
    e.db = db;
    e.insert(1, 100);
    e.sync().await;
    assert_eq!(e.db.position().unwrap().unwrap().txid, TxId(remote.0 + 1));
    e.check_all().await;
}

/// A database renamed over while open is sealed as the new file, never
/// the old file's position under the new one's signature (found by the
/// fleet soak: a replaced tenant stayed cold with its old content in the
/// replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_renamed_over_while_open_seals_the_new_file() {
    use std::os::unix::fs::MetadataExt;
    let mut e = Env::new(DbOptions::default(), 0);
    e.insert(5, 300);
    e.sync().await;
    let other = e.root.join("other.db");
    {
        let c = Connection::open(&other).unwrap();
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE u(x); INSERT INTO u VALUES (1);")
            .unwrap();
    }
    std::fs::rename(&other, &e.db_path).unwrap();
    let new_ino = std::fs::metadata(&e.db_path).unwrap().ino();
    let (out, sig) = e.db.seal().unwrap();
    assert!(
        out.files.iter().any(|f| f.snapshot),
        "the new file is snapshotted"
    );
    let sig = sig.expect("sealed");
    assert_eq!(sig.db_ino, new_ino, "sealed under the new file's signature");
    e.replica
        .upload(e.db.meta(), 0, &mut UploadReport::default())
        .await
        .unwrap();
    drop(std::mem::replace(&mut e.app, open_app(&e.db_path, 0)));
    let p = e.db.position().unwrap().unwrap();
    e.states.insert(p.txid, content(&e.app));
    e.check_all().await;
}

/// A database replaced (another file renamed over it, the old WAL and
/// wal-index removed) while the engine holds it open: the next sync must
/// read the new file whole, never the old file's pages with the new
/// file's WAL frames (found by the fleet soak: a replaced tenant restored
/// as "database disk image is malformed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_replaced_while_open_is_snapshotted_from_the_new_file() {
    let mut e = Env::new(DbOptions::default(), 0);
    e.insert(20, 300);
    e.sync().await;
    for round in 0..2 {
        let other = e.root.join(format!("other-{round}.db"));
        {
            let c = open_app(&other, 0);
            c.execute_batch(
                "CREATE TABLE u(x INTEGER PRIMARY KEY, y BLOB); CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
            )
            .unwrap();
            c.execute("INSERT INTO u(y) VALUES (randomblob(5000))", [])
                .unwrap();
        }
        // The application stops, the operator swaps the files, the
        // application starts on the new one and writes.
        drop(std::mem::replace(
            &mut e.app,
            Connection::open_in_memory().unwrap(),
        ));
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", e.db_path.display()));
        }
        std::fs::rename(&other, &e.db_path).unwrap();
        e.app = open_app(&e.db_path, 0);
        e.insert(3, 700);
        e.sync().await;
        e.insert(2, 100);
        e.sync().await;
    }
    assert!(e.snapshots >= 2, "a replaced file is snapshotted");
    e.check_all().await;
}

/// Going cold and back: a sealed database (WAL checkpointed and emptied,
/// seal record written) continues without a snapshot after the
/// application wrote while no engine was open, whether the application
/// closed its last connection (the WAL is deleted) or kept one open (the
/// WAL restarts); a checkpoint by the application while cold is detected
/// and snapshotted. Every TXID restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_database_continues_without_snapshot() {
    let mut e = Env::new(DbOptions::default(), 0);
    let wal = e.root.join("app.db-wal");
    e.sync().await;
    for round in 0..3 {
        e.insert(5, 300);
        e.sync().await;
        let (out, sig) = e.db.seal().unwrap();
        assert!(out.files.iter().all(|f| !f.snapshot));
        e.replica
            .upload(e.db.meta(), 0, &mut UploadReport::default())
            .await
            .unwrap();
        let sig = sig.expect("sealed");
        assert_eq!(sig.wal_size, 0);
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        e.db.close().unwrap();
        e.db = Db::new(&e.db_path, DbOptions::default());
        if round == 0 {
            // The application's last connection closes (the WAL goes away)
            // and a new one writes.
            drop(std::mem::replace(
                &mut e.app,
                Connection::open_in_memory().unwrap(),
            ));
            assert!(!wal.exists(), "the last connection removed the WAL");
            e.app = open_app(&e.db_path, 0);
        }
        for _ in 0..3 {
            e.insert(2, 200);
        }
        e.sync().await;
        assert_eq!(e.snapshots, 0, "round {round}: no snapshot after a seal");
    }
    // Cold, and the application checkpoints behind our back: the database
    // file no longer matches the seal, so the next sync snapshots.
    let (_, sig) = e.db.seal().unwrap();
    assert!(sig.is_some());
    e.replica
        .upload(e.db.meta(), 0, &mut UploadReport::default())
        .await
        .unwrap();
    e.db.close().unwrap();
    e.db = Db::new(&e.db_path, DbOptions::default());
    e.insert(3, 500);
    e.app
        .pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    e.insert(1, 100);
    e.sync().await;
    assert_eq!(e.snapshots, 1, "a checkpoint while cold needs a snapshot");
    e.check_all().await;
}
