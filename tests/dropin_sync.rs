//! Litestream's replication keys, run as a Litestream user would: the
//! heartbeat, the final sync's retries, `max-sync-ltx-files`,
//! `validation.interval` and `auto-recover`, side by side with the Go
//! binary where both can do the same.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use litestreampp_e2e::*;

/// A file replica that refuses every upload until [`Blocked::lift`]: its
/// directory is moved aside and a file takes its place.
struct Blocked {
    replica: std::path::PathBuf,
    aside: std::path::PathBuf,
}

impl Blocked {
    fn new(replica: &std::path::Path) -> Blocked {
        let aside = replica.with_extension("aside");
        std::fs::rename(replica, &aside).unwrap();
        std::fs::write(replica, b"in the way").unwrap();
        Blocked {
            replica: replica.to_path_buf(),
            aside,
        }
    }

    fn lift(self) {
        std::fs::remove_file(&self.replica).unwrap();
        std::fs::rename(&self.aside, &self.replica).unwrap();
    }
}

/// Waits for `child` to exit by itself (no signal) and returns its code.
fn exit_code(child: &mut std::process::Child, what: &str, within: Duration) -> i32 {
    let mut code = None;
    wait_for(what, within, || {
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    code.unwrap_or(-1)
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
                    "heartbeat-url: http://127.0.0.1:{port}/{name}\nheartbeat-interval: 1m\nshutdown-sync-timeout: 1s\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
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
        let blocked = Blocked::new(&replica);
        w.step(&conn, 2, true);
        std::thread::sleep(Duration::from_millis(300));
        signal(&child, libc::SIGTERM);
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        match case {
            "recovers" => {
                wait_for("a retried final sync", Duration::from_secs(20), || {
                    logged().contains("final sync failed, retrying")
                });
                blocked.lift();
                // No second signal: that would end the retries.
                let code = exit_code(
                    &mut child,
                    "the exit after the retried final sync",
                    Duration::from_secs(20),
                );
                assert_eq!(code, 0, "{}", logged());
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
                let code = exit_code(
                    &mut child,
                    "the exit after one final sync",
                    Duration::from_secs(10),
                );
                assert_eq!(code, 1, "{}", logged());
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
    let blocked = Blocked::new(&replica);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    for n in 1..=7 {
        w.step(&conn, n, true);
        let failures = logged().matches("sync failed").count();
        wait_for("a sync of the step", Duration::from_secs(30), || {
            logged().matches("sync failed").count() > failures
        });
    }
    blocked.lift();
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
        passes.iter().all(|n| *n <= 2) && passes.len() >= 4,
        "{passes:?}"
    );
    let out = dir.path().join("restored.db");
    let mut r = ours();
    r.args(["restore", "-o"])
        .arg(&out)
        .arg(format!("file://{}", replica.display()));
    run_ok(r);
    assert_eq!(verify_restore(&out, &w), 7);
}

/// validation.interval: a replica level with a TXID gap is reported as
/// Litestream reports it ("validation error detected", the level, a gap),
/// side by side with Go; the fleet checks what it wrote.
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
    fleet_validates_the_replicas_it_wrote(&dir);
}

/// The fleet checks the replicas written since its last check: a hot
/// database's gap is reported as `replicate` reports it, while a cold
/// database's replica, checked once after its backup, costs no further
/// request (a gap put there later goes unreported, as designed).
fn fleet_validates_the_replicas_it_wrote(dir: &Scratch) {
    let tenants = dir.path().join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    let w = Workload::new(14);
    let hot = open_app(&tenants.join("hot.db"), None);
    w.setup(&hot);
    Workload::new(15).setup(&open_app(&tenants.join("cold.db"), None));
    let replicas = dir.path().join("fleet-replica");
    let cfg = dir.path().join("fleet.yml");
    std::fs::write(
        &cfg,
        format!(
            "validation:\n  interval: 1s\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      path: {}\n      sync-interval: 50ms\n",
            tenants.display(),
            replicas.display()
        ),
    )
    .unwrap();
    let mut c = ours();
    c.args([
        "run",
        "--addr",
        "off",
        "--hot-idle-timeout",
        "1h",
        "--config",
    ])
    .arg(&cfg);
    let log = dir.path().join("fleet.log");
    let child = spawn_logged(c, &log);
    let (hot_replica, cold_replica) = (replicas.join("hot.db"), replicas.join("cold.db"));
    wait_for("both backed up", Duration::from_secs(30), || {
        !replica_txids(&hot_replica, 0).is_empty() && !replica_txids(&cold_replica, 0).is_empty()
    });
    for n in 1..=2 {
        let have = replica_txids(&hot_replica, 0).len();
        w.step(&hot, n, true);
        wait_for("the step in the replica", Duration::from_secs(30), || {
            replica_txids(&hot_replica, 0).len() > have
        });
    }
    // Both have been checked by now, and were whole.
    std::thread::sleep(Duration::from_millis(2500));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("validation error detected"), "{text}");
    let files = replica_txids(&hot_replica, 0);
    assert!(files.len() >= 3, "{files:?}");
    let (min, max) = files[1];
    let l0 =
        |r: &Path, min: u64, max: u64| r.join("ltx/0").join(format!("{min:016x}-{max:016x}.ltx"));
    std::fs::remove_file(l0(&hot_replica, min, max)).unwrap();
    let (cmin, cmax) = *replica_txids(&cold_replica, 0).last().unwrap();
    std::fs::copy(
        l0(&cold_replica, cmin, cmax),
        l0(&cold_replica, cmax + 10, cmax + 10),
    )
    .unwrap();
    wait_for(
        "the hot database's gap reported",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&log).is_ok_and(|l| {
                l.lines()
                    .any(|l| l.contains("validation error detected") && l.contains("hot.db"))
            })
        },
    );
    std::thread::sleep(Duration::from_millis(2500));
    terminate(child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.contains("validation error detected") && l.contains("cold.db")),
        "{text}"
    );
}

