//! The config file's parsing, table-driven.

use super::*;
use crate::settings::values::parse_go_duration;

/// Found by fuzzing (tests/fuzz/regressions/config_parse): a huge
/// duration in a config panicked instead of being refused.
#[test]
fn durations_out_of_range_are_refused() {
    let e = parse_go_duration("99999999999999999999h").unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    assert!(parse_go_duration("1000000000000000000000000000000h").is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_go_duration("1s").unwrap(), Duration::from_secs(1));
    assert_eq!(
        parse_go_duration("1h30m").unwrap(),
        Duration::from_secs(5400)
    );
    assert_eq!(
        parse_go_duration("250ms").unwrap(),
        Duration::from_millis(250)
    );
    assert_eq!(
        parse_go_duration("1.5h").unwrap(),
        Duration::from_secs(5400)
    );
    assert!(parse_go_duration("5 minutes").is_err());
    assert!(parse_go_duration("").is_err());
}

#[test]
fn env_expansion() {
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(
        expand_env_vars("x: $HOME/${HOME}"),
        format!("x: {home}/{home}")
    );
    assert_eq!(expand_env_vars("cost: $5 and $"), "cost: $5 and $");
    assert_eq!(expand_env_vars("v: $LSPP_TEST_UNSET_VAR."), "v: .");
}

#[test]
fn parses_levels_snapshots_and_retention() {
    let c = parse_config(
        "levels:\n  - interval: 10s\n  - interval: 2m\nsnapshot:\n  interval: 12h\n  retention: 48h\nl0-retention: 1m\nl0-retention-check-interval: 5s\nretention:\n  enabled: false\nverify-compaction: true\ndbs:\n  - path: /data/a.db\n    replica:\n      url: file:///b/a\n  - path: /data/b.db\n    snapshot:\n      interval: 1h\n    replica:\n      url: file:///b/b\n",
        Path::new("test.yml"),
        true,
    )
    .unwrap();
    let a = &c.dbs[0].tuning.levels;
    assert_eq!(
        a.intervals,
        [Duration::from_secs(10), Duration::from_secs(120)]
    );
    assert_eq!(a.snapshot_interval, Duration::from_secs(12 * 3600));
    assert_eq!(a.snapshot_retention, Duration::from_secs(48 * 3600));
    assert_eq!(a.l0_retention, Duration::from_secs(60));
    assert!(!a.retention_enabled && a.verify_compaction);
    // A database's own snapshot settings override the top level's.
    let b = &c.dbs[1].tuning.levels;
    assert_eq!(b.snapshot_interval, Duration::from_secs(3600));
    assert_eq!(b.snapshot_retention, Duration::from_secs(48 * 3600));
    // Defaults are Litestream's.
    let d = parse_config("dbs: []\n", Path::new("t.yml"), true).unwrap();
    assert_eq!(d.levels, LevelsConfig::default());
    for (bad, key) in [
        ("levels:\n  - interval: 0s\n", "levels[0]"),
        ("levels:\n  - {}\n", "levels[0].interval"),
        ("snapshot:\n  interval: 0s\n", "snapshot.interval"),
        ("snapshot:\n  every: 1h\n", "every"),
        ("retention:\n  enabled: maybe\n", "retention.enabled"),
    ] {
        let e = format!(
            "{:#}",
            parse_config(bad, Path::new("t.yml"), true).unwrap_err()
        );
        assert!(e.contains(key), "{bad:?}: {e}");
    }
}

#[test]
fn parses_litestream_config() {
    let c = parse_config(
        "sync-interval: 2s\ndbs:\n  - path: /data/a.db\n    monitor-interval: 100ms\n    replica:\n      url: file:///backups/a\n  - path: /data/b.db\n    replicas:\n      - type: file\n        path: /backups/b\n        sync-interval: 5s\n",
        Path::new("test.yml"),
        true,
    )
    .unwrap();
    assert_eq!(c.dbs.len(), 2);
    let a = c.db(Path::new("/data/a.db")).unwrap();
    assert_eq!(a.tuning.monitor_interval, Some(Duration::from_millis(100)));
    let r = a.replica.as_ref().unwrap();
    assert_eq!(r.kind, "file");
    assert_eq!(
        r.duration("sync-interval").unwrap(),
        Some(Duration::from_secs(2))
    );
    let rb = c.dbs[1].replica.as_ref().unwrap();
    assert_eq!(
        rb.duration("sync-interval").unwrap(),
        Some(Duration::from_secs(5))
    );
}

