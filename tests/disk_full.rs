//! Restores into a filesystem that fills midway (a size-limited tmpfs the
//! test mounts; the tests run as root): every failing database gets an
//! error naming its path, nothing is left half-written at any output path,
//! and a rerun once space returns restores exactly the missing databases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

use litestreampp_e2e::*;

/// `n` databases of about 300 KB each under `data`, in 4 directories.
fn make_fleet(data: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let d = data.join(format!("d{}", i % 4));
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(format!("t{i}.db"));
            let c = open_app(&p, None);
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
                .unwrap();
            c.execute(
                "INSERT INTO t(v) VALUES (randomblob(300000)), (?1)",
                [format!("tenant {i}")],
            )
            .unwrap();
            p
        })
        .collect()
}

fn digest(p: &Path) -> String {
    let c = rusqlite::Connection::open(p).unwrap();
    let s: String = c
        .query_row(
            "SELECT group_concat(hex(v), ',') FROM t ORDER BY id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(c);
    let _ = litestreampp_core::dbfile::remove_side_files(p); // from the open
    format!("{:x}", s.len()) + &s[s.len().saturating_sub(64)..]
}

/// Every file under `out`: each database equals its source, and nothing
/// else is there but the journal.
fn check_outputs(out: &Path, data: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.starts_with(".litestreampp-restore.journal") || name == "lost+found" {
            } else {
                assert!(name.ends_with(".db"), "left behind: {}", p.display());
                let src = data.join(p.strip_prefix(out).unwrap());
                assert_eq!(digest(&p), digest(&src), "{}", p.display());
                n += 1;
            }
        }
    }
    n
}

#[test]
fn restores_into_a_filling_disk_leave_nothing_half_written_and_resume() {
    let dir = Scratch::new();
    let data = dir.path().join("data");
    const N: usize = 40;
    make_fleet(&data, N);
    let rep = dir.path().join("rep");
    let mut c = ours();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", rep.display()));
    run_ok(c);
    let out = dir.path().join("out");
    let fs = Tmpfs::mount(&out, "4m");
    let pattern = format!("file://{}/**/*.db", rep.display());
    let restore_pattern = |report: &Path| {
        let mut c = ours();
        c.args([
            "restore-pattern",
            "-workers",
            "4",
            "-retries",
            "1",
            "-output-dir",
        ])
        .arg(&out)
        .arg("-report")
        .arg(report)
        .arg(&pattern);
        c
    };

    // The disk fills midway.
    let first = dir.path().join("first.json");
    let (code, err) = run_err(restore_pattern(&first));
    assert_ne!(code, 0, "{err}");
    let rep1: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    let failed: Vec<&serde_json::Value> = rep1.iter().filter(|o| o["status"] == "failed").collect();
    let restored = rep1.iter().filter(|o| o["status"] == "restored").count();
    assert!(restored > 0 && !failed.is_empty(), "{rep1:?}");
    assert_eq!(restored + failed.len(), N);
    for f in &failed {
        let e = f["error"].as_str().unwrap();
        let output = f["output"].as_str().unwrap_or_default();
        assert!(
            e.contains("No space left on device") && (e.contains(output) || e.contains(".db")),
            "{f}"
        );
    }
    assert_eq!(check_outputs(&out, &data), restored);
    eprintln!(
        "disk full: {restored} restored, {} failed; first error: {}",
        failed.len(),
        failed[0]["error"]
    );

    // A single restore into the full disk: an error naming the output,
    // and nothing at it.
    let single = out.join("single.db");
    let mut c = ours();
    c.args(["restore", "-o"])
        .arg(&single)
        .arg(format!("file://{}/d0/t0.db", rep.display()));
    let (code, err) = run_err(c);
    assert_ne!(code, 0);
    assert!(
        err.contains("single.db") && err.contains("No space left"),
        "{err}"
    );
    assert!(!single.exists());
    assert_eq!(check_outputs(&out, &data), restored);

    // Space returns: the rerun restores exactly the missing ones.
    fs.remount("size=64m");
    let second = dir.path().join("second.json");
    run_ok(restore_pattern(&second));
    let rep2: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&second).unwrap()).unwrap();
    let count = |s: &str| rep2.iter().filter(|o| o["status"] == s).count();
    assert_eq!(count("restored"), failed.len(), "{rep2:?}");
    assert_eq!(count("skipped"), restored, "{rep2:?}");
    assert_eq!(check_outputs(&out, &data), N);
    drop(fs);
}
