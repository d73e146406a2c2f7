//! The `gs` backend against a real GCS server (fake-gcs-server, started
//! per test on a free port, reached through `STORAGE_EMULATOR_HOST` as Go
//! reaches it): the conformance suite, straight and through the fault
//! proxy; compatibility with Go Litestream 0.5.17 in both directions
//! (layout, metadata, restores); a fleet replicating to `gs://…/{path}`
//! and `restore-pattern` from one listing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Command;
use std::time::Duration;

use litestreampp_core::client::gcs::GcsSettings;
use litestreampp_core::client::{ClientPool, conformance, gcs_client};
use litestreampp_e2e::backends::{
    self, LARGE_FILE_KEY, LARGE_FILE_TIMESTAMP, fleet_round_trip, large_file_round_trip,
    write_in_bursts,
};
use litestreampp_e2e::gcs::FakeGcs;
use litestreampp_e2e::*;

fn settings(host: &str, bucket: &str, path: &str) -> GcsSettings {
    GcsSettings {
        bucket: bucket.into(),
        path: path.into(),
        emulator_host: Some(host.into()),
    }
}

fn with_emulator(mut c: Command, host: &str) -> Command {
    c.env("STORAGE_EMULATOR_HOST", host)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    c
}

#[test]
fn conformance_against_fake_gcs() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("conf");
    runtime().block_on(async {
        let c = gcs_client(&settings(&gcs.host(), "conf", "raw/db")).unwrap();
        conformance::run(c.as_ref()).await;
        // At the bucket's root, as a bare `gs://conf` gives.
        let c = ClientPool::default()
            .open_gcs(&settings(&gcs.host(), "conf", "."))
            .unwrap();
        conformance::run(c.as_ref()).await;
    });
    assert!(
        gcs.keys("conf").is_empty(),
        "delete_all left objects behind"
    );
}

/// One in twenty requests fails (500s, resets, truncated bodies, stalls): the
/// retry layer rides it out and every rule of the suite still holds.
#[test]
fn conformance_through_faults() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("faulty");
    backends::conformance_through_faults(gcs.port, 23, |port| {
        gcs_client(&settings(&format!("127.0.0.1:{port}"), "faulty", "db")).unwrap()
    });
}

/// Replication through one request in ten failing, with compaction and
/// retention running: a restore straight from fake-gcs-server holds
/// every commit.
#[test]
fn replication_through_faults() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("faulty");
    backends::replication_through_faults(
        gcs.port,
        43,
        |db, _| {
            format!(
                "dbs:\n  - path: {}\n    checkpoint-interval: 1s\n    replica:\n      url: gs://faulty/db\n      sync-interval: 50ms\n",
                db.display()
            )
        },
        |port| with_emulator(ours(), &format!("127.0.0.1:{port}")),
        || !gcs.keys("faulty").is_empty(),
    );
}

/// Go replicates to GCS; we restore the same bytes Go restores, and Go's
/// layout and metadata are what we read.
#[test]
fn go_replicates_to_gcs_we_restore() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("gobucket");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let w = Workload::new(61);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let url = "gs://gobucket/apps/one";
    let mut c = with_emulator(go(), &gcs.host());
    c.args(["replicate"]).arg(&db).arg(url);
    let child = spawn_logged(c, &dir.path().join("go.log"));
    wait_for("Go's first upload", Duration::from_secs(30), || {
        !gcs.keys("gobucket").is_empty()
    });
    let steps = 600;
    write_in_bursts(&w, &conn, steps, Duration::from_millis(200));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let objects = gcs.objects("gobucket");
    for (name, _, meta) in &objects {
        assert!(
            name.starts_with("apps/one/ltx/"),
            "Go wrote {name} outside apps/one/ltx/"
        );
        assert!(
            meta["litestream-timestamp"].as_str().is_some(),
            "{name}: no litestream-timestamp metadata: {meta}"
        );
    }
    let go_out = dir.path().join("go.db");
    let our_out = dir.path().join("ours.db");
    run_ok({
        let mut c = with_emulator(go(), &gcs.host());
        c.args(["restore", "-o"]).arg(&go_out).arg(url);
        c
    });
    run_ok({
        let mut c = with_emulator(ours(), &gcs.host());
        c.args(["restore", "-o"]).arg(&our_out).arg(url);
        c
    });
    assert!(
        same_bytes(&go_out, &our_out),
        "restore from GCS differs from Go's"
    );
    assert_eq!(verify_restore(&our_out, &w), steps);
}