/// auto-recover: a local LTX file damaged before it was uploaded stops
/// replication until someone runs `reset`; with `auto-recover: true` the
/// local state is dropped and replication carries on from a snapshot, and
/// the replica restores to the newest state.
#[test]
fn auto_recover_drops_damaged_local_state() {
    let dir = Scratch::new();
    for recover in [true, false] {
        let name = if recover { "recovers" } else { "stuck" };
        let db = dir.path().join(format!("{name}.db"));
        let w = Workload::new(14);
        let conn = open_app(&db, None);
        w.setup(&conn);
        let replica = dir.path().join(format!("{name}-replica"));
        let cfg = dir.path().join(format!("{name}.yml"));
        std::fs::write(
            &cfg,
            format!(
                "shutdown-sync-timeout: 0s\ndbs:\n  - path: {}\n    monitor-interval: 50ms\n    replica:\n      path: {}\n      sync-interval: 50ms\n      auto-recover: {recover}\n",
                db.display(),
                replica.display()
            ),
        )
        .unwrap();
        let mut c = ours();
        c.args(["replicate", "-config"]).arg(&cfg);
        let log = dir.path().join(format!("{name}.log"));
        let child = spawn_logged(c, &log);
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_for("the first sync", Duration::from_secs(30), || {
            !replica_txids(&replica, 0).is_empty()
        });
        // Step 1 is written locally while the replica cannot take it...
        let blocked = Blocked::new(&replica);
        w.step(&conn, 1, true);
        wait_for("a failed upload", Duration::from_secs(30), || {
            logged().contains("sync failed")
        });
        // ...and damaged there before it goes up.
        let l0 = dir.path().join(format!(".{name}.db-litestream/ltx/0"));
        let newest = std::fs::read_dir(&l0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        let len = std::fs::metadata(&newest).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&newest)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        blocked.lift();
        if recover {
            wait_for("auto-recovery", Duration::from_secs(30), || {
                logged().contains("auto-recovery complete")
            });
            w.step(&conn, 2, true);
            let out = dir.path().join("restored.db");
            wait_for("step 2 in the replica", Duration::from_secs(30), || {
                let _ = std::fs::remove_file(&out);
                let mut r = ours();
                r.args(["restore", "-o"])
                    .arg(&out)
                    .arg(format!("file://{}", replica.display()));
                r.output().is_ok_and(|o| o.status.success())
                    && committed_step(&rusqlite::Connection::open(&out).unwrap()) == 2
            });
            assert_eq!(verify_restore(&out, &w), 2);
        } else {
            let errors = logged().matches("corrupt").count();
            wait_for("the damage reported again", Duration::from_secs(30), || {
                logged().matches("corrupt").count() > errors
            });
            assert!(!logged().contains("auto-recovery"), "{}", logged());
        }
        terminate(child, Duration::from_secs(40));
    }
}
