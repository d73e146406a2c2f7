//! Bad input gets a clear error naming the file or key, a non-zero exit,
//! no panic, and no output file left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

use litestreampp_e2e::*;

struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
    replica: PathBuf,
    url: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let w = Workload::new(5);
    let conn = open_app(&db, Some(0));
    w.setup(&conn);
    for n in 1..=40 {
        w.step(&conn, n, true);
    }
    drop(conn);
    let mut c = ours();
    c.args(["replicate", "-once"]).arg(&db).arg(&url);
    run_ok(c);
    Fixture {
        dir,
        db,
        replica,
        url,
    }
}

fn l0_file(replica: &Path) -> PathBuf {
    replica.join("ltx/0/0000000000000001-0000000000000001.ltx")
}

/// Runs a failing command and checks the message and that `out` (and its
/// temporary) do not exist.
fn fails(c: std::process::Command, want: &[&str], out: Option<&Path>) -> String {
    let (code, stderr) = run_err(c);
    assert_ne!(code, 0);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for w in want {
        assert!(stderr.contains(w), "stderr should mention {w:?}: {stderr}");
    }
    if let Some(o) = out {
        assert!(!o.exists(), "{} was left behind", o.display());
        let mut tmp = o.as_os_str().to_os_string();
        tmp.push(".tmp");
        assert!(!Path::new(&tmp).exists(), "temporary output left behind");
    }
    stderr
}

fn restore_cmd(f: &Fixture, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = ours();
    c.arg("restore").args(extra).arg("-o").arg(out).arg(&f.url);
    c
}

#[test]
fn corrupted_ltx_file() {
    let f = fixture();
    let p = l0_file(&f.replica);
    let mut bytes = std::fs::read(&p).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&p, &bytes).expect("write");
    let out = f.dir.path().join("out.db");
    fails(
        restore_cmd(&f, &out, &[]),
        &["0000000000000001-0000000000000001.ltx", "corrupt"],
        Some(&out),
    );
}

#[test]
fn truncated_ltx_file() {
    let f = fixture();
    let p = l0_file(&f.replica);
    let bytes = std::fs::read(&p).expect("read");
    for cut in [10, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..cut]).expect("write");
        let out = f.dir.path().join(format!("out-{cut}.db"));
        fails(
            restore_cmd(&f, &out, &[]),
            &["0000000000000001-0000000000000001.ltx"],
            Some(&out),
        );
    }
}

#[test]
fn txid_gap_in_replica() {
    let f = fixture();
    // Add L0 files 2 and 3 with more commits, then remove 2.
    let w = Workload::new(5);
    let conn = open_app(&f.db, Some(0));
    for round in 0..2 {
        for n in 41 + round * 5..46 + round * 5 {
            w.step(&conn, n, true);
        }
        let mut c = ours();
        c.args(["replicate", "-once"]).arg(&f.db).arg(&f.url);
        run_ok(c);
    }
    std::fs::remove_file(
        f.replica
            .join("ltx/0/0000000000000002-0000000000000002.ltx"),
    )
    .expect("remove");
    let out = f.dir.path().join("out.db");
    fails(restore_cmd(&f, &out, &[]), &["gap"], Some(&out));
}

#[test]
fn missing_replica() {
    let f = fixture();
    let out = f.dir.path().join("out.db");
    let mut c = ours();
    let nowhere = format!("file://{}/nothing-here", f.dir.path().display());
    c.args(["restore", "-o"]).arg(&out).arg(&nowhere);
    fails(c, &["nothing-here", "no backup files"], Some(&out));
    // -if-replica-exists turns that into a successful no-op.
    let mut c = ours();
    c.args(["restore", "-if-replica-exists", "-o"])
        .arg(&out)
        .arg(&nowhere);
    run_ok(c);
    assert!(!out.exists());
}

#[test]
fn not_a_database() {
    let f = fixture();
    let bogus = f.dir.path().join("notes.db");
    std::fs::write(&bogus, b"this is not a database at all, just text\n").expect("write");
    let mut c = ours();
    c.args(["replicate", "-once"]).arg(&bogus).arg(&f.url);
    fails(c, &["notes.db", "not a SQLite database"], None);
    let mut c = ours();
    c.args(["replicate", "-once"])
        .arg(f.dir.path().join("absent.db"))
        .arg(&f.url);
    fails(c, &["absent.db", "not found"], None);
}

