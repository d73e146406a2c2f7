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

/// `exec` (the config key): the application starts only once the first
/// sync is in the replica, what it writes before exiting is shipped by the
/// final sync, and litestreampp exits with its code.
#[test]
fn exec_starts_after_the_first_sync_and_exits_with_its_code() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let w = Workload::new(21);
    w.setup(&open_app(&db, None));
    let replica = dir.path().join("replica");
    let seen = dir.path().join("replica-seen-at-start");
    // The application: records what the replica held when it started,
    // writes one row, exits 7.
    let script = dir.path().join("app.sh");
    std::fs::write(
        &script,
        format!(
            "ls {r}/ltx/0 > {seen}\npython3 -c \"import sqlite3; c = sqlite3.connect('{db}'); c.execute('CREATE TABLE app(x)'); c.execute('INSERT INTO app VALUES (1)'); c.commit()\"\nexit 7\n",
            r = replica.display(),
            seen = seen.display(),
            db = db.display()
        ),
    )
    .unwrap();
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "exec: sh {}\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
            script.display(),
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["replicate", "-config"]).arg(&cfg);
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !std::fs::read_to_string(&seen).unwrap().trim().is_empty(),
        "the application started before the first sync was in the replica"
    );
    let restored = dir.path().join("out.db");
    let mut c = ours();
    c.args(["restore", "-o"])
        .arg(&restored)
        .arg(format!("file://{}", replica.display()));
    run_ok(c);
    let conn = rusqlite::Connection::open(&restored).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM app", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the application's last write was not shipped");
}

/// SIGTERM goes to the application; when it exits, so do we, with its
/// code. `-exec` with `-once` is refused (exit 2), as Go refuses it; a
/// replica that cannot be opened means the application never starts.
#[test]
fn exec_gets_the_signals_and_never_starts_without_replication() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    Workload::new(22).setup(&open_app(&db, None));
    let replica = dir.path().join("replica");
    let marker = dir.path().join("got-term");
    let app = format!(
        "sh -c 'trap \"echo term > {m}; exit 3\" TERM; while true; do sleep 0.05; done'",
        m = marker.display()
    );
    let mut c = ours();
    c.args(["replicate", "-exec", &app]).arg(&db).arg(&replica);
    let log = dir.path().join("replicate.log");
    let child = spawn_logged(c, &log);
    wait_for("the exec command", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("started exec command"))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        terminate(child, Duration::from_secs(30)),
        3,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "term");

    let mut c = ours();
    c.args(["replicate", "-once", "-exec", "true"])
        .arg(&db)
        .arg(&replica);
    assert_eq!(run_err(c).0, 2);

    let never = dir.path().join("never");
    let mut c = ours();
    c.args(["replicate", "-exec", &format!("touch {}", never.display())])
        .arg(&db)
        .arg("gopher://127.0.0.1/x");
    run_err(c);
    assert!(
        !never.exists(),
        "the application started without replication"
    );
}

