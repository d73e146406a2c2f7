//! `lsdemo`: a small application for the demos. `write` commits orders to
//! a SQLite database as an application would; `compare` checks that a
//! restored copy holds the same rows; `fleet-build` makes a fleet of
//! tenant databases from one template; `fleet-drive` writes to a skewed
//! subset of a fleet (a few hot tenants, most idle).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rand::Rng;
use rusqlite::Connection;

#[derive(Parser)]
#[command(name = "lsdemo", about = "Demo application for litestreampp")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Commit `txs` transactions of orders, `interval_ms` apart.
    Write {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 200)]
        txs: u32,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
    },
    /// Compare the orders of two databases.
    Compare { a: PathBuf, b: PathBuf },
    /// Build a fleet of `count` tenant databases under `dir` (copies of one
    /// template database, in `shards` directories).
    FleetBuild {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 100)]
        shards: usize,
    },
    /// Write to a fleet for `seconds`: `hot` tenants get 80 % of `rate`
    /// transactions per second, `warm` others the rest; the rest stay idle.
    FleetDrive {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10)]
        hot: usize,
        #[arg(long, default_value_t = 200)]
        warm: usize,
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

const ORDERS: &str = "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer TEXT, amount_cents INTEGER, note BLOB);";

/// Builds the fleet: one template database, its bytes copied into every
/// tenant file in parallel.
fn fleet_build(dir: &std::path::Path, count: usize, shards: usize) -> Result<()> {
    use rayon::prelude::*;
    let shards = shards.max(1);
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let template = dir.join(".template.sqlite");
    {
        let _ = std::fs::remove_file(&template);
        let c = Connection::open(&template)?;
        c.execute_batch(&format!(
            "PRAGMA journal_mode=wal; {ORDERS}
             INSERT INTO orders(customer, amount_cents) VALUES ('founder', 0);
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))?;
    }
    let bytes = std::fs::read(&template)?;
    std::fs::remove_file(&template)?;
    let t0 = std::time::Instant::now();
    (0..shards).into_par_iter().try_for_each(|s| {
        let d = dir.join(format!("shard-{s:03}"));
        std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))
    })?;
    (0..count).into_par_iter().try_for_each(|i| {
        let p = dir.join(format!("shard-{:03}/tenant-{i:06}.db", i % shards));
        std::fs::write(&p, &bytes).with_context(|| format!("write {}", p.display()))
    })?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "built {count} databases in {secs:.2}s ({:.0} databases/s) under {}",
        count as f64 / secs,
        dir.display()
    );
    Ok(())
}

/// Every `*.db` under `dir`, sorted.
fn fleet_list(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let e = e?;
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if name.ends_with(".db") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn fleet_drive(
    dir: &std::path::Path,
    hot: usize,
    warm: usize,
    rate: u32,
    seconds: u64,
) -> Result<()> {
    let all = fleet_list(dir)?;
    if all.is_empty() {
        bail!("no databases under {}", dir.display());
    }
    let mut rng = rand::rng();
    let hot = hot.min(all.len()).max(1);
    let warm = warm.min(all.len() - hot);
    let pick: Vec<usize> = rand::seq::index::sample(&mut rng, all.len(), hot + warm).into_vec();
    let (hot_set, warm_set) = pick.split_at(hot);
    let start = std::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut n = 0u64;
    let mut touched = std::collections::HashSet::new();
    let mut next = start;
    while start.elapsed() < Duration::from_secs(seconds) {
        let i = if warm_set.is_empty() || rng.random_range(0..10) < 8 {
            hot_set[rng.random_range(0..hot_set.len())]
        } else {
            warm_set[rng.random_range(0..warm_set.len())]
        };
        let c = Connection::open(&all[i])?;
        c.busy_timeout(Duration::from_secs(5))?;
        c.execute(
            "INSERT INTO orders(customer, amount_cents, note) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                format!("customer-{}", rng.random_range(0..500)),
                rng.random_range(100..100_000),
                vec![0u8; rng.random_range(50..400)]
            ],
        )
        .with_context(|| format!("write {}", all[i].display()))?;
        touched.insert(i);
        n += 1;
        next += gap;
        if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!(
        "{n} transactions in {:.1}s on {} of {} databases ({hot} hot, {warm} warm)",
        start.elapsed().as_secs_f64(),
        touched.len(),
        all.len()
    );
    Ok(())
}

fn summary(path: &PathBuf) -> Result<(i64, i64, String)> {
    let c = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    let (n, total): (i64, i64) = c
        .query_row(
            "SELECT count(*), coalesce(sum(amount_cents), 0) FROM orders",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .with_context(|| format!("read {}", path.display()))?;
    let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    Ok((n, total, check))
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Write {
            db,
            txs,
            interval_ms,
        } => {
            let c = Connection::open(&db).with_context(|| format!("open {}", db.display()))?;
            c.busy_timeout(Duration::from_secs(5))?;
            c.execute_batch(
                "PRAGMA journal_mode=wal;
                 CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer TEXT, amount_cents INTEGER, note BLOB);",
            )?;
            let mut rng = rand::rng();
            for i in 0..txs {
                let tx = c.unchecked_transaction()?;
                for _ in 0..rng.random_range(1..10) {
                    let note: Vec<u8> = (0..rng.random_range(50..400))
                        .map(|_| rng.random())
                        .collect();
                    tx.execute(
                        "INSERT INTO orders(customer, amount_cents, note) VALUES (?1, ?2, ?3)",
                        rusqlite::params![
                            format!("customer-{}", rng.random_range(0..500)),
                            rng.random_range(100..100_000),
                            note
                        ],
                    )?;
                }
                if i % 17 == 0 {
                    tx.execute("DELETE FROM orders WHERE id % 13 = 0", [])?;
                }
                tx.commit()?;
                std::thread::sleep(Duration::from_millis(interval_ms));
            }
            let (n, total, _) = summary(&db)?;
            println!("wrote {txs} transactions: {n} orders, {total} cents");
        }
        Cmd::FleetBuild { dir, count, shards } => fleet_build(&dir, count, shards)?,
        Cmd::FleetDrive {
            dir,
            hot,
            warm,
            rate,
            seconds,
        } => fleet_drive(&dir, hot, warm, rate, seconds)?,
        Cmd::Compare { a, b } => {
            let (sa, sb) = (summary(&a)?, summary(&b)?);
            if sb.2 != "ok" {
                bail!("{}: integrity_check: {}", b.display(), sb.2);
            }
            if sa.0 != sb.0 || sa.1 != sb.1 {
                bail!(
                    "{} has {} orders / {} cents but {} has {} / {}",
                    a.display(),
                    sa.0,
                    sa.1,
                    b.display(),
                    sb.0,
                    sb.1
                );
            }
            println!(
                "restore matches the source: {} orders, {} cents, integrity ok",
                sb.0, sb.1
            );
        }
    }
    Ok(())
}
