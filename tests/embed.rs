//! The embedding API (`litestreampp_core::embed`) on real SQLite files: a
//! file replica for the lifecycle (restore before serving, acknowledged
//! writes, shutdown), a closed port and a moto server for the failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use litestreampp_core::client::{self, ReplicaClient};
use litestreampp_core::embed::{Replication, RestoreOutcome};
use litestreampp_core::restore::{RestoreOptions, restore};
use litestreampp_e2e::moto::{self, Moto};
use litestreampp_e2e::open_app;
use rusqlite::Connection;

/// A first start on an empty replica: nothing to restore, the
/// application's table created, replication started.
async fn first_start(repl: &mut Replication, db: &Path) -> Connection {
    assert_eq!(
        repl.restore_if_needed().await.unwrap(),
        RestoreOutcome::NoReplica
    );
    let conn = open_app(db, None);
    conn.execute_batch("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    repl.start().unwrap();
    conn
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM items", [], |r| r.get(0))
        .unwrap()
}

/// Rows in the replica's newest state (restored to a scratch file).
async fn replica_rows(client: std::sync::Arc<dyn ReplicaClient>, scratch: &Path) -> i64 {
    let _ = std::fs::remove_file(scratch);
    match restore(client, &RestoreOptions::new(scratch)).await {
        Ok(_) => count(&Connection::open(scratch).unwrap()),
        // Polled right after start: the first sync may not be up yet.
        Err(e) if e.is_not_found() => 0,
        Err(e) => panic!("restore: {e}"),
    }
}

fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
}

#[test]
fn restores_before_serving_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let scratch = dir.path().join("scratch.db");
    litestreampp_e2e::runtime().block_on(async {
        // First start: nothing to restore.
        let mut repl = Replication::builder(&db)
            .replica_url(&url)
            .sync_interval(Duration::from_secs(5))
            .build()
            .unwrap();
        let conn = first_start(&mut repl, &db).await;
        let client = client::from_url(&url).unwrap();
        for i in 1..=20 {
            conn.execute("INSERT INTO items(body) VALUES (?1)", [format!("item {i}")])
                .unwrap();
            let t = Instant::now();
            let txid = repl.sync_and_wait().await.unwrap();
            // Well inside the 5 s sync interval: the flush did not wait.
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "flush took {:?}",
                t.elapsed()
            );
            assert!(txid.0 >= 1);
            if i % 5 == 0 {
                // Acknowledged means in the replica.
                assert_eq!(replica_rows(client.clone(), &scratch).await, i);
            }
        }
        let st = repl.status();
        assert!(st.running && st.last_error.is_none(), "{st:?}");
        assert_eq!(st.replica_txid, st.local_txid);
        // Unacknowledged writes are shipped by the shutdown.
        for i in 21..=25 {
            conn.execute("INSERT INTO items(body) VALUES (?1)", [format!("item {i}")])
                .unwrap();
        }
        drop(conn);
        let st = repl.shutdown(Duration::from_secs(30)).await.unwrap();
        assert!(!st.running);
        assert_eq!(replica_rows(client.clone(), &scratch).await, 25);

        // The database file is lost (an empty file left in its place): the
        // next start restores it first.
        remove_db(&db);
        std::fs::write(&db, b"").unwrap();
        let mut repl = Replication::builder(&db).replica_url(&url).build().unwrap();
        match repl.restore_if_needed().await.unwrap() {
            RestoreOutcome::Restored { txid, files, .. } => {
                assert!(txid.0 >= 21 && files >= 1, "{txid} {files}");
            }
            other => panic!("expected a restore, got {other:?}"),
        }
        let conn = open_app(&db, None);
        assert_eq!(count(&conn), 25);
        // Restoring again is a no-op: the database is present.
        assert!(matches!(
            repl.restore_if_needed().await.unwrap(),
            RestoreOutcome::LocalUntracked { .. }
        ));
        // Replication goes on from the restored database.
        repl.start().unwrap();
        conn.execute("INSERT INTO items(body) VALUES ('after restore')", [])
            .unwrap();
        repl.sync_and_wait().await.unwrap();
        assert_eq!(replica_rows(client.clone(), &scratch).await, 26);
        drop(conn);
        repl.shutdown(Duration::from_secs(30)).await.unwrap();
        // A restart with the database and its meta directory in place
        // keeps it.
        let repl = Replication::builder(&db).replica_url(&url).build().unwrap();
        assert!(matches!(
            repl.restore_if_needed().await.unwrap(),
            RestoreOutcome::UpToDate { .. }
        ));
    });
}

