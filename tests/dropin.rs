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
    let not_ours: [&str; 0] = [];
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

/// `replicate -config` on a directory entry works as with Go (the fleet
/// replicates it), and so does a config mixing path and directory
/// entries, once and running; entries whose per-database settings differ
/// are refused naming both, before anything is uploaded.
#[test]
fn replicate_takes_directory_entries_like_go() {
    let dir = Scratch::new();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    for t in ["a", "b"] {
        Workload::new(5).setup(&open_app(&tenants.join(format!("{t}.db")), None));
    }
    let lone = dir.path().join("lone.db");
    let w = Workload::new(6);
    w.setup(&open_app(&lone, None));
    let mixed = |who: &str, extra: &str| {
        let cfg = dir.path().join(format!("{who}-mixed.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - path: {}\n    restore-if-db-not-exists: true\n{extra}    replica:\n      path: {}\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      url: file://{}\n",
                lone.display(),
                dir.path().join(format!("{who}-lone")).display(),
                tenants.display(),
                dir.path().join(format!("{who}-tenants")).display()
            ),
        )
        .unwrap();
        cfg
    };
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
        for cfg in [cfg, mixed(who, "")] {
            let mut c = if who == "go" { go() } else { ours() };
            c.args(["replicate", "-once", "-config"]).arg(&cfg);
            run_ok(c);
        }
        for t in ["a.db", "b.db"] {
            assert!(!replica_txids(&replica.join(t), 0).is_empty(), "{who}: {t}");
            let mixed = dir.path().join(format!("{who}-tenants")).join(t);
            assert!(!replica_txids(&mixed, 0).is_empty(), "{who}: mixed {t}");
        }
        let lone_replica = dir.path().join(format!("{who}-lone"));
        assert!(
            !replica_txids(&lone_replica, 0).is_empty(),
            "{who}: lone.db"
        );
    }
    // Running: the path entry is restored first (restore-if-db-not-exists),
    // then replicated beside the tenants.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", lone.display()));
    }
    let cfg = mixed("ours", "");
    let mut c = ours();
    c.args(["replicate", "-config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("mixed.log"));
    wait_for("lone.db restored", Duration::from_secs(30), || {
        lone.exists()
    });
    let lone_replica = dir.path().join("ours-lone");
    let before = replica_txids(&lone_replica, 0).len();
    let conn = open_app(&lone, None);
    w.step(&conn, 1, false);
    wait_for(
        "the write to lone.db shipped",
        Duration::from_secs(30),
        || replica_txids(&lone_replica, 0).len() > before,
    );
    drop(conn);
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let out = dir.path().join("lone-restored.db");
    let mut c = ours();
    c.args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(&lone);
    run_ok(c);
    assert_eq!(verify_restore(&out, &w), 1);
    // One set of per-database settings for the fleet.
    let differing = mixed("differ", "    checkpoint-interval: 2m\n");
    for cmd in [["replicate", "-once"], ["run", "--once"]] {
        let mut c = ours();
        c.args(cmd).arg("-config").arg(&differing);
        let (code, err) = run_err(c);
        assert_eq!(code, 2, "{cmd:?}: {err}");
        assert!(
            err.contains("lone.db") && err.contains("tenants"),
            "{cmd:?}: {err}"
        );
    }
    assert!(
        !dir.path().join("differ-lone").exists() && !dir.path().join("differ-tenants").exists()
    );
}

/// `restore-if-db-not-exists` also holds for a one-shot backup of
/// directory entries (`run --once`, `replicate -once` of a dir config): a
/// missing tenant is restored from its replica first.
#[test]
fn one_shot_backup_restores_missing_tenants_first() {
    let dir = Scratch::new();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    let w = Workload::new(15);
    for t in ["a", "b"] {
        let conn = open_app(&tenants.join(format!("{t}.db")), None);
        w.setup(&conn);
        w.step(&conn, 1, true);
    }
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      url: file://{}\n",
            tenants.display(),
            dir.path().join("replica").display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args(["run", "--once", "--config"]).arg(&cfg);
    run_ok(c);
    for (n, cmd) in [["run", "--once"], ["replicate", "-once"]]
        .iter()
        .enumerate()
    {
        let lost = tenants.join(if n == 0 { "a.db" } else { "b.db" });
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", lost.display()));
        }
        let mut c = ours();
        c.args(*cmd)
            .arg("-restore-if-db-not-exists")
            .arg("-config")
            .arg(&cfg);
        run_ok(c);
        assert_eq!(verify_restore(&lost, &w), 1, "{cmd:?}");
    }
}

