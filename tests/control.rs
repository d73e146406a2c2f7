//! The control socket of a running `replicate`: Litestream 0.5.17's
//! commands and wire protocol, checked against the Go binary both ways
//! (Go's client on our socket, ours on Go's); `sync -wait` holds the last
//! commit; malformed requests get an error reply and replication goes on;
//! a live socket is never taken over, a stale one is.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use litestreampp_e2e::*;

/// A config replicating `db` to `replica`, with the socket at `sock`.
fn config(dir: &Path, name: &str, db: &Path, replica: &Path, sock: &Path) -> PathBuf {
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(
        &cfg,
        format!(
            "socket:\n  enabled: true\n  path: {}\n  permissions: 0660\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
            sock.display(),
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    cfg
}

/// `args` with `-socket SOCK` after the command name (Go's flag parser
/// stops at the first positional argument).
fn with_socket(mut c: std::process::Command, args: &[&str], sock: &Path) -> std::process::Command {
    c.arg(args[0]).arg("-socket").arg(sock).args(&args[1..]);
    c
}

/// Field names of a JSON object printed by a command.
fn keys(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn socket_commands_work_with_go_both_ways() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let w = Workload::new(31);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let replica = dir.path().join("replica");
    let sock = dir.path().join("ours.sock");
    let cfg = config(dir.path(), "ours", &db, &replica, &sock);
    let child = spawn_logged(
        {
            let mut c = ours();
            c.args(["replicate", "-config"]).arg(&cfg);
            c
        },
        &dir.path().join("ours.log"),
    );
    wait_for("the socket", Duration::from_secs(20), || sock.exists());
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let dbs = db.display().to_string();
    // The same listing from Go's client and ours.
    wait_for("the first sync", Duration::from_secs(20), || {
        run_ok(with_socket(ours(), &["list"], &sock)).contains("last sync: 20")
    });
    let ours_list = run_ok(with_socket(ours(), &["list"], &sock));
    assert_eq!(run_ok(with_socket(go(), &["list"], &sock)), ours_list);
    assert!(
        ours_list.starts_with(&format!("{dbs} [replicating] (last sync: ")),
        "{ours_list}"
    );
    let info = run_ok(with_socket(ours(), &["info"], &sock));
    let go_info = run_ok(with_socket(go(), &["info"], &sock));
    let without_uptime = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("Uptime"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_uptime(&info), without_uptime(&go_info));
    assert!(info.contains("  Databases:  1"), "{info}");
    for cmd in [&["info", "-json"][..], &["list", "-json"]] {
        assert_eq!(
            keys(&run_ok(with_socket(ours(), cmd, &sock))),
            keys(&run_ok(with_socket(go(), cmd, &sock))),
            "{cmd:?}"
        );
    }
    // sync -wait: the replica holds the commit, whoever asks.
    for (n, who) in [(1, "go"), (2, "ours")] {
        w.step(&conn, n, false);
        let c = if who == "go" { go() } else { ours() };
        let out = run_ok(with_socket(c, &["sync", "-wait", "-json", &dbs], &sock));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["db_path"], dbs.as_str(), "{who}: {out}");
        assert_eq!(v["txid"], v["replica_txid"], "{who}: {out}");
        let restored = dir.path().join(format!("restored-{n}.db"));
        let mut r = ours();
        r.args(["restore", "-o"])
            .arg(&restored)
            .arg(format!("file://{}", replica.display()));
        run_ok(r);
        assert_eq!(verify_restore(&restored, &w), n, "{who}");
    }
    // stop: writes no longer ship; start: they do again.
    let out = run_ok(with_socket(go(), &["stop", &dbs], &sock));
    assert!(out.starts_with("status: stopped\n"), "{out}");
    let out = run_ok(with_socket(ours(), &["stop", &dbs], &sock));
    assert!(out.starts_with("status: already_stopped\n"), "{out}");
    assert!(run_ok(with_socket(ours(), &["list"], &sock)).contains("[stopped]"));
    let (code, err) = run_err(with_socket(go(), &["sync", &dbs], &sock));
    assert_eq!(code, 1);
    assert!(err.contains("database not open"), "{err}");
    let held = replica_txids(&replica, 0);
    w.step(&conn, 3, false);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        replica_txids(&replica, 0),
        held,
        "a stopped database shipped"
    );
    let out = run_ok(with_socket(ours(), &["start", "-json", &dbs], &sock));
    assert_eq!(keys(&out), ["db_path", "socket", "state", "status", "txid"]);
    assert!(out.contains("\"started\""), "{out}");
    let out = run_ok(with_socket(go(), &["sync", "-wait", &dbs], &sock));
    assert!(out.contains("replica_txid:"), "{out}");
    // unregister, then register again (by Go's client).
    let out = run_ok(with_socket(ours(), &["unregister", &dbs], &sock));
    assert!(out.starts_with("status: unregistered\n"), "{out}");
    assert_eq!(
        run_ok(with_socket(go(), &["list"], &sock)),
        "No databases configured\n"
    );
    let url = format!("file://{}", replica.display());
    let out = run_ok(with_socket(
        go(),
        &["register", "-replica", &url, &dbs],
        &sock,
    ));
    assert!(out.starts_with("status: registered\n"), "{out}");
    let out = run_ok(with_socket(
        ours(),
        &["register", "-replica", &url, &dbs],
        &sock,
    ));
    assert!(out.starts_with("status: already registered\n"), "{out}");
    w.step(&conn, 4, false);
    run_ok(with_socket(ours(), &["sync", "-wait", &dbs], &sock));
    let restored = dir.path().join("restored-4.db");
    let mut r = ours();
    r.args(["restore", "-o"]).arg(&restored).arg(&url);
    run_ok(r);
    assert_eq!(verify_restore(&restored, &w), 4);
    // Unknown database, unknown socket.
    let (code, err) = run_err(with_socket(ours(), &["sync", "/nope.db"], &sock));
    assert_eq!(code, 1);
    assert!(
        err.contains("sync failed: database not found: /nope.db"),
        "{err}"
    );
    let (_, err) = run_err(with_socket(
        ours(),
        &["info"],
        &dir.path().join("none.sock"),
    ));
    assert!(err.contains("failed to connect to control socket"), "{err}");
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    assert!(!sock.exists(), "the socket outlived the process");

    // Ours against Go's socket.
    let go_sock = dir.path().join("go.sock");
    let go_replica = dir.path().join("go-replica");
    let go_cfg = config(dir.path(), "go", &db, &go_replica, &go_sock);
    let child = spawn_logged(
        {
            let mut c = go();
            c.args(["replicate", "-config"]).arg(&go_cfg);
            c
        },
        &dir.path().join("go.log"),
    );
    wait_for("Go's socket", Duration::from_secs(20), || go_sock.exists());
    wait_for("Go's first sync", Duration::from_secs(20), || {
        run_ok(with_socket(ours(), &["list"], &go_sock)).contains("last sync: 20")
    });
    assert!(run_ok(with_socket(ours(), &["info"], &go_sock)).starts_with("Litestream "));
    w.step(&conn, 5, false);
    let out = run_ok(with_socket(
        ours(),
        &["sync", "-wait", "-json", &dbs],
        &go_sock,
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["txid"], v["replica_txid"], "{out}");
    for (cmd, want) in [("stop", "status: stopped"), ("start", "status: started")] {
        let out = run_ok(with_socket(ours(), &[cmd, &dbs], &go_sock));
        assert!(out.starts_with(want), "{cmd}: {out}");
    }
    terminate(child, Duration::from_secs(30));
    drop(conn);
}

/// Sends raw bytes to the socket and returns what comes back.
fn raw(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes); // the server may hang up first
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_requests_leave_replication_running_and_sockets_are_not_stolen() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let w = Workload::new(32);
    let conn = open_app(&db, None);
    w.setup(&conn);
    let replica = dir.path().join("replica");
    let sock = dir.path().join("s.sock");
    // A stale socket (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let cfg = config(dir.path(), "c", &db, &replica, &sock);
    let start = || {
        let mut c = ours();
        c.args(["replicate", "-config"]).arg(&cfg);
        c
    };
    let child = spawn_logged(start(), &dir.path().join("log"));
    wait_for("the socket", Duration::from_secs(20), || {
        UnixStream::connect(&sock).is_ok()
    });
    // A live one is not taken over.
    let out = start().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process is listening"), "{err}");
    let dbs = db.display().to_string();
    let body = format!("{{\"path\":\"{dbs}\"}}");
    let huge = format!(
        "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{}",
        200_000,
        "x".repeat(200_000)
    );
    for (what, req, want) in [
        ("garbage", "NOT HTTP AT ALL\r\n\r\n".to_string(), "400"),
        (
            "wrong JSON",
            "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{\"path\":".to_string(),
            "invalid request body",
        ),
        (
            "wrong types",
            "POST /stop HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{\"path\": 17}".into(),
            "invalid request body",
        ),
        ("huge", huge, "413"),
        (
            "truncated",
            format!(
                "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{}",
                &body[..10]
            ),
            "",
        ),
        (
            "no path",
            "POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}".into(),
            "path required",
        ),
        (
            "unknown route",
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "404",
        ),
        (
            "wrong method",
            "DELETE /sync HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "405",
        ),
    ] {
        let got = raw(&sock, req.as_bytes());
        assert!(got.contains(want), "{what}: {got}");
    }
    // Still replicating.
    w.step(&conn, 1, false);
    run_ok(with_socket(ours(), &["sync", "-wait", &dbs], &sock));
    let restored = dir.path().join("restored.db");
    let mut r = ours();
    r.args(["restore", "-o"])
        .arg(&restored)
        .arg(format!("file://{}", replica.display()));
    run_ok(r);
    assert_eq!(verify_restore(&restored, &w), 1);
    // A killed process leaves a stale socket; the next start takes it.
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(sock.exists());
    let child = spawn_logged(start(), &dir.path().join("log2"));
    wait_for("the socket again", Duration::from_secs(20), || {
        run_err_free(with_socket(ours(), &["info"], &sock))
    });
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
    drop(conn);
}

