//! The corrupt-input matrix (docs/reliability.md): every header field of
//! an LTX file and of a WAL altered, truncation at every section boundary,
//! wrong page sizes, TXID gaps, duplicate and foreign files at one level.
//! A damaged replica file makes `restore` fail with an error naming it and
//! leaves no output behind; a damaged WAL is either refused with an error
//! naming it, or replicated exactly as far as SQLite itself reads it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

use litestreampp_core::ltx::PageIndex;
use litestreampp_e2e::*;

const L0: &str = "ltx/0";

/// A database with 60 workload steps and a replica of three L0 files: the
/// snapshot (TXID 1, steps 1-40) and two incremental files (steps 41-50,
/// 51-60).
struct Fixture {
    dir: tempfile::TempDir,
    replica: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let w = Workload::new(9);
    let conn = open_app(&db, Some(0));
    w.setup(&conn);
    for (from, to) in [(1, 40), (41, 50), (51, 60)] {
        for n in from..=to {
            w.step(&conn, n, false);
        }
        let mut c = ours();
        c.args(["replicate", "-once"]).arg(&db).arg(&url);
        run_ok(c);
    }
    Fixture { dir, replica }
}

fn l0_name(txid: u64) -> String {
    format!("{txid:016x}-{txid:016x}.ltx")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).expect("copy");
        }
    }
}

/// Restores a copy of the replica after `damage`; the restore must fail
/// with an error naming `names` and leave no output. Returns the message.
fn restore_fails(f: &Fixture, case: &str, names: &[&str], damage: impl FnOnce(&Path)) -> String {
    let root = f.dir.path().join("cases").join(case);
    let replica = root.join("replica");
    copy_dir(&f.replica, &replica);
    damage(&replica);
    let out = root.join("out.db");
    let mut c = ours();
    c.args(["restore", "-o"])
        .arg(&out)
        .arg(format!("file://{}", replica.display()));
    let o = c.output().expect("spawn restore");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{case}: restore succeeded: {err}");
    assert!(!err.contains("panicked"), "{case}: panic: {err}");
    for n in names {
        assert!(err.contains(n), "{case}: the error should name {n}: {err}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "replica")
        .collect();
    assert!(
        leftovers.is_empty(),
        "{case}: output left behind: {leftovers:?}"
    );
    std::fs::remove_dir_all(&root).expect("clean case");
    err
}

/// Rewrites the file at `path` with `f` applied to its bytes.
fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).expect("read");
    f(&mut b);
    std::fs::write(path, b).expect("write");
}

/// Values to put into a field of `width` bytes holding `old`.
fn variants(old: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut plus = old.to_vec();
    *plus.last_mut().expect("field") ^= 1;
    v.push(("low bit flipped".to_string(), plus));
    let zero = vec![0u8; old.len()];
    if zero != old {
        v.push(("zero".to_string(), zero));
    }
    v.push(("all ones".to_string(), vec![0xff; old.len()]));
    let mut top = old.to_vec();
    top[0] ^= 0x80;
    v.push(("high bit flipped".to_string(), top));
    v
}

/// The LTX header's fields: name, offset, width (spec §1.1).
const LTX_HEADER_FIELDS: &[(&str, usize, usize)] = &[
    ("magic", 0, 4),
    ("flags", 4, 4),
    ("page size", 8, 4),
    ("commit", 12, 4),
    ("min txid", 16, 8),
    ("max txid", 24, 8),
    ("timestamp", 32, 8),
    ("pre-apply checksum", 40, 8),
    ("wal offset", 48, 8),
    ("wal size", 56, 8),
    ("wal salt1", 64, 4),
    ("wal salt2", 68, 4),
    ("node id", 72, 8),
    ("reserved", 80, 20),
];

