//! Litestream 0.5.17 users keep their config, flags and dashboards: every
//! config key is implemented or refused out loud, and `replicate`'s
//! `/metrics` carries Go's metric names and labels, checked side by side
//! with the Go binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use litestreampp_e2e::moto::{Moto, free_port, http, with_credentials};
use litestreampp_e2e::*;

/// A config replicating `db` to S3 at `endpoint`, serving metrics on
/// `port`.
fn s3_config(cfg: &Path, db: &Path, endpoint: &str, prefix: &str, port: u16) {
    std::fs::write(
        cfg,
        format!(
            "addr: 127.0.0.1:{port}\nlevels:\n  - interval: 2s\nl0-retention: 2s\nl0-retention-check-interval: 1s\nverify-compaction: true\n\
             dbs:\n  - path: {}\n    monitor-interval: 100ms\n    min-checkpoint-page-count: 10\n    checkpoint-interval: 1s\n    replica:\n      type: s3\n      bucket: metrics\n      path: {prefix}\n      endpoint: {endpoint}\n      region: us-east-1\n      force-path-style: true\n      sync-interval: 100ms\n",
            db.display()
        ),
    )
    .unwrap();
}

/// The `litestream_*` metric families of a Prometheus text page, and the
/// label names each family's series carry.
fn families(page: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    for line in page.lines() {
        if line.starts_with('#') || !line.starts_with("litestream_") {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => continue,
        };
        // A histogram's series are one family.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| f.ends_with("_duration_seconds"))
            })
            .unwrap_or(name)
            .to_string();
        let labels = out.entry(family).or_default();
        if let Some(body) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            for kv in body.0.split(',') {
                if let Some((k, _)) = kv.split_once('=')
                    && k != "le"
                {
                    labels.insert(k.to_string());
                }
            }
        }
    }
    out
}

fn scrape(port: u16) -> String {
    let (status, body) = http(port, "GET", "/metrics").expect("scrape");
    assert_eq!(status, 200, "{body}");
    body
}

/// A Litestream dashboard keeps working: every `litestream_*` family Go
/// 0.5.17 exposes after the same work is on our `/metrics`, with the same
/// labels, and each database's series carry its path in `db`.
#[test]
fn replicate_metrics_match_go_side_by_side() {
    let moto = Moto::start();
    moto.create_bucket("metrics");
    let dir = Scratch::new();
    let mut pages = Vec::new();
    for who in ["go", "ours"] {
        let db = dir.path().join(format!("{who}.db"));
        let cfg = dir.path().join(format!("{who}.yml"));
        let port = free_port();
        s3_config(&cfg, &db, &moto.endpoint(), who, port);
        let w = Workload::new(5);
        let conn = open_app(&db, None);
        w.setup(&conn);
        let mut c = if who == "go" { go() } else { ours() };
        with_credentials(&mut c);
        c.args(["replicate", "-config"]).arg(&cfg);
        let child = spawn_logged(c, &dir.path().join(format!("{who}.log")));
        wait_for(
            &format!("{who}'s metrics endpoint"),
            Duration::from_secs(30),
            || http(port, "GET", "/metrics").is_ok_and(|(s, _)| s == 200),
        );
        for n in 1..=300 {
            w.step(&conn, n, true);
            if n % 50 == 0 {
                std::thread::sleep(Duration::from_millis(400));
            }
        }
        // Two compactions, L0 retention and a checkpoint have run.
        std::thread::sleep(Duration::from_secs(6));
        let page = scrape(port);
        assert_eq!(terminate(child, Duration::from_secs(30)), 0, "{who}");
        let db_label = format!("db=\"{}\"", db.display());
        assert!(
            page.contains(&db_label),
            "{who}: no series for {db_label}:\n{page}"
        );
        pages.push(page);
    }
    let (go, ours) = (families(&pages[0]), families(&pages[1]));
    assert!(
        go.contains_key("litestream_sync_count")
            && go.contains_key("litestream_replica_operation_total"),
        "Go's page lacks what this test relies on:\n{}",
        pages[0]
    );
    // Go's L0 retention gauge counts files by status each time it checks;
    // ours deletes each L0 file at its own deadline (no periodic check).
    let not_ours = ["litestream_l0_retention_files_total"];
    let mut missing = Vec::new();
    for (family, labels) in &go {
        if not_ours.contains(&family.as_str()) {
            continue;
        }
        match ours.get(family) {
            None => missing.push(family.clone()),
            Some(our_labels) => assert!(
                labels.is_subset(our_labels),
                "{family}: Go labels {labels:?}, ours {our_labels:?}"
            ),
        }
    }
    assert!(
        missing.is_empty(),
        "on Go's /metrics, not ours: {missing:?}\nGo:\n{}\nours:\n{}",
        pages[0],
        pages[1]
    );
    eprintln!(
        "Go exposes {} litestream_* families, we expose {} ({} in common)",
        go.len(),
        ours.len(),
        go.keys().filter(|f| ours.contains_key(*f)).count()
    );
}

/// Keys we do not implement are refused before anything is uploaded, with
/// exit code 2 and a message naming the key and the file; `age` is refused
/// by Go 0.5.17 too (it would upload plain text).
#[test]
fn refused_keys_stop_replication_before_it_starts() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let w = Workload::new(9);
    w.setup(&open_app(&db, None));
    let replica = dir.path().join("replica");
    for (key, yaml) in [
        ("age", "      age:\n        recipients: [age1qqqq]\n"),
        ("account-name", "      account-name: acct\n"),
    ] {
        let cfg = dir.path().join("litestream.yml");
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      path: {}\n{yaml}",
                db.display(),
                replica.display()
            ),
        )
        .unwrap();
        let mut c = ours();
        c.args(["replicate", "-once", "-config"]).arg(&cfg);
        let (code, err) = run_err(c);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(
            err.contains(key) && err.contains(&cfg.display().to_string()),
            "{key}: the error should name the key and the file: {err}"
        );
        assert!(!replica.exists(), "{key}: something was uploaded");
        if key == "age" {
            let mut c = go();
            c.args(["replicate", "-once", "-config"]).arg(&cfg);
            let (_, go_err) = run_err(c);
            assert!(go_err.contains("age encryption"), "Go: {go_err}");
            assert!(!replica.exists(), "Go uploaded something");
        }
    }
}