/// We replicate to GCS with Go's layout and metadata; Go restores every
/// commit, and our restores at TXIDs equal Go's.
#[test]
fn we_replicate_to_gcs_go_restores() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("ours");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = "gs://ours/tenant/a.db";
    let w = Workload::new(62);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let mut c = with_emulator(ours(), &gcs.host());
    c.args(["replicate", "-sync-interval", "50ms"])
        .arg(&db)
        .arg(url);
    let child = spawn_logged(c, &dir.path().join("ours.log"));
    wait_for("our first upload", Duration::from_secs(30), || {
        !gcs.keys("ours").is_empty()
    });
    let steps = 800;
    write_in_bursts(&w, &conn, steps, Duration::from_millis(120));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let objects = gcs.objects("ours");
    let mut max = 0;
    for (name, _, meta) in &objects {
        let file = name
            .strip_prefix("tenant/a.db/ltx/")
            .and_then(|r| r.split_once('/'))
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("{name} is not in Go's layout"));
        let (_, m) = litestreampp_core::txid::parse_ltx_file_name(file).unwrap();
        max = max.max(m.0);
        let ts = meta["litestream-timestamp"].as_str().unwrap_or_default();
        assert!(
            ts.parse::<jiff::Timestamp>().is_ok(),
            "{name}: metadata {meta}"
        );
    }
    let go_out = dir.path().join("go.db");
    run_ok({
        let mut c = with_emulator(go(), &gcs.host());
        c.args(["restore", "-o"]).arg(&go_out).arg(url);
        c
    });
    assert_eq!(verify_restore(&go_out, &w), steps, "Go's restore");
    for (i, txid) in [max / 2, max].into_iter().enumerate() {
        let t = format!("{txid:016x}");
        let a = dir.path().join(format!("ours-{i}.db"));
        let b = dir.path().join(format!("go-{i}.db"));
        run_ok({
            let mut c = with_emulator(ours(), &gcs.host());
            c.args(["restore", "-txid", &t, "-o"]).arg(&a).arg(url);
            c
        });
        run_ok({
            let mut c = with_emulator(go(), &gcs.host());
            c.args(["restore", "-txid", &t, "-o"]).arg(&b).arg(url);
            c
        });
        assert!(
            same_bytes(&a, &b),
            "TXID {t}: our restore differs from Go's"
        );
    }
}

/// A file over the single-request size goes up as parts composed into
/// the final object: it reads back whole, carries the timestamp, and no
/// part is left behind.
#[test]
fn large_files_are_composed_from_parts() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("big");
    let c = gcs_client(&settings(&gcs.host(), "big", "db")).unwrap();
    let size = large_file_round_trip(c.as_ref());
    let objects = gcs.objects("big");
    assert_eq!(
        objects.len(),
        1,
        "parts left behind: {:?}",
        objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    assert_eq!(objects[0].0, LARGE_FILE_KEY);
    assert_eq!(objects[0].1, size);
    assert_eq!(
        objects[0].2["litestream-timestamp"].as_str(),
        Some(LARGE_FILE_TIMESTAMP)
    );
}

/// A fleet backs up to `gs://…/{path}` and `restore-pattern` brings every
/// database back from one listing of the prefix.
#[test]
fn fleet_backs_up_to_gcs_and_restore_pattern_brings_it_back() {
    let gcs = FakeGcs::start();
    gcs.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    fleet_round_trip(
        dir.path(),
        "gs://fleet/backups/{path}",
        "gs://fleet/backups/**/*.db",
        || with_emulator(ours(), &gcs.host()),
    );
}
