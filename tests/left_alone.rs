//! Files in the pattern the fleet must not change: a rollback-journal
//! database (switched to WAL mode, as Litestream does, or left alone with
//! `--rollback-journal leave`), a file that is not a database, a database
//! held under SQLite's exclusive locking mode, one on a read-only
//! filesystem, and ones we may not read or write. Each is reported once
//! with its reason in `/status`, `litestreampp status` and a metric, and
//! is never touched (its bytes are checked).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use litestreampp_e2e::*;
use serde_json::Value;

fn status(port: u16) -> Value {
    let (code, _, body) = http_request(port, "GET", "/status", "").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn reasons(v: &Value) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = v["skipped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let name = Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, f["reason"].as_str().unwrap().to_string())
        })
        .collect();
    r.sort();
    r
}

fn fleet(dir: &Path, data: &Path, port: u16, extra: &[&str], log: &str) -> Command {
    let mut c = ours();
    c.args(["run", "--pattern"])
        .arg(format!("{}/**/*.db", data.display()))
        .arg("--replica")
        .arg(format!(
            "file://{}/{{path}}",
            dir.join("replicas").display()
        ))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(dir.join(format!("state-{log}")))
        .args(extra);
    c
}

fn rollback_db(p: &Path) {
    let c = rusqlite::Connection::open(p).unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
}

#[test]
fn files_we_must_not_change_are_left_alone_and_reported() {
    let dir = Scratch::new();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let w = Workload::new(51);
    w.setup(&open_app(&data.join("ok.db"), None));
    rollback_db(&data.join("rollback.db"));
    std::fs::write(
        data.join("notes.db"),
        "these are notes, not a database\n".repeat(10),
    )
    .unwrap();
    // Held under exclusive locking by its application for the whole run.
    let locked = data.join("locked.db");
    let app = rusqlite::Connection::open(&locked).unwrap();
    app.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA locking_mode=EXCLUSIVE; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    // A database on a read-only filesystem.
    let ro = data.join("ro");
    let unmount = Tmpfs::mount(&ro, "4m");
    w.setup(&open_app(&ro.join("frozen.db"), None));
    unmount.remount("ro");
    let bytes = |p: &Path| std::fs::read(p).unwrap();
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = ["rollback.db", "notes.db", "ro/frozen.db"]
        .iter()
        .map(|n| (data.join(n), bytes(&data.join(n))))
        .collect();

    // leave: the rollback-journal database is reported, not converted.
    let port = moto::free_port();
    let child = spawn_logged(
        fleet(
            dir.path(),
            &data,
            port,
            &["--rollback-journal", "leave"],
            "leave",
        ),
        &dir.path().join("leave.log"),
    );
    let want = vec![
        ("frozen.db".to_string(), "read-only-filesystem".to_string()),
        ("locked.db".to_string(), "exclusive-locking".to_string()),
        ("notes.db".to_string(), "not-a-database".to_string()),
        ("rollback.db".to_string(), "rollback-journal".to_string()),
    ];
    wait_for("every file judged", Duration::from_secs(60), || {
        http_request(port, "GET", "/status", "").is_ok() && reasons(&status(port)) == want
    });
    let v = status(port);
    assert_eq!(v["skipped"], 4);
    assert_eq!(v["databases"], 1, "{v}");
    wait_for("ok.db backed up", Duration::from_secs(30), || {
        status(port)["cold"] == 1
    });
    // The gauges are published every second.
    for r in [
        "not-a-database",
        "rollback-journal",
        "exclusive-locking",
        "read-only-filesystem",
    ] {
        let line = format!("litestreampp_skipped_files{{reason=\"{r}\"}} 1");
        wait_for(&line, Duration::from_secs(5), || {
            http_request(port, "GET", "/metrics", "").is_ok_and(|(_, _, m)| m.contains(&line))
        });
    }
    // `litestreampp status` shows them.
    let mut c = ours();
    c.args(["status", "-addr", &format!("127.0.0.1:{port}")]);
    let out = run_ok(c);
    assert!(out.contains("files left alone: 4"), "{out}");
    assert!(
        out.contains("not-a-database") && out.contains("notes.db"),
        "{out}"
    );
    // A write to a skipped file is not a new report.
    std::fs::write(data.join("notes.db"), "still notes\n".repeat(10)).unwrap();
    let mut before = before;
    before[1].1 = bytes(&data.join("notes.db"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let log = std::fs::read_to_string(dir.path().join("leave.log")).unwrap();
    for name in ["notes.db", "rollback.db", "locked.db", "frozen.db"] {
        let reports = log
            .lines()
            .filter(|l| l.contains("leaving a file alone") && l.contains(name))
            .count();
        assert_eq!(reports, 1, "{name} reported {reports} times:\n{log}");
    }
    for (p, b) in &before {
        assert_eq!(&bytes(p), b, "{} was changed", p.display());
    }
    assert_eq!(
        rusqlite::Connection::open(data.join("rollback.db"))
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "delete"
    );

    // convert (the default, Litestream's way): switched to WAL mode, said
    // in the log, and replicated.
    let port = moto::free_port();
    let child = spawn_logged(
        fleet(dir.path(), &data, port, &[], "convert"),
        &dir.path().join("convert.log"),
    );
    wait_for(
        "rollback.db replicated, the rest judged",
        Duration::from_secs(90),
        || {
            http_request(port, "GET", "/status", "").is_ok() && {
                let v = status(port);
                v["cold"] == 2 && reasons(&v).len() == 3
            }
        },
    );
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    let log = std::fs::read_to_string(dir.path().join("convert.log")).unwrap();
    assert!(
        log.contains("switched a rollback-journal database to WAL mode"),
        "{log}"
    );
    drop(app);
    drop(unmount);
}

/// Files we may not read, or write, as an unprivileged fleet sees them.
#[test]
fn files_we_may_not_touch_are_reported_as_permission_denied() {
    let dir = Scratch::new();
    let nobody = |p: &Path| {
        assert!(
            Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    };
    // The fleet runs as nobody: its state, replicas and meta directories
    // are its own; two databases are root's.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(dir.path().join("replicas")).unwrap();
    std::fs::create_dir_all(dir.path().join("state-nobody")).unwrap();
    Workload::new(52).setup(&open_app(&data.join("mine.db"), None));
    nobody(&data);
    nobody(&dir.path().join("replicas"));
    nobody(&dir.path().join("state-nobody"));
    let secret = data.join("secret.db");
    rollback_db(&secret);
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let readonly = data.join("readonly.db");
    rollback_db(&readonly);
    std::fs::set_permissions(
        &readonly,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let port = moto::free_port();
    let inner = fleet(dir.path(), &data, port, &[], "nobody");
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let child = spawn_logged(c, &dir.path().join("nobody.log"));
    let want = vec![
        ("readonly.db".to_string(), "permission-denied".to_string()),
        ("secret.db".to_string(), "permission-denied".to_string()),
    ];
    wait_for("both judged", Duration::from_secs(60), || {
        http_request(port, "GET", "/status", "").is_ok() && reasons(&status(port)) == want
    });
    wait_for("mine.db backed up", Duration::from_secs(30), || {
        status(port)["cold"] == 1
    });
    assert_eq!(status(port)["failed"], 0);
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
}
