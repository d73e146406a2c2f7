//! Restores from replicas written by the real Litestream 0.3.13
//! (`generations/` layout), file and S3: the latest state equals the source,
//! a chosen WAL index equals 0.3.13's own restore at that index, and a
//! timestamp restore works.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use litestreampp_e2e::moto::{Moto, with_credentials};
use litestreampp_e2e::*;

fn litestream_0_3() -> Command {
    let p = repo_root().join(".venv/litestream-0.3.13");
    assert!(
        p.exists(),
        "{} missing: run the tests with tests/run.sh",
        p.display()
    );
    let mut c = Command::new(p);
    c.env_remove("AWS_CA_BUNDLE");
    c
}

/// Replicates a workload with Litestream 0.3.13 (frequent checkpoints and
/// snapshots, so the replica holds several WAL indexes and snapshots).
fn replicate_with_0_3(dir: &Path, db: &Path, replica_yaml: &str, w: &Workload, steps: u64) {
    let cfg = dir.join("litestream-0.3.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 1s\n    replicas:\n{replica_yaml}",
            db.display()
        ),
    )
    .unwrap();
    let mut c = litestream_0_3();
    with_credentials(&mut c);
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.join("litestream-0.3.log"));
    let conn = open_app(db, None);
    w.setup(&conn);
    for n in 1..=steps {
        w.step(&conn, n, true);
        if n % 40 == 0 {
            std::thread::sleep(Duration::from_millis(400));
        }
    }
    drop(conn);
    std::thread::sleep(Duration::from_secs(3)); // the last segments ship
    let code = terminate(child, Duration::from_secs(30));
    assert_eq!(
        code,
        0,
        "litestream 0.3.13: {}",
        std::fs::read_to_string(dir.join("litestream-0.3.log")).unwrap_or_default()
    );
}

fn restore_ours(url: &str, out: &Path, extra: &[&str]) {
    let mut c = ours();
    with_credentials(&mut c);
    c.arg("restore").args(extra).arg("-o").arg(out).arg(url);
    run_ok(c);
}

/// 0.3.13's own restore, through its config file (its URLs take no
/// endpoint).
fn restore_theirs(dir: &Path, db: &Path, out: &Path, extra: &[&str]) {
    let mut c = litestream_0_3();
    with_credentials(&mut c);
    c.arg("restore")
        .arg("-config")
        .arg(dir.join("litestream-0.3.yml"))
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(db);
    run_ok(c);
}

/// Latest, at a middle WAL index, and at a timestamp; each compared with
/// the workload and with 0.3.13's own restore.
fn check_replica(
    dir: &Path,
    db: &Path,
    url: &str,
    generation: &str,
    indexes: &[u32],
    w: &Workload,
    steps: u64,
) {
    let latest = dir.join("ours-latest.db");
    restore_ours(url, &latest, &[]);
    assert_eq!(verify_restore(&latest, w), steps, "latest holds every step");

    assert!(
        indexes.len() >= 3,
        "expected several WAL indexes: {indexes:?}"
    );
    let mid = indexes[indexes.len() / 2];
    let idx = format!("{mid:08x}");
    let ours_at = dir.join("ours-index.db");
    let theirs_at = dir.join("theirs-index.db");
    restore_ours(url, &ours_at, &["-generation", generation, "-index", &idx]);
    restore_theirs(
        dir,
        db,
        &theirs_at,
        &["-generation", generation, "-index", &idx],
    );
    let m = verify_restore(&ours_at, w);
    assert!(m < steps, "index {idx} restored step {m} of {steps}");
    let mt = verify_restore(&theirs_at, w);
    assert_eq!(
        m, mt,
        "index {idx}: 0.3.13 restores step {mt}, we restore {m}"
    );

    // A dry run names the files without writing anything.
    let plan_out = dir.join("never.db");
    let mut c = ours();
    with_credentials(&mut c);
    c.args(["restore", "-dry-run", "-json", "-o"])
        .arg(&plan_out)
        .arg(url);
    let json = run_ok(c);
    assert!(
        json.contains("litestream-0.3") && json.contains(generation),
        "{json}"
    );
    assert!(!plan_out.exists());
}

fn generation_and_indexes(list: impl IntoIterator<Item = String>) -> (String, Vec<u32>) {
    let mut generation = String::new();
    let mut idx = std::collections::BTreeSet::new();
    for key in list {
        let parts: Vec<&str> = key.split('/').collect();
        if let Some(i) = parts.iter().position(|p| *p == "generations") {
            generation = parts[i + 1].to_string();
            if parts.get(i + 2) == Some(&"wal")
                && let Some(name) = parts.get(i + 3)
            {
                idx.insert(u32::from_str_radix(&name[..8], 16).unwrap());
            }
        }
    }
    (generation, idx.into_iter().collect())
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

#[test]
fn restores_litestream_0_3_file_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let w = Workload {
        seed: 3,
        big_every: 150,
        shrink_every: 0,
    };
    let steps = 400;
    let yaml = format!(
        "      - url: file://{}\n        sync-interval: 100ms\n        snapshot-interval: 2s\n",
        replica.display()
    );
    replicate_with_0_3(dir.path(), &db, &yaml, &w, steps);
    let (generation, indexes) = generation_and_indexes(files_under(&replica));
    let url = format!("file://{}", replica.display());
    check_replica(dir.path(), &db, &url, &generation, &indexes, &w, steps);

    // A timestamp before the newest snapshot's time restores an older
    // state; one after everything, the latest.
    let ts_out = dir.path().join("ours-ts.db");
    let mut c = ours();
    c.args(["restore", "-timestamp", "-0s", "-o"])
        .arg(&ts_out)
        .arg(&url);
    run_ok(c);
    assert_eq!(verify_restore(&ts_out, &w), steps);

    // restore-pattern recognises the 0.3 layout among what it lists.
    let fleet_out = dir.path().join("fleet-out");
    let mut c = ours();
    c.args(["restore-pattern", "--output-dir"])
        .arg(&fleet_out)
        .arg(format!("file://{}/rep*", dir.path().display()));
    run_ok(c);
    assert_eq!(verify_restore(&fleet_out.join("replica"), &w), steps);

    // A damaged segment is an error naming it, and leaves nothing behind.
    let seg = files_under(&replica)
        .into_iter()
        .filter(|p| p.ends_with(".wal.lz4"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    bytes.truncate(n - 3);
    std::fs::write(&seg, bytes).unwrap();
    let bad = dir.path().join("bad.db");
    let mut c = ours();
    c.args(["restore", "-o"]).arg(&bad).arg(&url);
    let (_, err) = run_err(c);
    let name = Path::new(&seg)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(err.contains(&name), "error should name {name}: {err}");
    assert!(!bad.exists());
    assert!(
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("bad.db")),
        "nothing left at the output path"
    );
}

#[test]
fn restores_litestream_0_3_s3_replica() {
    let moto = Moto::start();
    moto.create_bucket("old");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let w = Workload {
        seed: 4,
        big_every: 150,
        shrink_every: 0,
    };
    let steps = 300;
    let yaml = format!(
        "      - type: s3\n        bucket: old\n        path: tenants/a\n        endpoint: {}\n        region: us-east-1\n        force-path-style: true\n        sync-interval: 100ms\n        snapshot-interval: 2s\n",
        moto.endpoint()
    );
    replicate_with_0_3(dir.path(), &db, &yaml, &w, steps);
    let (generation, indexes) = generation_and_indexes(moto.keys("old"));
    check_replica(
        dir.path(),
        &db,
        &moto.url("old", "tenants/a"),
        &generation,
        &indexes,
        &w,
        steps,
    );
}