/// `run` with `exec`: the application starts once every database of the
/// fleet has its first backup, and the fleet exits with its code.
#[test]
fn fleet_exec_starts_once_every_database_is_backed_up() {
    let dir = Scratch::new();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..20 {
        Workload::new(100 + i).setup(&open_app(&data.join(format!("t{i}.db")), None));
    }
    let replicas = dir.path().join("replicas");
    let count = dir.path().join("count");
    // The application counts the replicas that hold their first backup.
    let app = format!(
        "sh -c 'ls -d {r}/*.db/ltx/0 | wc -l > {c}; exit 5'",
        r = replicas.display(),
        c = count.display()
    );
    let mut c = ours();
    c.args(["run", "--addr", "off", "--exec", &app, "--pattern"])
        .arg(format!("{}/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()));
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "20");
}

/// `restore-if-db-not-exists`: a missing database is restored before
/// replication starts, and with `exec` the application sees the restored
/// data; an empty replica is a first start. Also for a fleet's directory
/// entry: every database its replica holds that is missing is restored.
#[test]
fn restore_if_db_not_exists_before_replicating() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let w = Workload::new(31);
    let conn = open_app(&db, None);
    w.setup(&conn);
    for n in 1..=40 {
        w.step(&conn, n, true);
    }
    drop(conn);
    let replica = format!("file://{}", dir.path().join("replica").display());
    let mut c = ours();
    c.args(["replicate", "-once"]).arg(&db).arg(&replica);
    run_ok(c);
    for f in ["app.db", "app.db-wal", "app.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    std::fs::remove_dir_all(dir.path().join(".app.db-litestream")).unwrap();
    // The application checks it starts on the restored data.
    let check = dir.path().join("check.py");
    std::fs::write(
        &check,
        format!(
            "import sqlite3, sys\nn = sqlite3.connect('{}').execute('SELECT n FROM meta').fetchone()[0]\nsys.exit(0 if n == 40 else 9)\n",
            db.display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["replicate", "-restore-if-db-not-exists", "-exec"])
        .arg(format!("python3 {}", check.display()))
        .arg(&db)
        .arg(&replica);
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verify_restore(&db, &w), 40);

    // An empty replica: a first start, not an error.
    let fresh = dir.path().join("fresh.db");
    let mut c = ours();
    c.args(["replicate", "-once", "-restore-if-db-not-exists"])
        .arg(&fresh)
        .arg(format!("file://{}", dir.path().join("empty").display()));
    let (code, err) = {
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(
        err.contains("no backup found, starting fresh"),
        "{code:?} {err}"
    );

    // A fleet's directory entry.
    let data = dir.path().join("tenants");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..3 {
        let w = Workload::new(40 + i);
        let conn = open_app(&data.join(format!("t{i}.db")), None);
        w.setup(&conn);
        w.step(&conn, 1, true);
    }
    let replicas = dir.path().join("fleet-replicas");
    let cfg = dir.path().join("fleet.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: '*.db'\n    restore-if-db-not-exists: true\n    replica:\n      path: {}\n",
            data.display(),
            replicas.display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["run", "--once", "--config"]).arg(&cfg);
    run_ok(c);
    for i in 0..2 {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(data.join(format!("t{i}.db{s}")));
        }
    }
    let mut c = ours();
    c.args(["run", "--addr", "off", "--exec", "true", "--config"])
        .arg(&cfg);
    run_ok(c);
    for i in 0..3 {
        assert_eq!(
            verify_restore(&data.join(format!("t{i}.db")), &Workload::new(40 + i)),
            1
        );
    }
}

/// `replicate -once -force-snapshot` writes a snapshot and
/// `-enforce-retention` deletes the expired ones, as Go's do (checked side
/// by side); either without `-once` is refused by both.
#[test]
fn once_force_snapshot_and_enforce_retention_like_go() {
    let dir = Scratch::new();
    for who in ["go", "ours"] {
        let db = dir.path().join(format!("{who}.db"));
        let w = Workload::new(51);
        let conn = open_app(&db, None);
        w.setup(&conn);
        let replica = dir.path().join(format!("{who}-replica"));
        let cfg = dir.path().join(format!("{who}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "snapshot:\n  interval: 24h\n  retention: 1s\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
                db.display(),
                replica.display()
            ),
        )
        .unwrap();
        let cmd = || if who == "go" { go() } else { ours() };
        for n in 1..=2 {
            w.step(&conn, n, true);
            let mut c = cmd();
            c.args(["replicate", "-once", "-force-snapshot", "-config"])
                .arg(&cfg);
            run_ok(c);
            std::thread::sleep(Duration::from_millis(1500));
        }
        let snaps = || replica_txids(&replica, 9);
        assert_eq!(snaps().len(), 2, "{who}: {:?}", snaps());
        let mut c = cmd();
        c.args(["replicate", "-once", "-enforce-retention", "-config"])
            .arg(&cfg);
        run_ok(c);
        assert_eq!(snaps().len(), 1, "{who}: the newest snapshot stays");
        for flag in ["-force-snapshot", "-enforce-retention"] {
            let mut c = cmd();
            c.args(["replicate", flag, "-config"]).arg(&cfg);
            let (code, err) = run_err(c);
            assert!(err.contains("once"), "{who} {flag}: {err}");
            if who == "ours" {
                assert_eq!(code, 2, "{err}");
            }
        }
    }
}

/// A stand-in for healthchecks.io on 127.0.0.1: answers every request
/// 200 and records its path.
fn ping_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // The rest of the head, up to the blank line.
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            log.lock()
                .unwrap()
                .push(format!("{} {path}", line.split(' ').next().unwrap_or("")));
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK");
        }
    });
    (port, seen)
}