#[test]
fn every_ltx_header_field_and_section_boundary() {
    let f = fixture();
    let mut cases = 0;
    // The snapshot (TXID 1) and an incremental file (TXID 2): restore
    // reads both on different paths (whole file, and pages by index).
    for txid in [1u64, 2] {
        let name = l0_name(txid);
        let file = f.replica.join(L0).join(&name);
        let bytes = std::fs::read(&file).expect("read ltx");
        let len = bytes.len();
        // Sections: header, page frames (header, size field, LZ4 block),
        // terminator, page index, index length, trailer.
        let idx = PageIndex::read(&std::fs::File::open(&file).expect("open"), "fixture")
            .expect("fixture index");
        let mut cuts = vec![0, 1, 50, 99, 100];
        for e in &idx.entries {
            let o = e.offset as usize;
            cuts.extend([o, o + 3, o + 6, o + 10, o + e.size as usize / 2]);
        }
        let fe = idx.frames_end as usize;
        cuts.extend([fe, fe + 3, fe + 6, (fe + 6 + len - 24) / 2]);
        cuts.extend([len - 24, len - 20, len - 16, len - 8, len - 1]);
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            let case = format!("ltx{txid}-truncated-at-{cut}");
            restore_fails(&f, &case, &[&name], |r| {
                edit(&r.join(L0).join(&name), |b| b.truncate(cut))
            });
            cases += 1;
        }
        // Every header field, and those of the first page frame, the index
        // and the trailer.
        let first = idx.entries[0].offset as usize;
        let mut fields = LTX_HEADER_FIELDS.to_vec();
        fields.extend([
            ("page number", first, 4),
            ("page flags", first + 4, 2),
            ("compressed size", first + 6, 4),
            ("LZ4 block", first + 12, 1),
            ("terminator", fe, 6),
            ("index entry", fe + 6, 1),
            ("index length", len - 24, 8),
            ("post-apply checksum", len - 16, 8),
            ("file checksum", len - 8, 8),
        ]);
        if txid == 1 {
            fields.push(("last page's LZ4 block", fe - 3, 1));
        }
        for (field, off, width) in fields {
            for (how, value) in variants(&bytes[off..off + width]) {
                let case = format!("ltx{txid}-{field}-{how}").replace(' ', "_");
                restore_fails(&f, &case, &[&name], |r| {
                    edit(&r.join(L0).join(&name), |b| {
                        b[off..off + width].copy_from_slice(&value)
                    })
                });
                cases += 1;
            }
        }
        // Bytes after the trailer.
        restore_fails(&f, &format!("ltx{txid}-appended"), &[&name], |r| {
            edit(&r.join(L0).join(&name), |b| b.extend_from_slice(b"xx"))
        });
        cases += 1;
    }
    eprintln!("LTX matrix: {cases} damaged files, each refused naming the file, no output");
}

