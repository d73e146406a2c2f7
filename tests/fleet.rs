//! The fleet: `litestreampp run` over thousands of databases found by a
//! pattern, each with its own replica from a template; every one of them
//! restores equal to its source, written or not. `--once` backs up and
//! exits; without it, hot and cold tiers keep the fleet replicated.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use litestreampp_core::client::from_url;
use litestreampp_core::restore::{RestoreOptions, restore};
use litestreampp_e2e::*;

const TENANTS: usize = 2_000;

fn content(path: &Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(
        "SELECT count(*) || ':' || coalesce(group_concat(v, ','), '') FROM (SELECT v FROM t ORDER BY id)",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// A WAL-mode database with table `t` and one row, checkpointed: what
/// every tenant of the test fleets starts as.
fn make_template(dir: &Path) -> PathBuf {
    let template = dir.join("template.db");
    let c = rusqlite::Connection::open(&template).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t(v) VALUES ('template'); PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    template
}

#[test]
fn run_once_backs_up_every_database_of_a_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let replicas = dir.path().join("replicas");
    // One template database, copied into 40 directories; every other
    // tenant then gets its own rows (the rest are never written).
    let template = make_template(dir.path());
    let mut paths = Vec::new();
    for i in 0..TENANTS {
        let d = data.join(format!("shard-{:02}", i % 40));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("tenant-{i:05}.db"));
        std::fs::copy(&template, &p).unwrap();
        if i % 2 == 0 {
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute("INSERT INTO t(v) VALUES (?1)", [format!("tenant {i}")])
                .unwrap();
        }
        paths.push(p);
    }
    // Not databases: skipped.
    std::fs::write(data.join("shard-00/notes.db"), b"not a database").unwrap();
    std::fs::write(data.join("shard-01/readme.txt"), b"hello").unwrap();

    let mut c = ours();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()));
    let out = run_ok(c);
    let _ = out;
    // A template that would put every tenant into one replica is refused.
    let mut c = ours();
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .args(["--replica", "file:///tmp/one-replica"]);
    let (_, err) = run_err(c);
    assert!(err.contains("{path}"), "{err}");

    // Every tenant has its own replica at its path under the template.
    for p in &paths {
        let rel = p.strip_prefix(&data).unwrap();
        assert!(
            !replica_txids(&replicas.join(rel), 0).is_empty(),
            "no replica for {}",
            rel.display()
        );
    }
    assert!(!replicas.join("shard-00/notes.db").exists());

    // Every tenant restores equal to its source.
    restore_all_equal(&data, &replicas, &paths, &dir.path().join("restored"));
}