#[test]
fn a_database_behind_the_replica_is_restored_unless_within_the_lag() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("file://{}", dir.path().join("replica").display());
    let stale = dir.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    litestreampp_e2e::runtime().block_on(async {
        let mut repl = Replication::builder(&db).replica_url(&url).build().unwrap();
        let conn = first_start(&mut repl, &db).await;
        conn.execute("INSERT INTO items(body) VALUES ('one')", [])
            .unwrap();
        repl.sync_and_wait().await.unwrap();
        drop(conn);
        repl.shutdown(Duration::from_secs(30)).await.unwrap();
        // Keep a copy of the database and its meta directory as they are.
        let meta = dir.path().join(".app.db-litestream");
        copy_tree(&db, &stale.join("app.db"));
        copy_tree(&meta, &stale.join(".app.db-litestream"));
        // Two seconds later, more writes reach the replica.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut repl = Replication::builder(&db).replica_url(&url).build().unwrap();
        repl.start().unwrap();
        let conn = open_app(&db, None);
        conn.execute("INSERT INTO items(body) VALUES ('two')", [])
            .unwrap();
        repl.sync_and_wait().await.unwrap();
        drop(conn);
        repl.shutdown(Duration::from_secs(30)).await.unwrap();
        // The stale copy comes back in place of the database.
        remove_db(&db);
        std::fs::remove_dir_all(&meta).unwrap();
        copy_tree(&stale.join("app.db"), &db);
        copy_tree(&stale.join(".app.db-litestream"), &meta);
        let lenient = Replication::builder(&db)
            .replica_url(&url)
            .restore_lag(Duration::from_secs(3600))
            .build()
            .unwrap();
        assert!(matches!(
            lenient.restore_if_needed().await.unwrap(),
            RestoreOutcome::WithinLag { .. }
        ));
        let strict = Replication::builder(&db).replica_url(&url).build().unwrap();
        assert!(matches!(
            strict.restore_if_needed().await.unwrap(),
            RestoreOutcome::Restored { .. }
        ));
        assert_eq!(count(&open_app(&db, None)), 2);
    });
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// An S3 client for `url` with the test credentials.
fn s3(url: &str) -> std::sync::Arc<dyn ReplicaClient> {
    client::s3_client(moto::settings(url)).unwrap()
}

#[test]
fn an_unreachable_replica_fails_fast_unless_degraded_starts_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = moto::url_for(&format!("http://127.0.0.1:{port}"), "bkt", "app");
    litestreampp_e2e::runtime().block_on(async {
        let t = Instant::now();
        let err = Replication::builder(&db)
            .replica_client(s3(&url))
            .startup_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .restore_if_needed()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            err.contains("s3://bkt/app") && err.contains("unreachable"),
            "{err}"
        );
        assert!(err.contains("allow_degraded"), "{err}");
        let outcome = Replication::builder(&db)
            .replica_client(s3(&url))
            .startup_timeout(Duration::from_secs(5))
            .allow_degraded(true)
            .build()
            .unwrap()
            .restore_if_needed()
            .await
            .unwrap();
        assert!(
            matches!(outcome, RestoreOutcome::Degraded { .. }),
            "{outcome:?}"
        );
    });
}

#[test]
fn required_replication_reports_failure_once_errors_persist() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let url = moto::url_for(&moto.endpoint(), "bkt", "app");
    litestreampp_e2e::runtime().block_on(async {
        let mut repl = Replication::builder(&db)
            .replica_client(s3(&url))
            .replication_required(Duration::from_secs(2))
            .build()
            .unwrap();
        let conn = first_start(&mut repl, &db).await;
        repl.sync_and_wait().await.unwrap();
        // Healthy: no failure for a while.
        let quiet = tokio::time::timeout(Duration::from_secs(3), repl.failed()).await;
        assert!(quiet.is_err(), "failed while healthy: {quiet:?}");
        // The replica goes away; writes go on.
        drop(moto);
        conn.execute("INSERT INTO items(body) VALUES ('lost?')", [])
            .unwrap();
        let err = repl.sync_and_wait().await.unwrap_err().to_string();
        assert!(err.contains("app.db"), "{err}");
        let failed = tokio::time::timeout(Duration::from_secs(60), repl.failed())
            .await
            .expect("failure reported");
        assert!(!failed.is_empty());
        let st = repl.status();
        assert!(st.errors >= 1 && st.last_error.is_some(), "{st:?}");
        drop(conn);
        // The final sync cannot reach the replica either: an error, bounded.
        let t = Instant::now();
        assert!(repl.shutdown(Duration::from_secs(5)).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(8));
    });
}

/// The replicator's own watch rests between a change notice and the sync
/// that answers it, and PASSIVE checkpoints copy frames before taking the
/// write lock. Bursts of commits large enough to checkpoint, with quiet
/// pauses between them, must each reach the replica promptly (the poll is
/// two minutes: only the watch can notice them) and intact, while the WAL
/// is checkpointed and restarted (its file stays smaller than the bursts).
#[test]
fn bursts_are_noticed_after_the_watch_rested_and_checkpoints_keep_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("file://{}", dir.path().join("replica").display());
    let scratch = dir.path().join("scratch.db");
    litestreampp_e2e::runtime().block_on(async {
        let mut repl = Replication::builder(&db)
            .replica_url(&url)
            .sync_interval(Duration::from_millis(200))
            .monitor_interval(Duration::from_secs(120))
            .build()
            .unwrap();
        let conn = first_start(&mut repl, &db).await;
        let client = client::from_url(&url).unwrap();
        let (bursts, per_burst) = (4u32, 1500u32);
        for burst in 0..bursts {
            for i in 0..per_burst {
                conn.execute(
                    "INSERT INTO items(body) VALUES (?1)",
                    [format!("{burst}-{i}-{}", "x".repeat(200))],
                )
                .unwrap();
            }
            let expected = i64::from((burst + 1) * per_burst);
            let t = Instant::now();
            while replica_rows(client.clone(), &scratch).await != expected {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "burst {burst} not in the replica after 10 s: the watch did not notice it"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await; // quiet: the next burst starts a new notice
        }
        // Checkpointed and restarted along the way: one frame per commit
        // would otherwise have grown the WAL past all the bursts' frames.
        let wal_frames = std::fs::metadata(dir.path().join("app.db-wal"))
            .unwrap()
            .len()
            / 4120;
        assert!(
            wal_frames < u64::from(bursts * per_burst) / 2,
            "WAL holds {wal_frames} frames: never checkpointed"
        );
        let local = count(&conn);
        drop(conn);
        repl.shutdown(Duration::from_secs(10)).await.unwrap();
        assert_eq!(replica_rows(client, &scratch).await, local);
        let check: String = Connection::open(&scratch)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    });
}
