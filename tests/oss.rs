//! The `oss` backend (Alibaba Cloud OSS through its S3-compatible API, on
//! our S3 client) against a real S3 server (moto), path-style as moto
//! needs: the conformance suite, Go's OSS layout and metadata from a
//! config file with Go's keys, credentials from `OSS_ACCESS_KEY_ID` /
//! `OSS_ACCESS_KEY_SECRET`, and a fleet with `restore-pattern`. Go's own
//! OSS client signs with OSS's scheme, which no local server speaks, so
//! compatibility with Go rests on the layout (the S3 one, checked here and
//! against Go in `tests/s3.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Command;

use litestreampp_core::client::{conformance, oss, s3_client};
use litestreampp_e2e::backends::fleet_round_trip;
use litestreampp_e2e::moto::Moto;
use litestreampp_e2e::*;

/// Our binary with OSS credentials only (no AWS ones to fall back on).
fn ours_oss() -> Command {
    let mut c = ours();
    c.env("OSS_ACCESS_KEY_ID", "oss-test-key")
        .env("OSS_ACCESS_KEY_SECRET", "oss-test-secret")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE");
    c
}

fn url(moto: &Moto, bucket: &str, path: &str) -> String {
    format!(
        "oss://{bucket}/{path}?endpoint={}&forcePathStyle=true",
        moto.endpoint()
    )
}

#[test]
fn conformance_against_moto_as_oss() {
    let moto = Moto::start();
    moto.create_bucket("conf");
    let s = oss::complete(oss::from_url(&url(&moto, "conf", "raw/db")).unwrap(), |k| {
        Some(format!("test-{k}"))
    });
    assert_eq!(s.location(), "oss://conf/raw/db");
    runtime().block_on(async {
        let c = s3_client(s).unwrap();
        assert_eq!(c.kind(), "oss");
        conformance::run(c.as_ref()).await;
    });
}

/// A config file with Go's OSS keys replicates in Go's OSS layout
/// (`<path>/<level %04x>/…`), and restores by config and by URL.
#[test]
fn config_with_go_keys_replicates_in_go_layout() {
    let moto = Moto::start();
    moto.create_bucket("lay");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let w = Workload::new(3);
    let conn = open_app(&db, None);
    w.setup(&conn);
    for n in 1..=30 {
        w.step(&conn, n, true);
    }
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: oss\n      bucket: lay\n      path: x/y\n      region: cn-shanghai\n      endpoint: {}\n      force-path-style: true\n",
            db.display(),
            moto.endpoint()
        ),
    )
    .unwrap();
    run_ok({
        let mut c = ours_oss();
        c.args(["replicate", "-once", "-config"]).arg(&cfg);
        c
    });
    let keys = moto.keys("lay");
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("x/y/0000/")),
        "{keys:?}"
    );
    for (i, how) in ["config", "url"].into_iter().enumerate() {
        let out = dir.path().join(format!("r{i}.db"));
        let mut c = ours_oss();
        if how == "config" {
            c.args(["restore", "-config"])
                .arg(&cfg)
                .arg("-o")
                .arg(&out)
                .arg(&db);
        } else {
            c.args(["restore", "-o"])
                .arg(&out)
                .arg(url(&moto, "lay", "x/y"));
        }
        run_ok(c);
        assert_eq!(verify_restore(&out, &w), 30, "restore by {how}");
    }
}

/// A fleet backs up to `oss://…/{path}` and `restore-pattern` brings every
/// database back from one listing of the prefix.
#[test]
fn fleet_backs_up_to_oss_and_restore_pattern_brings_it_back() {
    let moto = Moto::start();
    moto.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    fleet_round_trip(
        dir.path(),
        &url(&moto, "fleet", "backups/{path}"),
        &url(&moto, "fleet", "backups/**/*.db"),
        ours_oss,
    );
}
