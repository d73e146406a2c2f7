//! A database larger than 1 GiB, so it spans SQLite's lock page (the page
//! at byte offset 2^30, never written and zero-filled on restore),
//! replicates and restores in both directions.
//!
//! CI runs this reduced form: 64 KiB pages, mostly compressible content,
//! random rows past the lock page. `bench/` replicates and restores a
//! 1 GiB database of 4 KiB random-content pages side by side with Go.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use litestreampp_e2e::*;
use rusqlite::Connection;

fn build(db: &std::path::Path) {
    let c = Connection::open(db).expect("open");
    c.execute_batch("PRAGMA page_size=65536; PRAGMA journal_mode=wal; PRAGMA synchronous=OFF; CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB);")
        .expect("schema");
    let tx = c.unchecked_transaction().expect("tx");
    for _ in 0..1_060 {
        tx.execute("INSERT INTO big(v) VALUES (zeroblob(1048576))", [])
            .expect("insert");
    }
    // Random content after the lock page.
    for _ in 0..40 {
        tx.execute("INSERT INTO big(v) VALUES (randomblob(200000))", [])
            .expect("insert");
    }
    tx.commit().expect("commit");
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .expect("checkpoint");
    let pages: i64 = c
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("page_count");
    assert!(
        pages * 65536 > (1 << 30) + 65536,
        "database must span the lock page: {pages} pages"
    );
}

fn digest(db: &std::path::Path) -> String {
    let c = Connection::open(db).expect("open");
    let ic: String = c
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .expect("quick_check");
    assert_eq!(ic, "ok", "{}", db.display());
    let (n, sum): (i64, i64) = c
        .query_row(
            "SELECT count(*), sum(length(v)) + total(unicode(hex(substr(v, 1000, 8)))) FROM big",
            [],
            |r| Ok((r.get(0)?, r.get::<_, f64>(1)? as i64)),
        )
        .expect("digest");
    format!("{n}/{sum}")
}

#[test]
fn database_over_1gib_both_directions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("big.db");
    build(&db);

    // Ours replicates: a snapshot, then changes on both sides of the lock page.
    let ours_replica = dir.path().join("ours-replica");
    let url = format!("file://{}", ours_replica.display());
    let mut c = ours();
    c.args(["replicate", "-once"]).arg(&db).arg(&url);
    run_ok(c);
    {
        let app = open_app(&db, Some(0));
        app.execute_batch("UPDATE big SET v = randomblob(70000) WHERE id IN (1, 1059, 1080); DELETE FROM big WHERE id = 1090;")
            .expect("update");
    }
    let mut c = ours();
    c.args(["replicate", "-once"]).arg(&db).arg(&url);
    run_ok(c);
    let want = digest(&db);

    let a = dir.path().join("ours-restore.db");
    let mut c = ours();
    c.args(["restore", "-o"]).arg(&a).arg(&url);
    run_ok(c);
    let b = dir.path().join("go-restore.db");
    let mut c = go();
    c.args(["restore", "-o"]).arg(&b).arg(&url);
    run_ok(c);
    assert!(same_bytes(&a, &b), "our restore and Go's differ");
    assert_eq!(digest(&a), want);
    std::fs::remove_file(&b).expect("rm");
    std::fs::remove_dir_all(&ours_replica).expect("rm");

    // Go replicates; our restore equals Go's restore.
    let go_replica = dir.path().join("go-replica");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    monitor-interval: 200ms\n    replica:\n      type: file\n      path: {}\n      sync-interval: 200ms\n", db.display(), go_replica.display()),
    )
    .expect("config");
    let mut c = go();
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("go.log"));
    wait_for("Go's snapshot upload", Duration::from_secs(120), || {
        !replica_txids(&go_replica, 0).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(terminate(child, Duration::from_secs(60)), 0);
    let c2 = dir.path().join("ours-from-go.db");
    let mut c = ours();
    c.args(["restore", "-o"])
        .arg(&c2)
        .arg(format!("file://{}", go_replica.display()));
    run_ok(c);
    let d = dir.path().join("go-from-go.db");
    let mut c = go();
    c.args(["restore", "-o"])
        .arg(&d)
        .arg(format!("file://{}", go_replica.display()));
    run_ok(c);
    assert!(
        same_bytes(&c2, &d),
        "our restore of Go's replica differs from Go's"
    );
    assert_eq!(digest(&c2), want);
}
