//! Every key Go Litestream 0.5.17 reads (its `yaml:` struct tags in
//! cmd/litestream/main.go, internal/log.go and server.go), in every place
//! it may appear: each is implemented (the file parses) or refused (an
//! error naming the key and the file). Nothing is accepted and ignored.

use std::path::Path;

use super::super::{ConfigError, parse_config};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Implemented,
    Refused,
}
use Outcome::*;

/// Replica settings Go reads, a sample value, and what we do with each on
/// an S3 replica (other backends' keys are refused there, and those
/// backends are refused by this build as a whole).
const REPLICA_SETTINGS: &[(&str, &str, Outcome)] = &[
    ("sync-interval", "1s", Implemented),
    ("validation-interval", "1h", Refused),
    ("max-sync-ltx-files", "256", Implemented),
    ("auto-recover", "true", Implemented),
    ("access-key-id", "AKIA", Implemented),
    ("secret-access-key", "secret", Implemented),
    ("region", "us-east-1", Implemented),
    ("bucket", "bkt", Implemented),
    ("endpoint", "http://127.0.0.1:9", Implemented),
    ("force-path-style", "true", Implemented),
    ("sign-payload", "true", Implemented),
    ("require-content-md5", "true", Implemented),
    ("skip-verify", "true", Refused),
    ("storage-class", "STANDARD", Implemented),
    ("part-size", "5MB", Implemented),
    ("concurrency", "4", Implemented),
    ("sse-customer-algorithm", "AES256", Implemented),
    ("sse-customer-key", "a2V5", Implemented),
    ("sse-customer-key-path", "/k", Implemented),
    ("sse-kms-key-id", "kms", Implemented),
    ("account-name", "acct", Refused),
    ("account-key", "key", Refused),
    ("sas-token", "sas", Refused),
    ("host", "h:22", Refused),
    ("user", "u", Refused),
    ("password", "p", Refused),
    ("key-path", "/k", Refused),
    ("concurrent-writes", "true", Refused),
    ("host-key", "ssh-ed25519 AAAA", Refused),
    ("webdav-url", "http://127.0.0.1:9", Refused),
    ("webdav-username", "u", Refused),
    ("webdav-password", "p", Refused),
    ("jwt", "j", Refused),
    ("seed", "s", Refused),
    ("creds", "/c", Refused),
    ("nkey", "n", Refused),
    ("username", "u", Refused),
    ("token", "t", Refused),
    ("tls", "true", Refused),
    ("root-cas", "[/ca]", Refused),
    ("client-cert", "/c", Refused),
    ("client-key", "/k", Refused),
    ("max-reconnects", "3", Refused),
    ("reconnect-wait", "1s", Refused),
    ("timeout", "1s", Refused),
    ("age", "{recipients: [age1x]}", Refused),
];

/// Keys of a `dbs` entry for one database, with a sample value.
const DB_KEYS: &[(&str, &str, Outcome)] = &[
    ("snapshot", "{interval: 1h, retention: 24h}", Implemented),
    ("meta-path", "/tmp/meta", Implemented),
    ("meta-dir", "/tmp/meta", Refused),
    ("watch", "true", Refused),
    ("monitor-interval", "1s", Implemented),
    ("checkpoint-interval", "1m", Implemented),
    ("busy-timeout", "1s", Implemented),
    ("min-checkpoint-page-count", "1000", Implemented),
    ("truncate-page-n", "121359", Implemented),
    ("max-sync-wal-bytes", "1048576", Implemented),
    ("restore-if-db-not-exists", "true", Implemented),
];

/// Keys of a directory entry (besides dir, pattern, replica).
const DIR_KEYS: &[(&str, &str, Outcome)] = &[
    ("recursive", "true", Implemented),
    ("watch", "true", Implemented),
    ("snapshot", "{interval: 1h, retention: 24h}", Implemented),
    ("meta-path", "/tmp/meta", Implemented),
    ("meta-dir", "/tmp/meta", Implemented),
    ("monitor-interval", "1s", Implemented),
    ("checkpoint-interval", "1m", Implemented),
    ("busy-timeout", "1s", Implemented),
    ("min-checkpoint-page-count", "1000", Implemented),
    ("truncate-page-n", "121359", Implemented),
    ("max-sync-wal-bytes", "1048576", Implemented),
    ("restore-if-db-not-exists", "true", Implemented),
];

