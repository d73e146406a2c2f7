//! `lsdemo`: a small application for the demos. `write` commits orders to
//! a SQLite database as an application would; `compare` checks that a
//! restored copy holds the same rows.

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