/// The same over S3 (moto): every tenant's replica under its own prefix of
/// one bucket, through one shared S3 client, each restoring equal.
#[test]
fn run_once_to_s3() {
    use litestreampp_e2e::moto::{Moto, with_credentials};
    let moto = Moto::start();
    moto.create_bucket("fleet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut paths = Vec::new();
    for i in 0..60 {
        let d = data.join(format!("region-{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("t{i}.db"));
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("tenant {i}")])
            .unwrap();
        paths.push(p);
    }
    let template = format!(
        "s3://fleet/backups/{{dir}}/{{name}}?endpoint={}&region=us-east-1&forcePathStyle=true",
        moto.endpoint()
    );
    let mut c = ours();
    with_credentials(&mut c);
    c.args(["run", "--once", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .args(["--replica", &template]);
    run_ok(c);
    let keys = moto.keys("fleet");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("backups/region-1/t1.db/0000/")),
        "{keys:?}"
    );
    for p in &paths {
        let rel = p.strip_prefix(&data).unwrap();
        let (dir_part, name) = (
            rel.parent().unwrap().display().to_string(),
            rel.file_name().unwrap().to_string_lossy().to_string(),
        );
        let url = template
            .replace("{dir}", &dir_part)
            .replace("{name}", &name);
        let out = dir.path().join(format!("restored-{name}"));
        let mut c = ours();
        with_credentials(&mut c);
        c.args(["restore", "-o"]).arg(&out).arg(&url);
        run_ok(c);
        assert_eq!(content(&out), content(p), "{}", rel.display());
    }
}

/// Restores every database of `paths` (relative to `data`) from its
/// replica under `replicas` and compares it with its source.
fn restore_all_equal(data: &Path, replicas: &Path, paths: &[PathBuf], scratch: &Path) {
    std::fs::create_dir_all(scratch).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let checked = rt.block_on(async {
        futures::stream::iter(paths.iter().enumerate())
            .map(|(i, p)| {
                let rel = p.strip_prefix(data).unwrap().to_path_buf();
                let url = format!("file://{}", replicas.join(&rel).display());
                let out = scratch.join(format!("{i}.db"));
                async move {
                    let client = from_url(&url).unwrap();
                    restore(Arc::clone(&client), &RestoreOptions::new(&out))
                        .await
                        .unwrap_or_else(|e| panic!("restore {}: {e}", rel.display()));
                    (p.clone(), out)
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await
    });
    assert_eq!(checked.len(), paths.len());
    for (src, out) in checked {
        assert_eq!(content(&out), content(&src), "{}", src.display());
    }
}

fn fleet_status(port: u16) -> serde_json::Value {
    match litestreampp_e2e::moto::http(port, "GET", "/status") {
        Ok((200, body)) => serde_json::from_str(&body).unwrap(),
        _ => serde_json::Value::Null,
    }
}

fn wal_size(db: &Path) -> u64 {
    let mut w = db.as_os_str().to_owned();
    w.push("-wal");
    std::fs::metadata(PathBuf::from(w))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The continuous fleet: 2,000 databases (a backlog gives each its first
/// backup), random writes on a skewed subset while databases are promoted
/// and demoted (idle timeout and a small hot cap), a database checkpointed
/// by another process while cold, a database created while running; after
/// SIGTERM every database restores equal to its source, and every demoted
/// database's WAL is empty.
#[test]
fn hot_and_cold_tiers_keep_a_fleet_replicated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let replicas = dir.path().join("replicas");
    let template = make_template(dir.path());
    let mut paths = Vec::new();
    for i in 0..TENANTS {
        let d = data.join(format!("shard-{:02}", i % 40));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("tenant-{i:05}.db"));
        std::fs::copy(&template, &p).unwrap();
        paths.push(p);
    }
    let port = litestreampp_e2e::moto::free_port();
    let log = dir.path().join("run.log");
    let mut c = ours();
    c.args(["run", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()))
        .args(["--hot-idle-timeout", "1s", "--max-hot", "20"])
        .args(["--sync-interval", "100ms", "--backlog-rate", "5000"])
        .args(["--addr", &format!("127.0.0.1:{port}")]);
    let child = spawn_logged(c, &log);
    let t0 = Instant::now();
    wait_for("the initial backlog", Duration::from_secs(120), || {
        let s = fleet_status(port);
        s["databases"] == TENANTS && s["cold"] == TENANTS
    });
    eprintln!(
        "backlog of {TENANTS} done in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    // Every database is restorable before it was ever written.
    restore_all_equal(&data, &replicas, &paths[..200], &dir.path().join("r0"));

    // Writes on a skewed subset: 10 hot tenants get most writes, 200
    // others a few; the hot cap (20) and the 1s idle timeout make
    // databases change tiers all the time.
    let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: usize| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state % n as u64) as usize
    };
    let mut written = std::collections::BTreeSet::new();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(8) {
        let i = if rnd(4) == 0 { rnd(200) * 10 } else { rnd(10) };
        let c = rusqlite::Connection::open(&paths[i]).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("write {n}")])
            .unwrap();
        written.insert(i);
        n += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!("{n} writes on {} databases", written.len());

    // Wait until every written database went cold again.
    wait_for("every database cold", Duration::from_secs(60), || {
        let s = fleet_status(port);
        s["hot"] == 0 && s["cold"] == TENANTS
    });
    let s = fleet_status(port);
    assert!(s["promotions"].as_u64().unwrap() >= 10, "{s}");
    assert!(s["demotions"].as_u64().unwrap() >= 10, "{s}");
    // Demotion left the WAL empty.
    for &i in &written {
        assert_eq!(wal_size(&paths[i]), 0, "{}", paths[i].display());
    }

    // Checkpointed by another process while cold: written and checkpointed
    // (TRUNCATE) outside our view; the promotion must notice that the WAL
    // does not continue and resync.
    let victim = &paths[7];
    {
        let c = rusqlite::Connection::open(victim).unwrap();
        c.execute_batch(
            "INSERT INTO t(v) VALUES ('behind our back 1');
             INSERT INTO t(v) VALUES ('behind our back 2');
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }
    // A database created while running is picked up and backed up.
    let newcomer = data.join("shard-new/late.db");
    std::fs::create_dir_all(newcomer.parent().unwrap()).unwrap();
    std::fs::copy(&template, &newcomer).unwrap();
    {
        let c = rusqlite::Connection::open(&newcomer).unwrap();
        c.execute("INSERT INTO t(v) VALUES ('late')", []).unwrap();
    }
    wait_for(
        "the newcomer and the victim",
        Duration::from_secs(60),
        || {
            let s = fleet_status(port);
            s["databases"] == TENANTS + 1 && s["cold"] == TENANTS + 1 && s["hot"] == 0
        },
    );

    // A last write right before SIGTERM gets its final sync.
    {
        let c = rusqlite::Connection::open(&paths[3]).unwrap();
        c.execute("INSERT INTO t(v) VALUES ('just before SIGTERM')", [])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let code = terminate(child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");

    let mut check: Vec<PathBuf> = written.iter().map(|&i| paths[i].clone()).collect();
    check.push(paths[3].clone());
    check.push(newcomer.clone());
    check.extend(paths.iter().step_by(97).cloned());
    restore_all_equal(&data, &replicas, &check, &dir.path().join("r1"));
    let victim_out = dir.path().join("victim.db");
    let client = from_url(&format!(
        "file://{}",
        replicas.join(victim.strip_prefix(&data).unwrap()).display()
    ))
    .unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(restore(client, &RestoreOptions::new(&victim_out)))
        .unwrap();
    assert!(content(&victim_out).contains("behind our back 2"));

    // A restart finds every database backed up from the state file alone:
    // no backlog.
    let mut c = ours();
    c.args(["run", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()))
        .args(["--addr", &format!("127.0.0.1:{port}")]);
    let child = spawn_logged(c, &log);
    wait_for("the restart", Duration::from_secs(60), || {
        !fleet_status(port).is_null()
    });
    let s = fleet_status(port);
    assert_eq!(s["queued"], 0, "{s}");
    assert_eq!(s["cold"], TENANTS + 1, "{s}");
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
}

/// Bad members of a fleet: a corrupt database, a database whose meta
/// directory cannot be created (a file is in its place: the error a
/// permission problem gives, also when the tests run as root), a database
/// in rollback-journal mode (switched to WAL and replicated, as Litestream
/// does), a database deleted while hot. Each bad one is logged with its
/// path and counted; the rest of the fleet is backed up and restores.
#[test]
fn bad_databases_do_not_stop_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let replicas = dir.path().join("replicas");
    std::fs::create_dir_all(&data).unwrap();
    let mut good = Vec::new();
    for i in 0..30 {
        let p = data.join(format!("ok-{i:02}.db"));
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("tenant {i}")])
            .unwrap();
        good.push(p);
    }
    // Rollback-journal mode.
    let journal = data.join("journal-mode.db");
    {
        let c = rusqlite::Connection::open(&journal).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=delete; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t(v) VALUES ('rollback journal');",
        )
        .unwrap();
    }
    good.push(journal);
    // Corrupt: a SQLite header, then garbage.
    let corrupt = data.join("corrupt.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend((0..8192u32).map(|i| (i * 7 % 251) as u8));
    std::fs::write(&corrupt, bytes).unwrap();
    // Its meta directory cannot be created.
    let blocked = data.join("blocked.db");
    std::fs::copy(&good[0], &blocked).unwrap();
    std::fs::write(data.join(".blocked.db-litestream"), b"in the way").unwrap();
    // Deleted while hot.
    let doomed = data.join("doomed.db");
    std::fs::copy(&good[1], &doomed).unwrap();

    let port = litestreampp_e2e::moto::free_port();
    let log = dir.path().join("run.log");
    let mut c = ours();
    c.args(["run", "--pattern"])
        .arg(format!("{}/*.db", data.display()))
        .arg("--replica")
        .arg(format!("file://{}/{{path}}", replicas.display()))
        .args(["--hot-idle-timeout", "5s", "--sync-interval", "100ms"])
        .args(["--addr", &format!("127.0.0.1:{port}")]);
    let child = spawn_logged(c, &log);
    wait_for("the backlog", Duration::from_secs(60), || {
        let s = fleet_status(port);
        s["queued"] == 0 && s["hot"] == 0 && s["databases"] == 34
    });
    let s = fleet_status(port);
    assert_eq!(s["failed"], 2, "{s}");
    assert_eq!(s["cold"], 32, "{s}");
    let errors = s["recent_errors"].to_string();
    assert!(errors.contains("corrupt.db"), "{errors}");
    assert!(errors.contains("blocked.db"), "{errors}");
    let (_, metrics) = litestreampp_e2e::moto::http(port, "GET", "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("litestreampp_fleet_errors_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Litestream's names, summed over the fleet: no `db` label.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("litestream_sync_count ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        !metrics.contains("db=\""),
        "a per-database series: {metrics}"
    );
    let (code, health) = litestreampp_e2e::moto::http(port, "GET", "/healthz").unwrap();
    assert_eq!((code, health.trim()), (200, "ok"));

    // Written (hot), then deleted: retired, the rest unaffected.
    {
        let c = rusqlite::Connection::open(&doomed).unwrap();
        c.execute("INSERT INTO t(v) VALUES ('doomed')", []).unwrap();
    }
    wait_for("doomed hot", Duration::from_secs(30), || {
        fleet_status(port)["hot"] == 1
    });
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", doomed.display()));
    }
    wait_for("doomed retired", Duration::from_secs(30), || {
        let s = fleet_status(port);
        s["retired"] == 1 && s["databases"] == 33
    });
    // Its meta directory goes with it (the replica keeps its history).
    let name = doomed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !doomed
            .with_file_name(format!(".{name}-litestream"))
            .exists(),
        "a removed database's meta directory was left behind"
    );
    assert!(
        replicas.join(&name).join("ltx").exists(),
        "a removed database's replica must stay"
    );
    // A write to a good database after all that still replicates, and
    // SIGTERM gives it its final sync.
    {
        let c = rusqlite::Connection::open(&good[5]).unwrap();
        c.execute("INSERT INTO t(v) VALUES ('late write')", [])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let code = terminate(child, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("corrupt.db"), "{text}");
    restore_all_equal(&data, &replicas, &good, &dir.path().join("restored"));
}

/// The fleet from a Litestream config file: a directory entry (`dir`,
/// `pattern`, `recursive`) whose databases get the entry's replica path
/// plus their relative path, and a `fleet:` section. Its `max-hot` is a
/// hard cap: 30 databases written one after the other (with a 30 s idle
/// timeout, so without the cap all would stay hot) never have more than 3
/// hot at once, and every write still reaches the replica.
#[test]
fn config_file_fleet_keeps_a_hard_hot_cap() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("data/tenants");
    let replicas = dir.path().join("replicas");
    let template = make_template(dir.path());
    let mut paths = Vec::new();
    for i in 0..30 {
        let d = tenants.join(if i % 2 == 0 { "a" } else { "b/c" });
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("t-{i:02}.db"));
        std::fs::copy(&template, &p).unwrap();
        paths.push(p);
    }
    // Outside the entry's pattern: not part of the fleet.
    std::fs::copy(&template, tenants.join("a/notes.sqlite")).unwrap();
    let port = litestreampp_e2e::moto::free_port();
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    watch: true\n    replica:\n      type: file\n      path: {}\nfleet:\n  max-hot: 3\n  hot-idle-timeout: 30s\n  sync-interval: 100ms\n  backlog-rate: 1000\n",
            tenants.display(),
            replicas.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("run.log");
    let mut c = ours();
    c.args(["run", "--config"]).arg(&cfg);
    let child = spawn_logged(c, &log);
    wait_for("the backlog", Duration::from_secs(60), || {
        let s = fleet_status(port);
        s["databases"] == 30 && s["cold"] == 30
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max_hot = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(h) = fleet_status(port)["hot"].as_u64() {
                    max_hot = max_hot.max(h);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            max_hot
        })
    };
    for (i, p) in paths.iter().enumerate() {
        let c = rusqlite::Connection::open(p).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("write {i}")])
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for("every write promoted", Duration::from_secs(60), || {
        fleet_status(port)["promotions"].as_u64() >= Some(30)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_hot = sampler.join().unwrap();
    assert!(
        (1..=3).contains(&max_hot),
        "hot databases at once: {max_hot}"
    );
    let code = terminate(child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(!replicas.join("a/notes.sqlite").exists());
    restore_all_equal(&tenants, &replicas, &paths, &dir.path().join("restored"));
}