#[test]
fn replica_structure_damage() {
    let f = fixture();
    let (n2, n3) = (l0_name(2), l0_name(3));
    // A TXID gap: the middle file is missing.
    let e = restore_fails(&f, "gap", &["gap"], |r| {
        std::fs::remove_file(r.join(L0).join(&n2)).expect("rm")
    });
    assert!(e.contains(&n3) || e.contains("0000000000000002"), "{e}");
    // A file whose name and header disagree (TXID 2's file named 3).
    restore_fails(&f, "misnamed", &[&n3], |r| {
        std::fs::copy(r.join(L0).join(&n2), r.join(L0).join(&n3)).expect("cp");
    });
    // An empty file.
    restore_fails(&f, "empty", &[&n2], |r| {
        std::fs::write(r.join(L0).join(&n2), b"").expect("write")
    });
    // A file of another database with another page size, put in the chain.
    let other = f.dir.path().join("other");
    {
        let db = other.join("o.db");
        std::fs::create_dir_all(&other).expect("mkdir");
        let c = rusqlite::Connection::open(&db).expect("open");
        c.execute_batch(
            "PRAGMA page_size=8192; PRAGMA journal_mode=wal; CREATE TABLE x(a); INSERT INTO x VALUES (1);",
        )
        .expect("other db");
        for i in 0..2 {
            c.execute("INSERT INTO x VALUES (?1)", [i]).expect("insert");
            let mut cmd = ours();
            cmd.args(["replicate", "-once"])
                .arg(&db)
                .arg(format!("file://{}", other.join("replica").display()));
            run_ok(cmd);
        }
    }
    let foreign = other.join("replica").join(L0).join(&n2);
    let e = restore_fails(&f, "page-size", &[&n2], |r| {
        std::fs::copy(&foreign, r.join(L0).join(&n2)).expect("cp");
    });
    assert!(e.contains("page size"), "{e}");
    // Duplicate files at one level: besides 2 and 3, a file covering 2-3
    // (what a restarted replicator may upload) restores as the original;
    // if that duplicate is damaged, the restore refuses it.
    let merged = f.dir.path().join("merged.ltx");
    litestreampp_core::compact::merge_files(
        &[f.replica.join(L0).join(&n2), f.replica.join(L0).join(&n3)],
        &merged,
    )
    .expect("merge");
    let dup = "0000000000000002-0000000000000003.ltx";
    let root = f.dir.path().join("cases/duplicate");
    let replica = root.join("replica");
    copy_dir(&f.replica, &replica);
    std::fs::copy(&merged, replica.join(L0).join(dup)).expect("cp");
    let out = root.join("out.db");
    let mut c = ours();
    c.args(["restore", "-o"])
        .arg(&out)
        .arg(format!("file://{}", replica.display()));
    run_ok(c);
    assert_eq!(verify_restore(&out, &Workload::new(9)), 60);
    restore_fails(&f, "duplicate-damaged", &[dup], |r| {
        std::fs::copy(&merged, r.join(L0).join(dup)).expect("cp");
        edit(&r.join(L0).join(dup), |b| {
            let n = b.len();
            b[n - 1] ^= 1;
        });
        std::fs::remove_file(r.join(L0).join(&n3)).expect("rm");
    });
    // The untouched replica restores to the last step.
    let out = f.dir.path().join("intact.db");
    let mut c = ours();
    c.args(["restore", "-o"])
        .arg(&out)
        .arg(format!("file://{}", f.replica.display()));
    run_ok(c);
    assert_eq!(verify_restore(&out, &Workload::new(9)), 60);
}

/// The WAL header's fields (name, offset, width) and a frame header's.
const WAL_HEADER_FIELDS: &[(&str, usize, usize)] = &[
    ("magic", 0, 4),
    ("version", 4, 4),
    ("page size", 8, 4),
    ("checkpoint sequence", 12, 4),
    ("salt1", 16, 4),
    ("salt2", 20, 4),
    ("checksum1", 24, 4),
    ("checksum2", 28, 4),
];
const FRAME_FIELDS: &[(&str, usize, usize)] = &[
    ("page number", 0, 4),
    ("commit size", 4, 4),
    ("salt1", 8, 4),
    ("salt2", 12, 4),
    ("checksum1", 16, 4),
    ("checksum2", 20, 4),
    ("page data", 24 + 200, 1),
];

