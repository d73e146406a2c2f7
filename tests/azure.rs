//! The `abs` backend against a real Azure Blob server (Azurite, started
//! per test on a free port with its development account): the conformance
//! suite, straight and through the fault proxy; compatibility with Go
//! Litestream 0.5.17 in both directions on one config file (layout,
//! `litestreamtimestamp` metadata, restores); large files as blocks; a
//! fleet replicating to `abs://…/{path}` and `restore-pattern` from one
//! listing; credentials kept out of every message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Command;

use litestreampp_core::client::azure::AzureSettings;
use litestreampp_core::client::{ClientPool, azure_client, conformance};
use litestreampp_core::redact::Secret;
use litestreampp_e2e::azure::{ACCOUNT, ACCOUNT_KEY, Azurite};
use litestreampp_e2e::backends::{
    self, LARGE_FILE_KEY, LARGE_FILE_TIMESTAMP, Replicated, fleet_round_trip,
    large_file_round_trip, replicate_by_config,
};
use litestreampp_e2e::*;

fn settings(endpoint: &str, container: &str, path: &str) -> AzureSettings {
    AzureSettings {
        container: container.into(),
        path: path.into(),
        account_name: Some(ACCOUNT.into()),
        account_key: Some(Secret::new(ACCOUNT_KEY)),
        sas_token: None,
        endpoint: Some(endpoint.into()),
    }
}

/// `c` with the account key where Go looks for it.
fn with_key(mut c: Command) -> Command {
    c.env("LITESTREAM_AZURE_ACCOUNT_KEY", ACCOUNT_KEY)
        .env_remove("LITESTREAM_AZURE_SAS_TOKEN");
    c
}

/// `cmd` (Go or us) replicates `steps` transactions to `container/path`
/// (a new container) by a config file with Go's keys, the account key in
/// Go's environment variable.
fn replicate(
    az: &Azurite,
    container: &str,
    path: &str,
    cmd: Command,
    seed: u64,
    steps: u64,
) -> Replicated {
    az.create_container(container);
    let endpoint = az.endpoint();
    replicate_by_config(
        |db| {
            format!(
                "dbs:\n  - path: {}\n    replica:\n      type: abs\n      bucket: {container}\n      path: {path}\n      account-name: {ACCOUNT}\n      endpoint: {endpoint}\n      sync-interval: 100ms\n",
                db.display()
            )
        },
        || !az.names(container).is_empty(),
        with_key(cmd),
        seed,
        steps,
    )
}

#[test]
fn conformance_against_azurite() {
    let az = Azurite::start();
    az.create_container("conf");
    runtime().block_on(async {
        let c = azure_client(&settings(&az.endpoint(), "conf", "raw/db")).unwrap();
        conformance::run(c.as_ref()).await;
        // At the container's root, as a bare `abs://conf` gives.
        let c = ClientPool::default()
            .open_azure(&settings(&az.endpoint(), "conf", "."))
            .unwrap();
        conformance::run(c.as_ref()).await;
    });
    assert!(az.names("conf").is_empty(), "delete_all left blobs behind");
}

/// One in twenty requests fails (500s, resets, truncated bodies, stalls):
/// the retry layer rides it out and every rule of the suite still holds.
#[test]
fn conformance_through_faults() {
    let az = Azurite::start();
    az.create_container("faulty");
    backends::conformance_through_faults(az.port, 29, |port| {
        let endpoint = format!("http://127.0.0.1:{port}/{ACCOUNT}");
        azure_client(&settings(&endpoint, "faulty", "db")).unwrap()
    });
}

/// Replication through one request in ten failing, with compaction and
/// retention running: a restore straight from Azurite holds every commit.
#[test]
fn replication_through_faults() {
    let az = Azurite::start();
    az.create_container("faulty");
    backends::replication_through_faults(
        az.port,
        37,
        |db, port| {
            format!(
                "dbs:\n  - path: {}\n    checkpoint-interval: 1s\n    replica:\n      type: abs\n      bucket: faulty\n      path: db\n      account-name: {ACCOUNT}\n      endpoint: http://127.0.0.1:{port}/{ACCOUNT}\n      sync-interval: 50ms\n",
                db.display()
            )
        },
        |_| with_key(ours()),
        || !az.names("faulty").is_empty(),
    );
}

