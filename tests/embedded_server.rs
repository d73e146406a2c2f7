//! The demo REST server (`demos/embedded-server`) with replication
//! embedded: acknowledged writes survive SIGTERM and the loss of the
//! database file (restored before the server accepts a request), a write
//! answered with `--replication-sync-writes` is already in the replica,
//! and an unreachable replica stops the start unless degraded starts are
//! allowed. Real parts: the server binary, moto on 127.0.0.1, our
//! `litestreampp restore`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use litestreampp_e2e::moto::{self, Moto};
use litestreampp_e2e::{http_request, run_ok, spawn_logged, terminate, wait_for, workspace_bin};
use rusqlite::Connection;
use serde_json::{Value, json};

/// The server on a free port with `args`, its output in `log`.
fn server(db: &Path, log: &Path, args: &[&str]) -> (Child, u16) {
    let port = moto::free_port();
    let mut c = Command::new(workspace_bin("embedded-server"));
    c.arg("--db")
        .arg(db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("RUST_LOG", "info");
    moto::with_credentials(&mut c);
    (spawn_logged(c, log), port)
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits until the server answers `/healthz`; panics with its log if it
/// exits first.
fn wait_ready(child: &mut Child, port: u16, log: &Path) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "server exited ({status}) before serving:\n{}",
                log_text(log)
            );
        }
        if http_request(port, "GET", "/healthz", "").is_ok_and(|r| r.0 == 200) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "server not ready:\n{}",
            log_text(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Every row the server lists, by id (pages of 1,000).
fn all_rows(port: u16) -> BTreeMap<i64, Value> {
    let mut rows = BTreeMap::new();
    loop {
        let path = format!("/items?limit=1000&offset={}", rows.len());
        let (status, _, body) = http_request(port, "GET", &path, "").unwrap();
        assert_eq!(status, 200, "{body}");
        let page = json_body(&body);
        let page = page.as_array().unwrap();
        for r in page {
            rows.insert(r["id"].as_i64().unwrap(), r["value"].clone());
        }
        if page.len() < 1000 {
            return rows;
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigterm_and_the_loss_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let url = moto.url("bkt", "app");
    let flags = ["--replication-enabled", "--replication-replica-url", &url];
    let log1 = dir.path().join("first.log");
    let (mut child, port) = server(&db, &log1, &flags);
    wait_ready(&mut child, port, &log1);

    // A client inserts, updates and deletes until the server stops
    // answering; it records only what was acknowledged. The request that
    // failed (if any) is in doubt.
    let writer = std::thread::spawn(move || {
        let mut expected: BTreeMap<i64, Value> = BTreeMap::new();
        let mut in_doubt = None;
        for i in 0u64.. {
            let (method, path, body) = match (i % 10, expected.keys().next().copied()) {
                (7, Some(id)) => (
                    "PATCH",
                    format!("/items/{id}"),
                    json!({"value": format!("u{i}")}),
                ),
                (9, Some(id)) => ("DELETE", format!("/items/{id}"), Value::Null),
                _ => (
                    "POST",
                    "/items".to_string(),
                    json!({"name": format!("n{i}"), "value": format!("v{i}")}),
                ),
            };
            let body = if body.is_null() {
                String::new()
            } else {
                body.to_string()
            };
            match http_request(port, method, &path, &body) {
                Ok((201, _, b)) => {
                    let row = json_body(&b);
                    expected.insert(row["id"].as_i64().unwrap(), row["value"].clone());
                }
                Ok((200, _, b)) => {
                    let row = json_body(&b);
                    expected.insert(row["id"].as_i64().unwrap(), row["value"].clone());
                }
                Ok((204, _, _)) => {
                    let id: i64 = path.rsplit('/').next().unwrap().parse().unwrap();
                    expected.remove(&id);
                }
                Ok((status, _, b)) => panic!("{method} {path}: {status} {b}"),
                Err(_) => {
                    in_doubt = Some((method, path));
                    break;
                }
            }
        }
        (expected, in_doubt)
    });
    std::thread::sleep(Duration::from_millis(1500));
    // SIGTERM while the client keeps writing: requests in flight are
    // answered, then the final sync ships them.
    let code = terminate(child, Duration::from_secs(30));
    let (expected, in_doubt) = writer.join().unwrap();
    assert_eq!(code, 0, "{}", log_text(&log1));
    assert!(expected.len() > 50, "only {} rows written", expected.len());
    assert!(log_text(&log1).contains("the replica holds everything written"));
    eprintln!(
        "{} rows acknowledged; in doubt: {in_doubt:?}",
        expected.len()
    );

    // The database file is lost (its -wal and -shm are left behind, stale).
    std::fs::remove_file(&db).unwrap();
    let log2 = dir.path().join("second.log");
    let (mut child, port) = server(&db, &log2, &flags);
    // The first answer the server gives already has every acknowledged
    // write: it restores before it listens.
    let start = Instant::now();
    let rows = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("server exited ({status}):\n{}", log_text(&log2));
        }
        if let Ok((200, _, _)) = http_request(port, "GET", "/items?limit=1", "") {
            break all_rows(port);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}",
            log_text(&log2)
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(log_text(&log2).contains("restored"), "{}", log_text(&log2));
    // A PATCH or DELETE in doubt leaves its row either way.
    let doubtful: Option<i64> = in_doubt
        .as_ref()
        .and_then(|(_, path)| path.strip_prefix("/items/"))
        .and_then(|id| id.parse().ok());
    let mut missing = Vec::new();
    for (id, value) in expected.iter().filter(|(id, _)| Some(**id) != doubtful) {
        match rows.get(id) {
            Some(v) if v == value => {}
            other => missing.push(format!("row {id}: expected {value}, found {other:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Nothing beyond what was acknowledged, except the one request in doubt.
    let extra: Vec<_> = rows
        .keys()
        .filter(|id| !expected.contains_key(id))
        .collect();
    assert!(
        extra.is_empty() || (extra.len() == 1 && in_doubt.is_some()),
        "rows never acknowledged: {extra:?} (in doubt: {in_doubt:?})"
    );
    assert_eq!(
        terminate(child, Duration::from_secs(30)),
        0,
        "{}",
        log_text(&log2)
    );
}

#[test]
fn a_write_answered_with_sync_writes_is_already_in_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    let log = dir.path().join("server.log");
    // Options from the environment, as in a container; a long sync
    // interval, so only the write's own wait ships it in time.
    let port = moto::free_port();
    let mut c = Command::new(workspace_bin("embedded-server"));
    c.env("SQLITEREST_DB", &db)
        .env("SQLITEREST_LISTEN", format!("127.0.0.1:{port}"))
        .env("SQLITEREST_REPLICATION_ENABLED", "1")
        .env("SQLITEREST_REPLICATION_REPLICA_URL", &url)
        .env("SQLITEREST_REPLICATION_SYNC_WRITES", "true")
        .env("SQLITEREST_REPLICATION_SYNC_INTERVAL", "1h");
    let mut child = spawn_logged(c, &log);
    wait_ready(&mut child, port, &log);
    for i in 0..3 {
        let body = json!({"name": format!("n{i}"), "value": "durable"}).to_string();
        let (status, head, body) = http_request(port, "POST", "/items", &body).unwrap();
        assert_eq!(status, 201, "{body}");
        let id = json_body(&body)["id"].as_i64().unwrap();
        assert!(
            head.to_ascii_lowercase().contains("x-replica-txid:"),
            "{head}"
        );
        // Restored from the replica right away, while the server runs.
        let out = dir.path().join(format!("restored-{i}.db"));
        let mut restore = litestreampp_e2e::ours();
        restore.arg("restore").arg("-o").arg(&out).arg(&url);
        run_ok(restore);
        let n: i64 = Connection::open(&out)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM items WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            n, 1,
            "row {id} not in the replica when its write was answered"
        );
    }
    // Without sync-writes the same interval would leave it local only:
    // the health report shows where replication stands.
    let (status, _, body) = http_request(port, "GET", "/healthz", "").unwrap();
    assert_eq!(status, 200);
    let h = json_body(&body);
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(
        h["replication"]["local_txid"], h["replication"]["replica_txid"],
        "{h}"
    );
    let (_, _, metrics) = http_request(port, "GET", "/metrics", "").unwrap();
    for m in [
        "litestreampp_uploaded_bytes_total",
        "litestreampp_last_snapshot_timestamp_seconds",
        "http_requests_total",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics:\n{metrics}");
    }
    assert_eq!(
        terminate(child, Duration::from_secs(30)),
        0,
        "{}",
        log_text(&log)
    );
}

#[test]
fn an_unreachable_replica_stops_the_start_unless_degraded_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    // A port nothing listens on.
    let url = moto::url_for(
        &format!("http://127.0.0.1:{}", moto::free_port()),
        "bkt",
        "app",
    );
    let base = [
        "--replication-enabled",
        "--replication-replica-url",
        &url,
        "--replication-startup-timeout",
        "2s",
    ];

    let log = dir.path().join("refused.log");
    let (mut child, port) = server(&db, &log, &base);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still running:\n{}",
            log_text(&log)
        );
        assert!(
            http_request(port, "GET", "/healthz", "").is_err(),
            "served without its replica"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let text = log_text(&log);
    assert!(
        text.contains("s3://bkt/app") && text.contains("unreachable"),
        "{text}"
    );
    assert!(!db.exists(), "the database was created without a replica");

    let mut degraded: Vec<&str> = base.to_vec();
    degraded.extend([
        "--replication-allow-degraded",
        "--replication-shutdown-timeout",
        "2s",
    ]);
    let log = dir.path().join("degraded.log");
    let (mut child, port) = server(&db, &log, &degraded);
    wait_ready(&mut child, port, &log);
    let body = json!({"name": "local only"}).to_string();
    let (status, _, body) = http_request(port, "POST", "/items", &body).unwrap();
    assert_eq!(status, 201, "{body}");
    assert!(log_text(&log).contains("starting degraded"));
    // The final sync cannot reach the replica: a non-zero exit that says so.
    let code = terminate(child, Duration::from_secs(30));
    let text = log_text(&log);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("final sync"), "{text}");
}

#[test]
fn required_replication_stops_the_server_when_the_replica_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let moto = Moto::start();
    moto.create_bucket("bkt");
    let url = moto.url("bkt", "app");
    let log = dir.path().join("server.log");
    let args = [
        "--replication-enabled",
        "--replication-replica-url",
        &url,
        "--replication-required-after",
        "1s",
        "--replication-shutdown-timeout",
        "2s",
    ];
    let (mut child, port) = server(&db, &log, &args);
    wait_ready(&mut child, port, &log);
    drop(moto);
    let body = json!({"name": "after the replica went away"}).to_string();
    assert_eq!(http_request(port, "POST", "/items", &body).unwrap().0, 201);
    let start = Instant::now();
    wait_for("the server to stop", Duration::from_secs(90), || {
        child.try_wait().unwrap().is_some()
    });
    let code = child.wait().unwrap().code();
    let text = log_text(&log);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("replication required"), "{text}");
    eprintln!("stopped {:?} after the write", start.elapsed());
}

