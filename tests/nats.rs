//! The `nats` backend against a real NATS server (`nats-server -js`,
//! started per test on a free port with a user and password): the
//! conformance suite (at a bucket's root, as Go keeps a database, and
//! under a path, ours); compatibility with Go Litestream 0.5.17 in both
//! directions on one config file (object names, the
//! `Litestream-Timestamp` header, restores); a missing bucket named in a
//! clear error; a fleet sharing one bucket and `restore-pattern`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Command;

use litestreampp_core::TxId;
use litestreampp_core::client::nats::NatsSettings;
use litestreampp_core::client::{ClientPool, LtxBody, conformance, nats_client};
use litestreampp_e2e::backends::{Replicated, fleet_round_trip, replicate_by_config};
use litestreampp_e2e::nats::{NatsServer, PASSWORD, USER};
use litestreampp_e2e::*;

/// `cmd` (Go or us) replicates `steps` transactions to `bucket` by a
/// config file with Go's keys (url, username, password).
fn replicate(n: &NatsServer, bucket: &str, cmd: Command, seed: u64, steps: u64) -> Replicated {
    n.create_bucket(bucket);
    let port = n.port;
    replicate_by_config(
        |db| {
            format!(
                "dbs:\n  - path: {}\n    replica:\n      type: nats\n      url: nats://127.0.0.1:{port}/{bucket}\n      username: {USER}\n      password: {PASSWORD}\n      sync-interval: 100ms\n",
                db.display()
            )
        },
        || !n.objects(bucket).is_empty(),
        cmd,
        seed,
        steps,
    )
}

#[test]
fn conformance_against_nats_server() {
    let n = NatsServer::start();
    n.create_bucket("conf");
    runtime().block_on(async {
        let c = nats_client(NatsSettings::from_url(&n.url("conf")).unwrap()).unwrap();
        conformance::run(c.as_ref()).await;
        let c = ClientPool::default()
            .open_nats(NatsSettings::from_url(&n.url("conf/some/db")).unwrap())
            .unwrap();
        conformance::run(c.as_ref()).await;
    });
    assert!(n.objects("conf").is_empty(), "delete_all left objects");
}

/// Reads check an object's chunks against its info (async-nats's own
/// `get` checks a SHA-256 digest, which we skip for speed): a size that
/// does not match is an error naming the object, never a short file.
#[test]
fn an_object_shorter_than_its_info_is_an_error() {
    let n = NatsServer::start();
    n.create_bucket("short");
    let c = nats_client(NatsSettings::from_url(&n.url("short")).unwrap()).unwrap();
    let body = conformance::sample_ltx(1, 1, 1_700_000_000_000, 600);
    // One runtime: the client's connection lives on it.
    let rt = runtime();
    let read = || rt.block_on(c.read_ltx_range(0, TxId(1), TxId(1), 0, 0));
    rt.block_on(c.write_ltx_file(0, TxId(1), TxId(1), LtxBody::Bytes(body.clone())))
        .unwrap();
    assert_eq!(read().unwrap(), body.to_vec());
    n.misstate_size(
        "short",
        "ltx/0/0000000000000001-0000000000000001.ltx",
        body.len() + 1000,
    );
    // At once: reading it again would read the same.
    let began = std::time::Instant::now();
    let e = read().unwrap_err().to_string();
    assert!(
        e.contains("0000000000000001-0000000000000001.ltx: corrupt")
            && e.contains(&format!("info says {}", body.len() + 1000)),
        "{e}"
    );
    assert!(began.elapsed() < std::time::Duration::from_secs(2), "{e}");
}

#[test]
fn go_replicates_to_nats_we_restore() {
    let n = NatsServer::start();
    let steps = 600;
    let r = replicate(&n, "gobucket", go(), 91, steps);
    for (name, _, ts) in n.objects("gobucket") {
        assert!(name.starts_with("ltx/"), "Go wrote {name}");
        assert!(ts.is_some(), "{name}: no Litestream-Timestamp header");
    }
    r.we_restore_as_go(steps, go(), ours());
}

#[test]
fn we_replicate_to_nats_go_restores() {
    let n = NatsServer::start();
    let steps = 800;
    let r = replicate(&n, "ours", ours(), 92, steps);
    let mut max = 0;
    for (name, _, ts) in n.objects("ours") {
        let file = name
            .strip_prefix("ltx/")
            .and_then(|r| r.split_once('/'))
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("{name} is not in Go's layout"));
        let (_, m) = litestreampp_core::txid::parse_ltx_file_name(file).unwrap();
        max = max.max(m.0);
        assert!(
            ts.unwrap_or_default().parse::<jiff::Timestamp>().is_ok(),
            "{name}: Litestream-Timestamp"
        );
    }
    r.go_restores_and_we_match(steps, max, go, ours);
}

/// As in Go, a bucket is never created: a missing one is an error that
/// names it and says how to create it; the password is never printed.
#[test]
fn a_missing_bucket_is_a_clear_error() {
    let n = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    open_app(&db, None)
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let (code, out) = run_err({
        let mut c = ours();
        c.args(["replicate", "-once"])
            .arg(&db)
            .arg(n.url("nobucket"));
        c
    });
    assert_ne!(code, 0);
    assert!(
        out.contains("nobucket") && out.contains("nats object add"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "the password was printed: {out}");
}

/// A fleet shares one bucket, each database under its own path (ours; Go
/// keeps one database per bucket), and `restore-pattern` brings every one
/// back from one listing. The first listings run while the other
/// replicas upload to the bucket, where async-nats's own listing lost
/// messages and waited out its bound: every one of the 60 was retried.
/// Now a retry is rare (one of 60 in one run of the whole suite, cause
/// not found yet): fewer than a tenth may be.
#[test]
fn fleet_shares_a_bucket_and_restore_pattern_brings_it_back() {
    let n = NatsServer::start();
    n.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let logged = || {
        let mut c = ours();
        let f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        c.env("LITESTREAM_LOG_LEVEL", "debug").stderr(f);
        c
    };
    fleet_round_trip(
        dir.path(),
        &n.url("fleet/backups/{path}"),
        &n.url("fleet/backups/**/*.db"),
        logged,
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("backed up"), "no back up logged: {said}");
    let retried: Vec<_> = said.lines().filter(|l| l.contains("retrying")).collect();
    assert!(retried.len() < 6, "requests were retried: {retried:#?}");
}