/// Top-level keys (besides replica defaults and dbs).
const TOP_KEYS: &[(&str, &str, Outcome)] = &[
    ("addr", "':9090'", Implemented),
    (
        "socket",
        "{enabled: false, path: /tmp/l.sock, permissions: 0600}",
        Implemented,
    ),
    ("socket", "{enabled: true, permissions: 0660}", Implemented),
    ("levels", "[{interval: 30s}, {interval: 5m}]", Implemented),
    ("snapshot", "{interval: 1h, retention: 24h}", Implemented),
    ("validation", "{interval: 1h}", Implemented),
    ("l0-retention", "5m", Implemented),
    ("l0-retention-check-interval", "15s", Implemented),
    ("verify-compaction", "true", Implemented),
    ("retention", "{enabled: false}", Implemented),
    ("heartbeat-url", "http://127.0.0.1:9/ping", Implemented),
    ("heartbeat-interval", "5m", Implemented),
    ("exec", "myapp -port 8080", Implemented),
    (
        "logging",
        "{level: debug, type: json, stderr: true, source: true}",
        Implemented,
    ),
    ("logging", "{type: pretty}", Implemented),
    ("mcp-addr", "':3001'", Implemented),
    ("shutdown-sync-timeout", "30s", Implemented),
    ("shutdown-sync-interval", "500ms", Implemented),
];

fn outcome(text: &str, key: &str) -> Outcome {
    match parse_config(text, Path::new("/etc/t.yml"), false) {
        Ok(_) => Implemented,
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                e.chain().any(|c| c.is::<ConfigError>()),
                "not a config error: {msg}"
            );
            assert!(
                msg.contains(key) && msg.contains("/etc/t.yml"),
                "the error should name {key:?} and the file: {msg}"
            );
            Refused
        }
    }
}

const S3_DB: &str = "dbs:\n  - path: /data/a.db\n    replica:\n      type: s3\n      bucket: b\n";

#[test]
fn every_replica_setting_is_implemented_or_refused() {
    for &(key, value, want) in REPLICA_SETTINGS {
        let text = if key == "bucket" {
            format!("dbs:\n  - path: /a.db\n    replica:\n      type: s3\n      {key}: {value}\n")
        } else {
            format!("{S3_DB}      {key}: {value}\n")
        };
        assert_eq!(outcome(&text, key), want, "replica {key}: {text}");
        // As a global default for every replica.
        let text = if key == "bucket" {
            format!("{key}: {value}\ndbs:\n  - path: /a.db\n    replica:\n      type: s3\n")
        } else {
            format!("{key}: {value}\n{S3_DB}")
        };
        assert_eq!(outcome(&text, key), want, "global {key}: {text}");
    }
    // Under a directory entry the same.
    for &(key, value, want) in REPLICA_SETTINGS {
        let text = format!(
            "dbs:\n  - dir: /data\n    pattern: '*.db'\n    replica:\n      type: s3\n      bucket: b\n      {key}: {value}\n"
        );
        if key != "bucket" {
            assert_eq!(outcome(&text, key), want, "dir replica {key}");
        }
    }
    // A type Go does not have is refused by name.
    let text = "dbs:\n  - path: /a.db\n    replica:\n      type: ftp\n      host: x\n";
    assert_eq!(outcome(text, "ftp"), Refused);
    // An sftp replica takes Go's keys, and nothing of S3's.
    let sftp = "dbs:\n  - path: /a.db\n    replica:\n      type: sftp\n      host: h:22\n      user: u\n      path: /db\n";
    for (key, value) in [
        ("password", "p"),
        ("key-path", "/k"),
        ("host-key", "'ssh-ed25519 AAAA'"),
        ("concurrent-writes", "false"),
    ] {
        let text = format!("{sftp}      password: p\n      {key}: {value}\n");
        let text = text.replacen(
            "      password: p\n      password: p\n",
            "      password: p\n",
            1,
        );
        assert_eq!(outcome(&text, key), Implemented, "sftp {key}");
    }
    let text = format!("{sftp}      password: p\n      region: r\n");
    assert_eq!(outcome(&text, "region"), Refused);
    // A gs replica takes its bucket, and nothing of S3's.
    let gs =
        "dbs:\n  - path: /a.db\n    replica:\n      type: gs\n      bucket: b\n      path: db\n";
    assert_eq!(outcome(gs, "bucket"), Implemented);
    let text = format!("{gs}      region: r\n");
    assert_eq!(outcome(&text, "region"), Refused);
    // An abs replica takes Go's keys (the endpoint too), and no S3 key.
    let abs = "dbs:\n  - path: /a.db\n    replica:\n      type: abs\n      bucket: c\n      path: db\n      account-name: a\n";
    for (key, value) in [
        ("account-key", "a2V5"),
        ("sas-token", "sv=1"),
        ("endpoint", "http://127.0.0.1:1/a"),
    ] {
        let text = format!("{abs}      {key}: {value}\n");
        assert_eq!(outcome(&text, key), Implemented, "abs {key}");
    }
    let text = format!("{abs}      region: r\n");
    assert_eq!(outcome(&text, "region"), Refused);
    // A webdav replica takes Go's three keys; a webdavs URL is a webdav
    // replica, as in Go.
    let dav = "dbs:\n  - path: /a.db\n    replica:\n      type: webdav\n      webdav-url: http://127.0.0.1:1\n      path: db\n";
    for key in ["webdav-username", "webdav-password"] {
        let text = format!("{dav}      {key}: x\n");
        assert_eq!(outcome(&text, key), Implemented, "webdav {key}");
    }
    let text = "dbs:\n  - path: /a.db\n    replica:\n      url: webdavs://u:p@h/db\n";
    assert_eq!(outcome(text, "url"), Implemented);
    let text = format!("{dav}      bucket: b\n");
    assert_eq!(outcome(&text, "bucket"), Refused);
    // An oss replica takes the keys Go's OSS client reads, and no other
    // S3 key.
    let oss =
        "dbs:\n  - path: /a.db\n    replica:\n      type: oss\n      bucket: b\n      path: db\n";
    for (key, value) in [
        ("region", "cn-shanghai"),
        ("endpoint", "oss-cn-shanghai.aliyuncs.com"),
        ("access-key-id", "k"),
        ("secret-access-key", "s"),
        ("part-size", "8MiB"),
        ("concurrency", "3"),
    ] {
        let text = format!("{oss}      {key}: {value}\n");
        assert_eq!(outcome(&text, key), Implemented, "oss {key}");
    }
    let text = format!("{oss}      sse-kms-key-id: k\n");
    assert_eq!(outcome(&text, "sse-kms-key-id"), Refused);
    // A nats replica takes Go's connection keys.
    let nats =
        "dbs:\n  - path: /a.db\n    replica:\n      type: nats\n      url: nats://127.0.0.1:1/b\n";
    for (key, value) in [
        ("username", "u"),
        ("password", "p"),
        ("token", "t"),
        ("tls", "true"),
        ("root-cas", "[/ca.pem]"),
        ("max-reconnects", "-1"),
        ("reconnect-wait", "2s"),
        ("timeout", "5s"),
    ] {
        let text = format!("{nats}      {key}: {value}\n");
        assert_eq!(outcome(&text, key), Implemented, "nats {key}");
    }
    // On a file replica an S3 key would do nothing.
    let text = "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      region: r\n";
    assert_eq!(outcome(text, "region"), Refused);
}