/// heartbeat-url: one GET per interval while every database is healthy,
/// none while a replica fails; as Go does, side by side; `run` pings for
/// the fleet; an interval under a minute is refused as Go refuses it.
#[test]
fn heartbeat_pings_only_while_healthy_like_go() {
    let (port, seen) = ping_server();
    let dir = Scratch::new();
    let broken = dir.path().join("not-a-directory");
    std::fs::write(&broken, b"x").unwrap();
    let mut children = Vec::new();
    for who in ["go", "ours"] {
        for healthy in [true, false] {
            let name = format!("{who}-{}", if healthy { "ok" } else { "failing" });
            let db = dir.path().join(format!("{name}.db"));
            let conn = open_app(&db, None);
            Workload::new(3).setup(&conn);
            let replica = if healthy {
                dir.path().join(format!("{name}-replica"))
            } else {
                broken.join("replica") // a file where a directory must be
            };
            let cfg = dir.path().join(format!("{name}.yml"));
            std::fs::write(
                &cfg,
                format!(
                    "heartbeat-url: http://127.0.0.1:{port}/{name}\nheartbeat-interval: 1m\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
                    db.display(),
                    replica.display()
                ),
            )
            .unwrap();
            let mut c = if who == "go" { go() } else { ours() };
            c.args(["replicate", "-config"]).arg(&cfg);
            children.push(spawn_logged(c, &dir.path().join(format!("{name}.log"))));
        }
    }
    // The fleet: a directory entry.
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    for t in ["a", "b"] {
        Workload::new(4).setup(&open_app(&tenants.join(format!("{t}.db")), None));
    }
    let fleet_cfg = dir.path().join("fleet.yml");
    std::fs::write(
        &fleet_cfg,
        format!(
            "heartbeat-url: http://127.0.0.1:{port}/fleet\nheartbeat-interval: 1m\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            tenants.display(),
            dir.path().join("fleet-replica").display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["run", "--addr", "off", "--config"]).arg(&fleet_cfg);
    children.push(spawn_logged(c, &dir.path().join("fleet.log")));

    // Health is checked every 15 s: one ping by 20 s, and no second one
    // within the minute.
    std::thread::sleep(Duration::from_secs(33));
    for child in children {
        terminate(child, Duration::from_secs(20));
    }
    let seen = seen.lock().unwrap().clone();
    for (path, want) in [
        ("/go-ok", 1),
        ("/ours-ok", 1),
        ("/go-failing", 0),
        ("/ours-failing", 0),
        ("/fleet", 1),
    ] {
        let n = seen.iter().filter(|s| *s == &format!("GET {path}")).count();
        assert_eq!(n, want, "{path}: {seen:?}");
    }

    // Under a minute: refused by both.
    let cfg = dir.path().join("short.yml");
    std::fs::write(
        &cfg,
        format!(
            "heartbeat-url: http://127.0.0.1:{port}/x\nheartbeat-interval: 30s\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
            dir.path().join("go-ok.db").display(),
            dir.path().join("short-replica").display()
        ),
    )
    .unwrap();
    for who in ["go", "ours"] {
        let mut c = if who == "go" { go() } else { ours() };
        c.args(["replicate", "-once", "-config"]).arg(&cfg);
        let (code, err) = run_err(c);
        assert!(
            err.contains("heartbeat interval must be at least 1 minute"),
            "{who}: {err}"
        );
        if who == "ours" {
            assert_eq!(code, 2);
            assert!(err.contains("heartbeat-interval"), "{err}");
        }
    }
}

/// `replicate -config` on a directory entry works as with Go (the fleet
/// replicates it); a config mixing path and directory entries, or `run`
/// on path entries, is refused naming the entries, never half-replicated.
#[test]
fn replicate_takes_directory_entries_like_go() {
    let dir = Scratch::new();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    for t in ["a", "b"] {
        Workload::new(5).setup(&open_app(&tenants.join(format!("{t}.db")), None));
    }
    for who in ["go", "ours"] {
        let replica = dir.path().join(format!("{who}-replica"));
        let cfg = dir.path().join(format!("{who}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      url: file://{}\n",
                tenants.display(),
                replica.display()
            ),
        )
        .unwrap();
        let mut c = if who == "go" { go() } else { ours() };
        c.args(["replicate", "-once", "-config"]).arg(&cfg);
        run_ok(c);
        for t in ["a.db", "b.db"] {
            assert!(!replica_txids(&replica.join(t), 0).is_empty(), "{who}: {t}");
        }
    }
    let lone = dir.path().join("lone.db");
    Workload::new(6).setup(&open_app(&lone, None));
    let mixed = dir.path().join("mixed.yml");
    std::fs::write(
        &mixed,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            lone.display(),
            dir.path().join("mixed-lone").display(),
            tenants.display(),
            dir.path().join("mixed-tenants").display()
        ),
    )
    .unwrap();
    for cmd in [["replicate", "-once"], ["run", "--once"]] {
        let mut c = ours();
        c.args(cmd).arg("-config").arg(&mixed);
        let (code, err) = run_err(c);
        assert_eq!(code, 2, "{cmd:?}: {err}");
        assert!(err.contains("lone.db"), "{cmd:?}: {err}");
    }
    assert!(!dir.path().join("mixed-lone").exists() && !dir.path().join("mixed-tenants").exists());
}