#[test]
fn config_errors_name_the_key() {
    for (text, want) in [
        (
            "dbs:\n  - path: /a.db\n    replica:\n      bukcet: x\n",
            "unknown key \"bukcet\"",
        ),
        ("dbz: []\n", "unknown key \"dbz\""),
        ("dbs:\n  - replica: {url: 'file:///x'}\n", "path required"),
        (
            "dbs:\n  - path: /a\n    replica: {url: 'file:///x', path: /y}\n",
            "mutually exclusive",
        ),
        (
            "dbs:\n  - path: /a\n    monitor-interval: soon\n",
            "monitor-interval",
        ),
        ("dbs: [", "config t.yml"),
    ] {
        let err = format!(
            "{:#}",
            parse_config(text, Path::new("t.yml"), false).unwrap_err()
        );
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn parses_directory_entries_and_the_fleet_section() {
    let c = parse_config(
        "addr: \":9090\"\ndbs:\n  - path: /one.db\n    replica: {url: 'file:///b/one'}\n  - dir: /data/tenants/\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n      type: s3\n      bucket: bkt\n      path: tenants\n      region: eu-west-1\n  - dir: /data/flat\n    pattern: \"t-*.sqlite\"\n    replica: {url: 'file:///b/flat'}\nfleet:\n  hot-idle-timeout: 10s\n  max-hot: 50\n  backlog-rate: 20\n  exclude: ['**/tmp/*.db']\n",
        Path::new("t.yml"),
        false,
    )
    .unwrap();
    assert_eq!(c.dbs.len(), 1);
    assert_eq!(c.dirs.len(), 2);
    assert_eq!(c.dirs[0].glob(), "/data/tenants/**/*.db");
    assert_eq!(c.dirs[1].glob(), "/data/flat/t-*.sqlite");
    let r = c.dirs[0].replica.with_relative_path("a/x.db").unwrap();
    let s = r.s3_settings().unwrap();
    assert_eq!(
        (s.bucket.as_str(), s.path.as_str()),
        ("bkt", "tenants/a/x.db")
    );
    assert_eq!(c.fleet.hot_idle_timeout, Some(Duration::from_secs(10)));
    assert_eq!(c.fleet.max_hot, Some(50));
    assert_eq!(c.fleet.backlog_rate, Some(20));
    assert_eq!(c.fleet.exclude, ["**/tmp/*.db"]);
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    for (text, want) in [
        (
            "dbs:\n  - dir: /d\n    replica: {url: 'file:///x'}\n",
            "pattern required",
        ),
        (
            "dbs:\n  - dir: /d\n    pattern: '*.db'\n",
            "replica required",
        ),
        (
            "dbs:\n  - dir: /d\n    pattern: 'a/*.db'\n    replica: {url: 'file:///x'}\n",
            "file names",
        ),
        ("fleet:\n  max-hot: 0\n", "max-hot"),
        ("fleet:\n  hot-timeout: 1s\n", "unknown key \"hot-timeout\""),
    ] {
        let err = format!(
            "{:#}",
            parse_config(text, Path::new("t.yml"), false).unwrap_err()
        );
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn socket_section_as_go_reads_it() {
    let parse = |t: &str| parse_config(t, Path::new("/etc/t.yml"), false);
    assert_eq!(
        parse("socket:\n  path: /tmp/x.sock\n").unwrap().socket,
        None
    );
    let s = parse("socket:\n  enabled: true\n").unwrap().socket.unwrap();
    assert_eq!(s.path, Path::new("/var/run/litestream.sock"));
    assert_eq!(s.permissions, 0o600);
    for (text, mode) in [
        ("0660", 0o660),
        ("0o640", 0o640),
        ("384", 0o600),
        ("\"0644\"", 0o644),
    ] {
        let c = parse(&format!(
            "socket:\n  enabled: true\n  path: /tmp/x.sock\n  permissions: {text}\n"
        ))
        .unwrap();
        assert_eq!(c.socket.unwrap().permissions, mode, "{text}");
    }
    assert!(parse("socket:\n  enabled: true\n  permissions: 0999\n").is_err());
    assert!(parse("socket:\n  enabled: yes please\n").is_err());
}