#[test]
fn without_replication_it_serves_the_table_as_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let log = dir.path().join("server.log");
    let (mut child, port) = server(&db, &log, &[]);
    wait_ready(&mut child, port, &log);
    let req = |m: &str, p: &str, b: Value| {
        let body = if b.is_null() {
            String::new()
        } else {
            b.to_string()
        };
        let (status, _, body) = http_request(port, m, p, &body).unwrap();
        (
            status,
            if body.is_empty() {
                Value::Null
            } else {
                json_body(&body)
            },
        )
    };
    let (s, row) = req("POST", "/items", json!({"name": "a", "value": "1"}));
    assert_eq!(s, 201, "{row}");
    let id = row["id"].as_i64().unwrap();
    assert_eq!(
        req("GET", &format!("/items/{id}"), Value::Null),
        (200, row.clone())
    );
    let (s, upd) = req("PATCH", &format!("/items/{id}"), json!({"value": "2"}));
    assert_eq!((s, upd["value"].as_str()), (200, Some("2")));
    assert_eq!(req("PUT", "/items/999", json!({"value": "x"})).0, 404);
    // Not a column, not an object, a NOT NULL column missing, another table.
    let (s, e) = req("POST", "/items", json!({"nope": 1}));
    assert!(
        s == 400 && e["error"].as_str().unwrap().contains("nope"),
        "{s} {e}"
    );
    assert_eq!(req("POST", "/items", json!([1, 2])).0, 400);
    assert_eq!(req("POST", "/items", json!({"value": "no name"})).0, 409);
    assert_eq!(req("GET", "/sqlite_schema", Value::Null).0, 404);
    let (s, list) = req("GET", "/items?limit=10", Value::Null);
    assert_eq!((s, list.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(req("DELETE", &format!("/items/{id}"), Value::Null).0, 204);
    assert_eq!(req("GET", &format!("/items/{id}"), Value::Null).0, 404);
    let (s, h) = req("GET", "/healthz", Value::Null);
    assert_eq!((s, &h["replication"]), (200, &json!("disabled")));
    // Still serving a while later (nothing stops it but a signal).
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "{}", log_text(&log));
    assert_eq!(
        terminate(child, Duration::from_secs(30)),
        0,
        "{}",
        log_text(&log)
    );
}