/// shutdown-sync-timeout / -interval: a final sync that fails at stop is
/// retried every interval until it succeeds (the write reaches the
/// replica) or the time runs out (exit 1); a second signal ends the
/// retries at once.
#[test]
fn shutdown_sync_retries_the_final_sync() {
    let dir = Scratch::new();
    for (case, timeout) in [
        ("recovers", "30s"),
        ("gives-up", "0s"),
        ("interrupted", "60s"),
    ] {
        let db = dir.path().join(format!("{case}.db"));
        let w = Workload::new(8);
        let conn = open_app(&db, None);
        w.setup(&conn);
        w.step(&conn, 1, true);
        let replica = dir.path().join(format!("{case}-replica"));
        let cfg = dir.path().join(format!("{case}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "shutdown-sync-timeout: {timeout}\nshutdown-sync-interval: 200ms\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
                db.display(),
                replica.display()
            ),
        )
        .unwrap();
        let mut c = ours();
        c.args(["replicate", "-config"]).arg(&cfg);
        let log = dir.path().join(format!("{case}.log"));
        let mut child = spawn_logged(c, &log);
        wait_for("the first sync", Duration::from_secs(30), || {
            !replica_txids(&replica, 0).is_empty()
        });
        // The replica becomes a file: every upload fails from now on.
        let aside = dir.path().join(format!("{case}-aside"));
        std::fs::rename(&replica, &aside).unwrap();
        std::fs::write(&replica, b"in the way").unwrap();
        w.step(&conn, 2, true);
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, libc::SIGTERM);
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        match case {
            "recovers" => {
                wait_for("a retried final sync", Duration::from_secs(20), || {
                    logged().contains("final sync failed, retrying")
                });
                std::fs::remove_file(&replica).unwrap();
                std::fs::rename(&aside, &replica).unwrap();
                // No second signal: that would end the retries.
                let mut code = None;
                wait_for(
                    "the exit after the retried final sync",
                    Duration::from_secs(20),
                    || {
                        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
                        code.is_some()
                    },
                );
                assert_eq!(code, Some(0), "{}", logged());
                let out = dir.path().join("recovered.db");
                let mut r = ours();
                r.args(["restore", "-o"])
                    .arg(&out)
                    .arg(format!("file://{}", replica.display()));
                run_ok(r);
                assert_eq!(
                    verify_restore(&out, &w),
                    2,
                    "the last write reached the replica"
                );
            }
            "gives-up" => {
                let mut code = None;
                wait_for(
                    "the exit after one final sync",
                    Duration::from_secs(10),
                    || {
                        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
                        code.is_some()
                    },
                );
                assert_eq!(code, Some(1), "{}", logged());
                assert!(!logged().contains("retrying"), "{}", logged());
            }
            _ => {
                wait_for("a retried final sync", Duration::from_secs(20), || {
                    logged().contains("final sync failed, retrying")
                });
                let t = std::time::Instant::now();
                assert_eq!(terminate(child, Duration::from_secs(20)), 1, "{}", logged());
                assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
                assert!(
                    logged().contains("interrupted by a second signal"),
                    "{}",
                    logged()
                );
            }
        }
    }
}