/// Replicates a copy of the database with a damaged WAL. Either the
/// replicator refuses it naming the WAL (and whatever replica it left
/// restores to a committed state), or it succeeds and the restore equals
/// what SQLite reads from the same damaged files.
fn wal_case(dir: &Path, db: &Path, wal: &[u8], case: &str) -> &'static str {
    let root = dir.join("wal-cases").join(case);
    std::fs::create_dir_all(&root).expect("mkdir");
    // What SQLite makes of the damaged files (its own copy).
    let truth = {
        let d = root.join("sqlite");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::copy(db, d.join("app.db")).expect("cp");
        std::fs::write(d.join("app.db-wal"), wal).expect("wal");
        let c = rusqlite::Connection::open(d.join("app.db")).expect("open");
        let step = committed_step(&c);
        (step, content_hash(&c))
    };
    let d = root.join("ours");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::copy(db, d.join("app.db")).expect("cp");
    std::fs::write(d.join("app.db-wal"), wal).expect("wal");
    let url = format!("file://{}", root.join("replica").display());
    let mut c = ours();
    c.args(["replicate", "-once"])
        .arg(d.join("app.db"))
        .arg(&url);
    let o = c.output().expect("spawn");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{case}: panic: {err}");
    let out = root.join("out.db");
    let w = Workload::new(9);
    let verdict = if o.status.success() {
        let mut c = ours();
        c.args(["restore", "-o"]).arg(&out).arg(&url);
        run_ok(c);
        let step = verify_restore(&out, &w);
        let got = content_hash(&rusqlite::Connection::open(&out).expect("open"));
        assert_eq!(
            (step, got),
            truth,
            "{case}: the replica differs from what SQLite reads"
        );
        "replicated as SQLite reads it"
    } else {
        assert!(
            err.contains("app.db"),
            "{case}: the error should name the database or its WAL: {err}"
        );
        if root.join("replica/ltx").exists() {
            let mut c = ours();
            c.args(["restore", "-o"]).arg(&out).arg(&url);
            run_ok(c);
            verify_restore(&out, &w);
        }
        "refused"
    };
    std::fs::remove_dir_all(&root).expect("clean case");
    verdict
}

#[test]
fn every_wal_header_field_and_frame_boundary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let w = Workload::new(9);
    let app = open_app(&db, Some(0));
    w.setup(&app);
    for n in 1..=30 {
        w.step(&app, n, false);
    }
    app.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    for n in 31..=45 {
        w.step(&app, n, false);
    }
    // The database file (steps 1-30) and its WAL (steps 31-45), copied
    // while the application keeps them open.
    let base = dir.path().join("base.db");
    std::fs::copy(&db, &base).expect("copy db");
    let wal = std::fs::read(dir.path().join("app.db-wal")).expect("read wal");
    let ps = u32::from_be_bytes([wal[8], wal[9], wal[10], wal[11]]) as usize;
    let fs = 24 + ps;
    let frames = (wal.len() - 32) / fs;
    assert!(frames >= 15, "WAL of {frames} frames");
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    let mut run = |case: String, bytes: Vec<u8>| {
        *tally
            .entry(wal_case(dir.path(), &base, &bytes, &case))
            .or_default() += 1;
    };
    run("intact".into(), wal.clone());
    for &(field, off, width) in WAL_HEADER_FIELDS {
        for (how, value) in variants(&wal[off..off + width]) {
            let mut b = wal.clone();
            b[off..off + width].copy_from_slice(&value);
            run(format!("header-{field}-{how}").replace(' ', "_"), b);
        }
    }
    // A wrong page size that is still a legal one.
    let mut b = wal.clone();
    b[8..12].copy_from_slice(&8192u32.to_be_bytes());
    run("header-page-size-8192".into(), b);
    for frame in [0, frames / 2, frames - 1] {
        let at = 32 + frame * fs;
        for &(field, off, width) in FRAME_FIELDS {
            for (how, value) in variants(&wal[at + off..at + off + width]) {
                let mut b = wal.clone();
                b[at + off..at + off + width].copy_from_slice(&value);
                run(format!("frame{frame}-{field}-{how}").replace(' ', "_"), b);
            }
        }
    }
    // Truncation inside the header, at every frame boundary and inside
    // frames (header, page).
    for cut in [0, 8, 31] {
        run(format!("truncated-at-{cut}"), wal[..cut].to_vec());
    }
    for frame in 0..=frames {
        let at = 32 + frame * fs;
        run(format!("truncated-at-frame-{frame}"), wal[..at].to_vec());
        if frame < frames {
            run(
                format!("truncated-in-frame-{frame}-header"),
                wal[..at + 10].to_vec(),
            );
            if frame % 4 == 0 {
                run(
                    format!("truncated-in-frame-{frame}-page"),
                    wal[..at + 24 + ps / 2].to_vec(),
                );
            }
        }
    }
    drop(app);
    eprintln!("WAL matrix: {tally:?}");
}