/// One raw request to 127.0.0.1:`port`; the whole answer.
fn tcp(port: u16, req: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out); // the server closes after the reply
    String::from_utf8_lossy(&out).into_owned()
}

fn run_err_free(mut c: std::process::Command) -> bool {
    c.output().is_ok_and(|o| o.status.success())
}

/// `sync -wait` then a restore holds the last commit, 200 times, while
/// another connection keeps writing.
#[test]
fn sync_wait_holds_the_last_commit_under_writes() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let conn = open_app(&db, None);
    conn.execute_batch("CREATE TABLE marks(n INTEGER PRIMARY KEY); CREATE TABLE noise(x BLOB);")
        .unwrap();
    let replica = dir.path().join("replica");
    let sock = dir.path().join("s.sock");
    let cfg = config(dir.path(), "c", &db, &replica, &sock);
    let child = spawn_logged(
        {
            let mut c = ours();
            c.args(["replicate", "-config"]).arg(&cfg);
            c
        },
        &dir.path().join("log"),
    );
    wait_for("the socket", Duration::from_secs(20), || sock.exists());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = open_app(&db, None);
            // About a thousand small transactions a second.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.execute("INSERT INTO noise VALUES (randomblob(200))", [])
                    .unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let dbs = db.display().to_string();
    let url = format!("file://{}", replica.display());
    for n in 1..=200 {
        conn.execute("INSERT INTO marks VALUES (?1)", [n]).unwrap();
        run_ok(with_socket(ours(), &["sync", "-wait", &dbs], &sock));
        let out = dir.path().join("restored.db");
        let _ = std::fs::remove_file(&out);
        let mut r = ours();
        r.args(["restore", "-o"]).arg(&out).arg(&url);
        run_ok(r);
        let got: i64 = rusqlite::Connection::open(&out)
            .unwrap()
            .query_row("SELECT max(n) FROM marks", [], |r| r.get(0))
            .unwrap();
        assert!(got >= n, "step {n}: the replica holds mark {got}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    noise.join().unwrap();
    assert_eq!(terminate(child, Duration::from_secs(30)), 0);
}

/// The fleet's socket: `info` counts every database, `list` pages through
/// them (sorted, filtered by glob) and Go's client reads it, `sync -wait`
/// on a cold database promotes it and returns once the replica has the
/// write; the operations a fleet does not offer yet are refused by name.
#[test]
fn fleet_socket_lists_pages_and_syncs_cold_databases() {
    let dir = Scratch::new();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    const N: usize = 2000;
    let w = Workload::new(33);
    for i in 0..N {
        w.setup(&open_app(&tenants.join(format!("t{i:04}.db")), None));
    }
    let replicas = dir.path().join("replicas");
    let sock = dir.path().join("fleet.sock");
    let cfg = dir.path().join("fleet.yml");
    std::fs::write(
        &cfg,
        format!(
            "socket:\n  enabled: true\n  path: {}\nfleet:\n  token: sekrit\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n",
            sock.display(),
            tenants.display(),
            replicas.display()
        ),
    )
    .unwrap();
    // The HTTP endpoint on every interface: control requests need the token.
    let port = litestreampp_e2e::moto::free_port();
    let mut c = ours();
    c.args(["run", "--addr", &format!("0.0.0.0:{port}"), "--config"])
        .arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("fleet.log"));
    wait_for("the socket", Duration::from_secs(60), || {
        run_err_free(with_socket(ours(), &["info"], &sock))
    });
    let info = run_ok(with_socket(ours(), &["info", "-json"], &sock));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["database_count"], N);
    let tiers = || {
        let out = run_ok(with_socket(ours(), &["list", "-json"], &sock));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["databases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["tier"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    wait_for("every database backed up", Duration::from_secs(120), || {
        tiers().iter().all(|t| t == "cold")
    });
    // A page, sorted by path, with the total.
    let out = run_ok(with_socket(
        ours(),
        &["list", "-json", "-offset", "5", "-limit", "10"],
        &sock,
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["total"], N);
    let paths: Vec<&str> = v["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (5..15)
        .map(|i| tenants.join(format!("t{i:04}.db")).display().to_string())
        .collect();
    assert_eq!(paths, want);
    let glob = format!("{}/t01*.db", tenants.display());
    let out = run_ok(with_socket(ours(), &["list", "-glob", &glob], &sock));
    assert_eq!(out.lines().count(), 100, "{out}");
    // Go's client reads the whole list.
    let out = run_ok(with_socket(go(), &["list"], &sock));
    assert_eq!(out.lines().count(), N);
    assert!(out.lines().all(|l| l.contains(" [replicating] ")), "{out}");
    // sync -wait on cold databases, from either client.
    for (n, (i, who)) in [(42, "ours"), (1999, "go"), (7, "ours")]
        .into_iter()
        .enumerate()
    {
        let db = tenants.join(format!("t{i:04}.db"));
        let conn = open_app(&db, None);
        w.step(&conn, 1, false);
        drop(conn);
        let c = if who == "go" { go() } else { ours() };
        let dbs = db.display().to_string();
        let out = run_ok(with_socket(c, &["sync", "-wait", "-json", &dbs], &sock));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["txid"], v["replica_txid"], "{who}: {out}");
        let restored = dir.path().join(format!("restored-{n}.db"));
        let mut r = ours();
        r.args(["restore", "-o"]).arg(&restored).arg(format!(
            "file://{}",
            replicas.join(format!("t{i:04}.db")).display()
        ));
        run_ok(r);
        assert_eq!(verify_restore(&restored, &w), 1, "{who}: t{i:04}");
    }
    // The same operations on the HTTP endpoint, with the token only.
    let db = tenants.join("t0100.db");
    let conn = open_app(&db, None);
    w.step(&conn, 1, false);
    drop(conn);
    let body = format!("{{\"path\":\"{}\",\"wait\":true}}", db.display());
    let post = |auth: &str| {
        tcp(
            port,
            &format!(
                "POST /sync HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let refused = post("");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(post("Authorization: Bearer wrong\r\n").starts_with("HTTP/1.1 403"));
    let done = post("Authorization: Bearer sekrit\r\n");
    assert!(
        done.starts_with("HTTP/1.1 200") && done.contains("\"status\":\"synced\""),
        "{done}"
    );
    let metrics = tcp(
        port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let log = std::fs::read_to_string(dir.path().join("fleet.log")).unwrap();
    assert!(!log.contains("sekrit"), "the token reached the log");
    // stop: a cold database at once (Go's client), a hot one after its
    // final sync; writes to a stopped one are not replicated and a sync
    // of it is refused.
    let t = |i: usize| tenants.join(format!("t{i:04}.db")).display().to_string();
    let out = run_ok(with_socket(go(), &["stop", &t(1)], &sock));
    assert!(out.contains("status: stopped"), "{out}");
    let out = run_ok(with_socket(ours(), &["stop", &t(42)], &sock));
    assert!(out.contains("status: stopped"), "{out}");
    let out = run_ok(with_socket(ours(), &["stop", &t(1)], &sock));
    assert!(out.contains("status: already_stopped"), "{out}");
    let conn = open_app(&tenants.join("t0001.db"), None);
    w.step(&conn, 1, false);
    drop(conn);
    let (code, err) = run_err(with_socket(ours(), &["sync", "-wait", &t(1)], &sock));
    assert_eq!(code, 1);
    assert!(err.contains("database not open"), "{err}");
    let tier_of = |i: usize| {
        let out = run_ok(with_socket(
            ours(),
            &["list", "-json", "-glob", &t(i)],
            &sock,
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["databases"][0]["tier"].as_str().map(str::to_string)
    };
    assert_eq!(tier_of(1).as_deref(), Some("stopped"));
    assert_eq!(tier_of(42).as_deref(), Some("stopped"));
    let restore_step = |name: &str, replica: &Path| {
        let restored = dir
            .path()
            .join(format!("check-{name}-{}.db", rand_suffix()));
        let mut r = ours();
        r.args(["restore", "-o"])
            .arg(&restored)
            .arg(format!("file://{}", replica.display()));
        run_ok(r);
        verify_restore(&restored, &w)
    };
    assert_eq!(restore_step("t1", &replicas.join("t0001.db")), 0);
    // unregister: out of the fleet, its files and replica left alone, not
    // found again by a write.
    let out = run_ok(with_socket(go(), &["unregister", &t(2)], &sock));
    assert!(out.contains("unregistered"), "{out}");
    let conn = open_app(&tenants.join("t0002.db"), None);
    w.step(&conn, 1, false);
    drop(conn);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tier_of(2), None);
    assert!(replicas.join("t0002.db").exists());
    let out = run_ok(with_socket(ours(), &["unregister", &t(2)], &sock));
    assert!(out.contains("already_unregistered"), "{out}");
    // register: a database outside the patterns, with its own replica.
    let outside = dir.path().join("elsewhere").join("x.db");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    let conn = open_app(&outside, None);
    w.setup(&conn);
    w.step(&conn, 1, false);
    let outside_replica = dir.path().join("elsewhere-replica");
    let url = format!("file://{}", outside_replica.display());
    let xs = outside.display().to_string();
    let out = run_ok(with_socket(
        ours(),
        &["register", "-replica", &url, &xs],
        &sock,
    ));
    assert!(out.contains("status: registered"), "{out}");
    let (code, err) = run_err(with_socket(
        ours(),
        &[
            "register",
            "-replica",
            "nope://x",
            &dir.path().join("y.db").display().to_string(),
        ],
        &sock,
    ));
    assert_eq!(code, 1);
    assert!(err.contains("no such database file"), "{err}");
    w.step(&conn, 2, false);
    run_ok(with_socket(ours(), &["sync", "-wait", &xs], &sock));
    assert_eq!(restore_step("x", &outside_replica), 2);
    // Kept across a restart: stopped stays stopped, unregistered stays
    // out, registered stays in.
    assert_eq!(terminate(child, Duration::from_secs(60)), 0);
    let mut c = ours();
    c.args(["run", "--addr", "off", "--config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("fleet-2.log"));
    wait_for("the socket again", Duration::from_secs(60), || {
        run_err_free(with_socket(ours(), &["info"], &sock))
    });
    assert_eq!(tier_of(1).as_deref(), Some("stopped"));
    assert_eq!(tier_of(42).as_deref(), Some("stopped"));
    assert_eq!(tier_of(2), None);
    assert!(tier_of(0).is_some());
    let out = run_ok(with_socket(ours(), &["list", "-glob", &xs], &sock));
    assert!(out.starts_with(&xs), "{out}");
    w.step(&conn, 3, false);
    drop(conn);
    run_ok(with_socket(ours(), &["sync", "-wait", &xs], &sock));
    assert_eq!(restore_step("x", &outside_replica), 3);
    // start: replicated again, the write made while stopped included.
    let out = run_ok(with_socket(ours(), &["start", &t(1)], &sock));
    assert!(out.contains("status: started"), "{out}");
    let out = run_ok(with_socket(ours(), &["start", &t(0)], &sock));
    assert!(out.contains("status: already_running"), "{out}");
    run_ok(with_socket(ours(), &["sync", "-wait", &t(1)], &sock));
    assert_eq!(restore_step("t1", &replicas.join("t0001.db")), 1);
    // An unregistered database of the patterns comes back by register.
    let url2 = format!("file://{}", replicas.join("t0002.db").display());
    let out = run_ok(with_socket(
        ours(),
        &["register", "-replica", &url2, &t(2)],
        &sock,
    ));
    assert!(out.contains("status: registered"), "{out}");
    run_ok(with_socket(ours(), &["sync", "-wait", &t(2)], &sock));
    assert_eq!(restore_step("t2", &replicas.join("t0002.db")), 1);
    // An acknowledged stop is in the state file: it outlasts a SIGKILL.
    let out = run_ok(with_socket(ours(), &["stop", &t(5)], &sock));
    assert!(out.contains("status: stopped"), "{out}");
    signal(&child, 9);
    let mut child = child;
    let _ = child.wait();
    let _ = std::fs::remove_file(&sock); // a killed process leaves it
    let mut c = ours();
    c.args(["run", "--addr", "off", "--config"]).arg(&cfg);
    let child = spawn_logged(c, &dir.path().join("fleet-3.log"));
    wait_for("the socket after the kill", Duration::from_secs(60), || {
        run_err_free(with_socket(ours(), &["info"], &sock))
    });
    assert_eq!(tier_of(5).as_deref(), Some("stopped"));
    let (_, err) = run_err(with_socket(
        ours(),
        &["sync", &tenants.join("nope.db").display().to_string()],
        &sock,
    ));
    assert!(err.contains("database not found"), "{err}");
    assert_eq!(terminate(child, Duration::from_secs(60)), 0);
    assert!(!sock.exists());
}

/// A unique suffix for scratch file names within one test.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