/// max-sync-ltx-files: a backlog of L0 files goes up at most N per sync,
/// pass after pass without waiting, until the replica holds them all.
#[test]
fn max_sync_ltx_files_ships_a_backlog_in_passes() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let w = Workload::new(12);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 50ms\n    replica:\n      path: {}\n      sync-interval: 50ms\n      max-sync-ltx-files: 2\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["replicate", "-log-level", "debug", "-config"])
        .arg(&cfg);
    let log = dir.path().join("replicate.log");
    let child = spawn_logged(c, &log);
    wait_for("the first sync", Duration::from_secs(30), || {
        !replica_txids(&replica, 0).is_empty()
    });
    // Uploads fail while the replica is a file: L0 files pile up locally.
    let aside = dir.path().join("aside");
    std::fs::rename(&replica, &aside).unwrap();
    std::fs::write(&replica, b"in the way").unwrap();
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    for n in 1..=5 {
        w.step(&conn, n, true);
        let failures = logged().matches("sync failed").count();
        wait_for("a sync of the step", Duration::from_secs(30), || {
            logged().matches("sync failed").count() > failures
        });
    }
    std::fs::remove_file(&replica).unwrap();
    std::fs::rename(&aside, &replica).unwrap();
    let local = dir.path().join(".app.db-litestream/ltx/0");
    let want = std::fs::read_dir(&local).unwrap().count();
    wait_for(
        "the backlog in the replica",
        Duration::from_secs(60),
        || replica_txids(&replica, 0).len() >= want,
    );
    assert_eq!(terminate(child, Duration::from_secs(20)), 0);
    let text = logged();
    assert!(text.contains("replica sync limited"), "{text}");
    let passes: Vec<usize> = text
        .lines()
        .filter(|l| l.contains("uploaded") && l.contains("files="))
        .filter_map(|l| l.split("files=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        passes.iter().all(|n| *n <= 2) && passes.len() >= 3,
        "{passes:?}"
    );
    let out = dir.path().join("restored.db");
    let mut r = ours();
    r.args(["restore", "-o"])
        .arg(&out)
        .arg(format!("file://{}", replica.display()));
    run_ok(r);
    assert_eq!(verify_restore(&out, &w), 5);
}

/// validation.interval: a replica level with a TXID gap is reported as
/// Litestream reports it ("validation error detected", the level, a gap),
/// side by side with Go; `run` refuses the key (it would list every cold
/// database's replica).
#[test]
fn validation_interval_reports_a_gap_like_go() {
    let dir = Scratch::new();
    let mut children = Vec::new();
    for who in ["go", "ours"] {
        let db = dir.path().join(format!("{who}.db"));
        let w = Workload::new(13);
        let conn = open_app(&db, None);
        w.setup(&conn);
        let replica = dir.path().join(format!("{who}-replica"));
        let cfg = dir.path().join(format!("{who}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "validation:\n  interval: 1s\ndbs:\n  - path: {}\n    monitor-interval: 50ms\n    replica:\n      path: {}\n      sync-interval: 50ms\n",
                db.display(),
                replica.display()
            ),
        )
        .unwrap();
        let mut c = if who == "go" { go() } else { ours() };
        c.args(["replicate", "-config"]).arg(&cfg);
        let log = dir.path().join(format!("{who}.log"));
        let child = spawn_logged(c, &log);
        for n in 1..=3 {
            let have = replica_txids(&replica, 0).len();
            w.step(&conn, n, true);
            wait_for("the step in the replica", Duration::from_secs(30), || {
                replica_txids(&replica, 0).len() > have
            });
        }
        let files = replica_txids(&replica, 0);
        assert!(files.len() >= 3, "{who}: {files:?}");
        let (min, max) = files[1];
        std::fs::remove_file(
            replica
                .join("ltx/0")
                .join(format!("{min:016x}-{max:016x}.ltx")),
        )
        .unwrap();
        wait_for("the gap reported", Duration::from_secs(30), || {
            std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("validation error detected") && l.contains("gap"))
        });
        children.push(child);
    }
    for c in children {
        terminate(c, Duration::from_secs(20));
    }
    let cfg = dir.path().join("fleet.yml");
    std::fs::write(
        &cfg,
        format!(
            "validation:\n  interval: 1h\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            dir.path().display(),
            dir.path().join("fleet-replica").display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["run", "--once", "--config"]).arg(&cfg);
    let (code, err) = run_err(c);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("validation.interval"), "{err}");
}
