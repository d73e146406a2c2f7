//! Litestream 0.5.17's commands, run side by side with the Go binary on
//! the same database and replica: the same output (text and `-json`
//! fields), exit codes and effects, so scripts keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;

use litestreampp_e2e::*;
use serde_json::Value;

/// Stdout of `cmd args...`, which must succeed.
fn out(mut cmd: Command, args: &[&str]) -> String {
    cmd.args(args);
    run_ok(cmd)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The JSON document at the end of `s` (from its first line that opens
/// one).
fn json_tail(s: &str) -> String {
    let at = s.find("\n{").map_or(0, |i| i + 1);
    s[at..].to_string()
}

/// `v` with only the keys `like` has (objects, and arrays of objects):
/// our `-json` outputs add fields to Litestream's, never change them.
fn shaped_as(v: &Value, like: &Value) -> Value {
    match (v, like) {
        (Value::Object(o), Value::Object(l)) => Value::Object(
            l.keys()
                .filter_map(|k| Some((k.clone(), shaped_as(o.get(k)?, &l[k]))))
                .collect(),
        ),
        (Value::Array(a), Value::Array(l)) if !l.is_empty() => {
            Value::Array(a.iter().map(|x| shaped_as(x, &l[0])).collect())
        }
        _ => v.clone(),
    }
}

fn config(cfg: &Path, dbs: &[&Path], replica_root: &Path) {
    let mut s = String::from("dbs:\n");
    for db in dbs {
        s.push_str(&format!(
            "  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            replica_root.join(db.file_name().unwrap()).display()
        ));
    }
    std::fs::write(cfg, s).unwrap();
}

/// `ltx`, `wal`, `databases`, `status`, `restore -dry-run` and `reset`
/// print what Go prints for the same database and replica; `restore
/// -json` gives Go's summary; after `reset` replication goes on from a
/// fresh snapshot and either tool restores the database.
#[test]
fn commands_print_what_go_prints() {
    let dir = Scratch::new();
    let db = dir.path().join("app.db");
    let missing = dir.path().join("gone.db");
    let replicas = dir.path().join("replicas");
    let cfg = dir.path().join("litestream.yml");
    config(&cfg, &[&db], &replicas);
    let c = cfg.to_str().unwrap();
    // `databases` and `status` read this one, with a database not on disk.
    let listing = dir.path().join("listing.yml");
    config(&listing, &[&db, &missing], &replicas);
    let lc = listing.to_str().unwrap();
    let d = db.to_str().unwrap();
    let w = Workload::new(7);
    let conn = open_app(&db, None);
    w.setup(&conn);
    for n in 1..=3 {
        w.step(&conn, n, true);
        // Three syncs: three L0 files, then L1 compactions are not due.
        run_ok({
            let mut c2 = ours();
            c2.args(["replicate", "-once", "-config", c]);
            c2
        });
    }

    let same = |args: &[&str]| {
        let (g, o) = (out(go(), args), out(ours(), args));
        assert_eq!(o, g, "litestreampp {args:?} differs from Go's output");
        o
    };
    let same_json = |args: &[&str]| {
        let (g, o) = (json(&out(go(), args)), json(&out(ours(), args)));
        assert_eq!(
            shaped_as(&o, &g),
            g,
            "litestreampp {args:?} -json differs from Go's"
        );
        o
    };

    // ltx: level 0 by default, `all` on request; `wal` is its old name.
    let l0 = same(&["ltx", "-config", c, d]);
    assert!(l0.starts_with("level  min_txid"), "{l0}");
    assert_eq!(
        l0.lines().count(),
        1 + replica_txids(&replicas.join("app.db"), 0).len()
    );
    same(&["ltx", "-level", "all", "-config", c, d]);
    same_json(&["ltx", "-level", "all", "-json", "-config", c, d]);
    let mut wal = ours();
    wal.args(["wal", "-config", c, d]);
    let o = wal.output().unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), l0);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Warning: 'wal' command is deprecated, please use 'ltx' instead")
    );

    // databases and status: Go's columns, values and JSON fields.
    let listed = same(&["databases", "-config", lc]);
    assert!(listed.contains(d), "{listed}");
    let dbs = same_json(&["databases", "-json", "-config", lc]);
    assert_eq!(
        dbs[0]["url"],
        format!("file://{}", replicas.join("app.db").display())
    );
    let status = same(&["status", "-config", lc]);
    assert!(
        status.contains(" ok ") && status.contains("no database"),
        "{status}"
    );
    same_json(&["status", "-json", "-config", lc]);
    same(&["status", "-config", lc, d]);

    // restore: the dry run's plan, and the summary of a real restore.
    let planned = dir.path().join("planned.db");
    let p = planned.to_str().unwrap();
    same(&["restore", "-dry-run", "-config", c, "-o", p, d]);
    same_json(&["restore", "-dry-run", "-json", "-config", c, "-o", p, d]);
    assert!(!planned.exists(), "a dry run writes nothing");
    let mut summaries = Vec::new();
    for (who, cmd) in [("go", go()), ("ours", ours())] {
        let to = dir.path().join(format!("restored-{who}.db"));
        // Go logs to stdout once the config is read, even with -json: its
        // summary is the JSON after the log lines.
        let s = json(&json_tail(&out(
            cmd,
            &[
                "restore",
                "-json",
                "-integrity-check",
                "quick",
                "-config",
                c,
                "-o",
                to.to_str().unwrap(),
                d,
            ],
        )));
        assert_eq!(s["db_path"], to.display().to_string(), "{who}: {s}");
        assert!(s["duration_ms"].is_u64(), "{who}: {s}");
        verify_restore(&to, &w);
        summaries.push(s);
    }
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert!(
        keys(&summaries[0])
            .iter()
            .all(|k| summaries[1].get(k).is_some())
    );
    for k in ["replica", "txid", "integrity_check"] {
        assert_eq!(summaries[1][k], summaries[0][k], "{k}");
    }

    // reset: the same plan and lines; the meta directory's LTX files go,
    // the database and the replica stay.
    let dry = same(&["reset", "-dry-run", d]);
    assert!(dry.contains("Files that would be removed:"), "{dry}");
    let ours_reset = out(ours(), &["reset", d]);
    let meta = dir.path().join(".app.db-litestream");
    assert!(!meta.join("ltx").exists(), "local LTX files removed");
    assert!(db.exists());
    // Go also writes its log lines to stdout; the command's own lines match.
    let go_reset: String = out(go(), &["reset", d])
        .lines()
        .filter(|l| !l.starts_with("time="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(ours_reset, go_reset);
    assert!(
        ours_reset
            .ends_with("Reset complete. Next replication sync will create a fresh snapshot.\n")
    );
    for cmd in [go(), ours()] {
        let mut cmd = cmd;
        cmd.args(["reset", missing.to_str().unwrap()]);
        let (_, err) = run_err(cmd);
        assert!(err.contains("database does not exist"), "{err}");
    }

    // After a reset replication continues, each tool after the other, and
    // both restore the newest state.
    w.step(&conn, 4, true);
    run_ok({
        let mut c2 = ours();
        c2.args(["replicate", "-once", "-config", c]);
        c2
    });
    w.step(&conn, 5, true);
    run_ok({
        let mut c2 = go();
        c2.args(["replicate", "-once", "-config", c]);
        c2
    });
    for (who, cmd) in [("go", go()), ("ours", ours())] {
        let to = dir.path().join(format!("after-reset-{who}.db"));
        out(
            cmd,
            &["restore", "-config", c, "-o", to.to_str().unwrap(), d],
        );
        assert_eq!(verify_restore(&to, &w), 5, "{who}");
    }

    // version -verbose: Litestream's labels.
    let v = out(ours(), &["version", "-verbose"]);
    assert!(v.starts_with("Version:     litestreampp "), "{v}");
    assert!(
        v.lines().any(|l| l.starts_with("OS/Arch:     linux/")),
        "{v}"
    );
}

/// A tenant under a `dir:` entry is found through the entry's layout:
/// Go replicates the directory, and `restore`, `ltx` and `status` with
/// `-config` reach one tenant's replica; `databases` lists the tenants
/// when given a glob; a path no entry covers is refused by name.
#[test]
fn restore_one_tenant_of_a_directory_entry() {
    let dir = Scratch::new();
    let data = dir.path().join("tenants");
    let tenants = [data.join("a.db"), data.join("b.db"), data.join("eu/c.db")];
    std::fs::create_dir_all(data.join("eu")).unwrap();
    let w = Workload::new(11);
    for (i, t) in tenants.iter().enumerate() {
        let conn = open_app(t, None);
        w.setup(&conn);
        for n in 1..=(i as u64 + 1) {
            w.step(&conn, n, true);
        }
    }
    let cfg = dir.path().join("litestream.yml");
    let replica = dir.path().join("replica");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: \"*.db\"\n    recursive: true\n    replica:\n      url: file://{}\n",
            data.display(),
            replica.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    out(go(), &["replicate", "-once", "-config", c]);

    for (i, t) in tenants.iter().enumerate() {
        let to = dir.path().join(format!("restored-{i}.db"));
        let t = t.to_str().unwrap();
        out(
            ours(),
            &["restore", "-config", c, "-o", to.to_str().unwrap(), t],
        );
        assert_eq!(verify_restore(&to, &w), i as u64 + 1, "{t}");
        let files = out(ours(), &["ltx", "-config", c, t]);
        assert_eq!(files.lines().count(), 2, "{t}: {files}");
    }
    let status = out(ours(), &["status", "-config", c]);
    assert_eq!(status.matches(" ok ").count(), 3, "{status}");

    let glob = format!("{}/**/*.db", data.display());
    let listed = json(&out(ours(), &["databases", "-json", "-config", c, &glob]));
    let urls: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        ["a.db", "b.db", "eu/c.db"]
            .map(|r| format!("file://{}/{r}", replica.display()))
            .to_vec()
    );
    // Without a glob the entry is one line: its glob.
    let entries = out(ours(), &["databases", "-config", c]);
    assert!(
        entries.contains(&format!("{}/**/*.db  file", data.display())),
        "{entries}"
    );

    let stranger = dir.path().join("elsewhere.db");
    let mut cmd = ours();
    cmd.args(["restore", "-config", c, "-o", "/tmp/never.db"])
        .arg(&stranger);
    let (code, err) = run_err(cmd);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("database not found in config") && err.contains("elsewhere.db"),
        "{err}"
    );
}