/// The meta directories found under `base`, relative to it.
fn meta_dirs_under(base: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![base.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().unwrap().is_dir() {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().ends_with("-litestream") {
                out.insert(p.strip_prefix(base).unwrap().display().to_string());
            } else {
                todo.push(p);
            }
        }
    }
    out
}

/// A directory entry's `meta-dir` and `meta-path` give each database its
/// meta directory where Go 0.5.17 puts it (side by side, a tenant in a
/// subdirectory too), never beside the database; the running fleet keeps
/// its L0 files there, and `monitor-interval` is taken.
#[test]
fn directory_meta_dirs_are_where_go_puts_them() {
    let dir = Scratch::new();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(tenants.join("sub")).unwrap();
    let w = Workload::new(21);
    for t in ["a.db", "sub/b.db"] {
        w.setup(&open_app(&tenants.join(t), None));
    }
    let config = |who: &str, key: &str| {
        let cfg = dir.path().join(format!("{who}-{key}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    monitor-interval: 250ms\n    {key}: {}\n    replica:\n      url: file://{}\n",
                tenants.display(),
                dir.path().join(format!("{who}-{key}")).display(),
                dir.path().join(format!("{who}-{key}-replica")).display()
            ),
        )
        .unwrap();
        cfg
    };
    for key in ["meta-dir", "meta-path"] {
        let mut seen = Vec::new();
        for who in ["go", "ours"] {
            let mut c = if who == "go" { go() } else { ours() };
            c.args(["replicate", "-once", "-config"])
                .arg(config(who, key));
            run_ok(c);
            seen.push(meta_dirs_under(&dir.path().join(format!("{who}-{key}"))));
        }
        assert_eq!(seen[0].len(), 2, "{key}: {:?}", seen[0]);
        assert_eq!(seen[0], seen[1], "{key}: Go's meta directories, then ours");
        assert!(
            meta_dirs_under(&tenants).is_empty(),
            "{key}: beside a database"
        );
    }
    // The running fleet.
    let cfg = config("ours", "meta-dir");
    let replica = dir.path().join("ours-meta-dir-replica/a.db");
    let before = replica_txids(&replica, 0).len();
    let mut c = ours();
    c.args(["run", "--addr", "off", "--config"]).arg(&cfg);
    let log = dir.path().join("run.log");
    let child = spawn_logged(c, &log);
    let conn = open_app(&tenants.join("a.db"), None);
    w.step(&conn, 1, false);
    wait_for("the fleet ships the write", Duration::from_secs(30), || {
        replica_txids(&replica, 0).len() > before
    });
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    drop(conn);
    let l0 = dir.path().join("ours-meta-dir/a.db-litestream/ltx/0");
    assert!(
        std::fs::read_dir(&l0).unwrap().count() > 0,
        "{}",
        l0.display()
    );
    assert!(
        meta_dirs_under(&tenants).is_empty(),
        "the fleet wrote beside a database"
    );
    let out = dir.path().join("restored.db");
    let mut c = ours();
    c.args(["restore", "-config"])
        .arg(&cfg)
        .arg("-o")
        .arg(&out)
        .arg(tenants.join("a.db"));
    run_ok(c);
    assert_eq!(verify_restore(&out, &w), 1);
}