/// A WAL damaged in the middle of committed frames (SQLite's wal-index
/// still holds them) is an error, not a silent stop short of them.
#[test]
fn wal_with_broken_checksum_chain() {
    let f = fixture();
    let w = Workload::new(5);
    let app = open_app(&f.db, Some(0));
    for n in 41..=60 {
        w.step(&app, n, false);
    }
    let wal = f.dir.path().join("app.db-wal");
    let mut bytes = std::fs::read(&wal).expect("read wal");
    let frame = 24 + 4096;
    let at = 32 + 3 * frame + 24 + 100;
    assert!(bytes.len() > at + frame, "WAL too short for the test");
    bytes[at] ^= 0xff;
    std::fs::write(&wal, &bytes).expect("write wal");
    let mut c = ours();
    c.args(["replicate", "-once"]).arg(&f.db).arg(&f.url);
    let msg = fails(c, &["app.db-wal", "checksum chain", "damaged"], None);
    eprintln!("{msg}");
    drop(app);
}

#[test]
fn wrong_flags() {
    let f = fixture();
    let out = f.dir.path().join("out.db");
    fails(
        restore_cmd(&f, &out, &["-txid", "xyz"]),
        &["-txid", "16 hex digits"],
        Some(&out),
    );
    fails(
        restore_cmd(
            &f,
            &out,
            &[
                "-txid",
                "0000000000000001",
                "-timestamp",
                "2026-01-01T00:00:00Z",
            ],
        ),
        &["both"],
        Some(&out),
    );
    fails(
        restore_cmd(&f, &out, &["-timestamp", "yesterday"]),
        &["-timestamp", "RFC 3339"],
        Some(&out),
    );
    fails(
        restore_cmd(&f, &out, &["-integrity-check", "bogus"]),
        &["none, quick or full"],
        Some(&out),
    );
    fails(
        restore_cmd(&f, &out, &["-txid", "00000000000000ff"]),
        &["not available"],
        Some(&out),
    );
    let mut c = ours();
    c.args(["restore"]).arg(&f.url);
    fails(c, &["-o"], None);
    let mut c = ours();
    c.args(["restore", "-no-such-flag", "-o"])
        .arg(&out)
        .arg(&f.url);
    let (code, _) = run_err(c);
    assert_eq!(code, 2, "usage errors exit 2");
    let mut c = ours();
    c.args(["replicate", "-once"])
        .arg(&f.db)
        .arg("s3x://bucket/path");
    fails(c, &["s3x"], None);
}

#[test]
fn existing_output() {
    let f = fixture();
    let out = f.dir.path().join("out.db");
    std::fs::write(&out, b"precious").expect("write");
    let (_, err) = run_err(restore_cmd(&f, &out, &[]));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), b"precious");
    run_ok(restore_cmd(&f, &out, &["-if-db-not-exists"]));
    assert_eq!(std::fs::read(&out).expect("read"), b"precious");
    // A stale WAL next to the replaced file must not be applied to it.
    let mut wal = out.as_os_str().to_os_string();
    wal.push("-wal");
    std::fs::write(&wal, b"stale").expect("write");
    run_ok(restore_cmd(
        &f,
        &out,
        &["-force", "-integrity-check", "quick"],
    ));
    assert!(!Path::new(&wal).exists());
    assert_eq!(verify_restore(&out, &Workload::new(5)), 40);
}

/// A second replicator on a database is refused, naming the one running:
/// two engines writing one meta directory would each number L0 files from
/// their own position, and a TXID written twice loses commits. Once the
/// first stops, the second may run.
#[test]
fn second_replicator_on_a_database() {
    let f = fixture();
    let lock = f.dir.path().join(".app.db-litestream/lock");
    let log = f.dir.path().join("replicate.log");
    let mut c = ours();
    c.args(["replicate", "-sync-interval", "50ms"])
        .arg(&f.db)
        .arg(&f.url);
    let first = spawn_logged(c, &log);
    let pid = first.id().to_string();
    wait_for(
        "the first replicator's lock",
        std::time::Duration::from_secs(20),
        || std::fs::read_to_string(&lock).is_ok_and(|s| s == pid),
    );
    let w = Workload::new(5);
    let conn = open_app(&f.db, Some(0));
    for n in 41..=60 {
        w.step(&conn, n, true);
    }
    let mut once = ours();
    once.args(["replicate", "-once"]).arg(&f.db).arg(&f.url);
    fails(
        once,
        &[
            &f.db.display().to_string(),
            &format!("process {pid} is replicating this database"),
            &lock.display().to_string(),
        ],
        None,
    );
    assert_eq!(
        terminate(first, std::time::Duration::from_secs(30)),
        0,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    for n in 61..=80 {
        w.step(&conn, n, true);
    }
    drop(conn);
    let mut once = ours();
    once.args(["replicate", "-once"]).arg(&f.db).arg(&f.url);
    run_ok(once);
    let out = f.dir.path().join("out.db");
    run_ok(restore_cmd(&f, &out, &["-integrity-check", "full"]));
    assert_eq!(verify_restore(&out, &w), 80);
}
