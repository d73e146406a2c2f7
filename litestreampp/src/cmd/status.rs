//! `litestreampp status`. Two views:
//! - Litestream's (with `-config`, a database path, or when no `-addr` is
//!   given and the default config file exists): each configured
//!   database's local replication state, read from disk: Litestream's
//!   columns, statuses and `-json` fields.
//! - The fleet view (with `-addr`, or when there is no config file): asks
//!   a running fleet's `/status` endpoint how it stands.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use litestreampp_core::meta_dir::MetaDir;

use super::table::Table;
use crate::flags::StatusArgs;
use crate::fleet::http;
use crate::settings::{LocalDb, default_config_path, expand_path, load_config, local_databases};

const DEFAULT_ADDR: &str = "127.0.0.1:9090";

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let local = args.config.is_some()
        || args.db_path.is_some()
        || (args.addr.is_none() && default_config_path().exists());
    if local {
        return local_status(&args);
    }
    fleet_status(args.addr.as_deref().unwrap_or(DEFAULT_ADDR), args.json)
}

/// Litestream's `status`: one row per database of the config (directory
/// entries: every database found under them).
fn local_status(args: &StatusArgs) -> Result<ExitCode> {
    let cfg = load_config(args.config.as_deref(), !args.no_expand_env)?;
    let only = args
        .db_path
        .as_deref()
        .map(|p| expand_path(p).map(|p| p.to_string_lossy().into_owned()))
        .transpose()?;
    // A literal path as the glob matches exactly that database.
    let only = only.map(|p| globset::escape(&p));
    let rows: Vec<DbStatus> = local_databases(&cfg, true, only.as_deref())?
        .iter()
        .map(DbStatus::read)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["database", "status", "local txid", "wal size"]);
    for r in rows {
        t.row(vec![r.database, r.status.into(), r.local_txid, r.wal_size]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}

/// One database's local state, with Litestream's JSON field names.
#[derive(Debug, serde::Serialize)]
struct DbStatus {
    database: String,
    status: &'static str,
    local_txid: String,
    wal_size: String,
}

impl DbStatus {
    fn read(db: &LocalDb) -> DbStatus {
        let mut s = DbStatus {
            database: db.path.display().to_string(),
            status: "unknown",
            local_txid: "-".into(),
            wal_size: "-".into(),
        };
        if !db.path.exists() {
            s.status = "no database";
            return s;
        }
        let wal = Path::new(&format!("{}-wal", db.path.display())).to_path_buf();
        match std::fs::metadata(&wal) {
            Ok(m) => s.wal_size = human_bytes(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => s.wal_size = "0 B".into(),
            Err(_) => {}
        }
        let meta = db
            .meta_path
            .clone()
            .map_or_else(|| MetaDir::for_db(&db.path), MetaDir::new);
        match meta.l0_files() {
            Ok(files) => match files.last() {
                Some(&(_, max)) if max.0 > 0 => {
                    s.local_txid = max.to_string();
                    s.status = "ok";
                }
                _ => s.status = "not initialized",
            },
            Err(_) => s.status = "error",
        }
        s
    }
}

/// Bytes as Litestream prints them (go-humanize's `Bytes`: SI units, one
/// decimal below 10).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// The fleet view: a running fleet's `/status`.
fn fleet_status(addr: &str, json: bool) -> Result<ExitCode> {
    let (code, body) = http::get(addr, "/status")?;
    if code != 200 {
        bail!("{addr}: /status answered {code}: {}", body.trim());
    }
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "databases: {}  hot: {}  cold: {}  queued: {}  failed: {}",
        n("databases"),
        n("hot"),
        n("cold"),
        n("queued"),
        n("failed")
    );
    println!(
        "promotions: {}  demotions: {}  backlog done: {}  errors: {}  retired: {}  change notification: {}",
        n("promotions"),
        n("demotions"),
        n("backlog_done"),
        n("errors"),
        n("retired"),
        if v["watching"].as_bool().unwrap_or(false) {
            "inotify"
        } else {
            "polling"
        }
    );
    if let Some(hot) = v["most_lagging"].as_array().filter(|a| !a.is_empty()) {
        println!("\nmost lagging hot databases:");
        println!(
            "{:>9}  {:>8}  {:>16}  {:>16}  path",
            "lag(s)", "idle(s)", "local", "replica"
        );
        for h in hot {
            println!(
                "{:>9.3}  {:>8.1}  {:>16}  {:>16}  {}",
                h["lag_seconds"].as_f64().unwrap_or(0.0),
                h["idle_seconds"].as_f64().unwrap_or(0.0),
                h["local_txid"].as_str().unwrap_or(""),
                h["replica_txid"].as_str().unwrap_or(""),
                h["path"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(files) = v["skipped_files"].as_array().filter(|a| !a.is_empty()) {
        println!("\nfiles left alone: {}", n("skipped"));
        for f in files {
            println!(
                "{:<22}  {}",
                f["reason"].as_str().unwrap_or(""),
                f["path"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(errs) = v["recent_errors"].as_array().filter(|a| !a.is_empty()) {
        println!("\nrecent errors:");
        for e in errs.iter().take(20) {
            println!(
                "{}  {}: {}",
                e["at"].as_str().unwrap_or(""),
                e["path"].as_str().unwrap_or(""),
                e["error"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_as_go_humanize_prints_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(82), "82 B");
        assert_eq!(human_bytes(4120), "4.1 kB");
        assert_eq!(human_bytes(12_345), "12 kB");
        assert_eq!(human_bytes(4_152_272), "4.2 MB");
    }
}