#[test]
fn every_database_and_directory_key_is_implemented_or_refused() {
    for &(key, value, want) in DB_KEYS {
        let text = format!(
            "dbs:\n  - path: /data/a.db\n    {key}: {value}\n    replica:\n      path: /b\n"
        );
        assert_eq!(outcome(&text, key), want, "db {key}");
    }
    for &(key, value, want) in DIR_KEYS {
        let text = format!(
            "dbs:\n  - dir: /data\n    pattern: '*.db'\n    {key}: {value}\n    replica:\n      path: /b\n"
        );
        assert_eq!(outcome(&text, key), want, "dir {key}");
    }
    // The deprecated list form and `name` are read as Go reads them.
    let text = "dbs:\n  - path: /a.db\n    replicas:\n      - name: r\n        type: file\n        path: /b\n";
    assert_eq!(outcome(text, "replicas"), Implemented);
}

#[test]
fn every_top_level_key_is_implemented_or_refused() {
    for &(key, value, want) in TOP_KEYS {
        let text = format!("{key}: {value}\ndbs:\n  - path: /a.db\n    replica:\n      path: /b\n");
        assert_eq!(outcome(&text, key), want, "{key}: {value}");
    }
    // Sections hold only Go's keys.
    for (text, key) in [
        ("logging:\n  colour: true\n", "colour"),
        ("socket:\n  mode: 1\n", "mode"),
        ("validation:\n  every: 1h\n", "every"),
        ("logging:\n  type: xml\n", "type"),
        (
            "l0-retention-check-interval: 0s\n",
            "l0-retention-check-interval",
        ),
    ] {
        assert_eq!(outcome(text, key), Refused, "{text}");
    }
}

#[test]
fn pid_expands_to_this_process() {
    let c = parse_config(
        "dbs:\n  - path: /data/a.db\n    meta-path: /tmp/m-${PID}\n    replica:\n      path: /b\n",
        Path::new("t.yml"),
        true,
    )
    .unwrap();
    let want = format!("/tmp/m-{}", std::process::id());
    assert_eq!(c.dbs[0].tuning.meta_path.as_deref(), Some(Path::new(&want)));
}
