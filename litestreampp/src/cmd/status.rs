//! `litestreampp status`: asks a running fleet (its `/status` endpoint)
//! how it stands, and prints it.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::flags::StatusArgs;
use crate::fleet::http;

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let (code, body) = http::get(&args.addr, "/status")?;
    if code != 200 {
        bail!("{}: /status answered {code}: {}", args.addr, body.trim());
    }
    if args.json {
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