/// Go replicates to Azure; we restore the same bytes Go restores, from
/// the same config file, and Go's layout and metadata are what we read.
#[test]
fn go_replicates_to_azure_we_restore() {
    let az = Azurite::start();
    let steps = 600;
    let r = replicate(&az, "gobucket", "apps/one", go(), 71, steps);
    for b in az.blobs("gobucket") {
        assert!(
            b.name.starts_with("apps/one/ltx/"),
            "Go wrote {} outside apps/one/ltx/",
            b.name
        );
        assert!(b.timestamp.is_some(), "{}: no litestreamtimestamp", b.name);
    }
    let go_out = r.we_restore_as_go(steps, with_key(go()), with_key(ours()));
    // The URL form, with the endpoint in its query (our extension).
    let url_out = r.dir.path().join("url.db");
    run_ok({
        let mut c = with_key(ours());
        c.args(["restore", "-o"]).arg(&url_out).arg(format!(
            "abs://{ACCOUNT}@gobucket/apps/one?endpoint={}",
            az.endpoint()
        ));
        c
    });
    assert!(same_bytes(&go_out, &url_out), "restore by URL differs");
}

/// We replicate to Azure with Go's layout and metadata; Go restores every
/// commit, and our restores at TXIDs equal Go's.
#[test]
fn we_replicate_to_azure_go_restores() {
    let az = Azurite::start();
    let steps = 800;
    let r = replicate(&az, "ours", "tenant/a.db", ours(), 72, steps);
    let mut max = 0;
    for b in az.blobs("ours") {
        let file = b
            .name
            .strip_prefix("tenant/a.db/ltx/")
            .and_then(|r| r.split_once('/'))
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("{} is not in Go's layout", b.name));
        let (_, m) = litestreampp_core::txid::parse_ltx_file_name(file).unwrap();
        max = max.max(m.0);
        let ts = b.timestamp.clone().unwrap_or_default();
        assert!(
            ts.parse::<jiff::Timestamp>().is_ok(),
            "{}: litestreamtimestamp {ts:?}",
            b.name
        );
    }
    r.go_restores_and_we_match(steps, max, || with_key(go()), || with_key(ours()));
}

/// A file over the single-request size goes up as blocks committed in one
/// Put Block List: it reads back whole and carries the timestamp.
#[test]
fn large_files_go_up_as_blocks() {
    let az = Azurite::start();
    az.create_container("big");
    let c = azure_client(&settings(&az.endpoint(), "big", "db")).unwrap();
    let size = large_file_round_trip(c.as_ref());
    let blobs = az.blobs("big");
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert_eq!(blobs[0].name, LARGE_FILE_KEY);
    assert_eq!(blobs[0].size, size);
    assert_eq!(blobs[0].timestamp.as_deref(), Some(LARGE_FILE_TIMESTAMP));
}

/// A fleet backs up to `abs://…/{path}` and `restore-pattern` brings every
/// database back from one listing of the prefix.
#[test]
fn fleet_backs_up_to_azure_and_restore_pattern_brings_it_back() {
    let az = Azurite::start();
    az.create_container("fleet");
    let dir = tempfile::tempdir().unwrap();
    let q = format!("?endpoint={}", az.endpoint());
    fleet_round_trip(
        dir.path(),
        &format!("abs://{ACCOUNT}@fleet/backups/{{path}}{q}"),
        &format!("abs://{ACCOUNT}@fleet/backups/**/*.db{q}"),
        || with_key(ours()),
    );
}

/// A wrong key is a clear, prompt error naming the replica; neither the
/// key nor a SAS token's signature appears in any output.
#[test]
fn credentials_never_reach_the_output() {
    let az = Azurite::start();
    az.create_container("sec");
    let dir = tempfile::tempdir().unwrap();
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let url = format!("abs://{ACCOUNT}@sec/db?endpoint={}", az.endpoint());
    let (code, out) = run_err({
        let mut c = ours();
        c.env("LITESTREAM_AZURE_ACCOUNT_KEY", wrong)
            .env_remove("LITESTREAM_AZURE_SAS_TOKEN")
            .args(["restore", "-o"])
            .arg(dir.path().join("x.db"))
            .arg(&url);
        c
    });
    assert_ne!(code, 0);
    assert!(
        out.contains("abs://"),
        "error does not name the replica: {out}"
    );
    assert!(!out.contains(wrong), "the key was printed: {out}");
    let sas =
        "sv=2021-08-06&ss=b&srt=sco&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=Zm9vYmFyU0VDUkVUU0lH";
    let (code, out) = run_err({
        let mut c = ours();
        c.env("LITESTREAM_AZURE_SAS_TOKEN", sas)
            .args(["restore", "-o"])
            .arg(dir.path().join("y.db"))
            .arg(&url);
        c
    });
    assert_ne!(code, 0);
    assert!(
        !out.contains("Zm9vYmFyU0VDUkVUU0lH"),
        "the SAS signature was printed: {out}"
    );
}
