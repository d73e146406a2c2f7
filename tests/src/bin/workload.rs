//! A writer process for the end-to-end tests: applies deterministic
//! workload steps to a database until a step count or a stop file.
//!
//! `workload DB SEED LAST_STEP SLEEP_MS AUTOCHECKPOINT [STOP_FILE]`
//! (AUTOCHECKPOINT -1 keeps SQLite's default of 1000 pages.)
//!
//! `WORKLOAD_HOLD_MS` holds every transaction open that long before it
//! commits; `WORKLOAD_BURST=STEPS:PAUSE_MS` pauses after every STEPS steps
//! (long enough, a fleet demotes the database meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use litestreampp_e2e::{Workload, committed_step, open_app};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: workload DB SEED LAST_STEP SLEEP_MS AUTOCHECKPOINT [STOP_FILE]");
        std::process::exit(2);
    }
    let parse = |i: usize| -> i64 {
        a[i].parse().unwrap_or_else(|_| {
            eprintln!("argument {i} ({}) is not a number", a[i]);
            std::process::exit(2)
        })
    };
    let (seed, last, sleep_ms, ac) = (parse(2) as u64, parse(3) as u64, parse(4) as u64, parse(5));
    let stop = a.get(6).map(Path::new);
    let env_ms = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let hold = Duration::from_millis(env_ms("WORKLOAD_HOLD_MS").unwrap_or(0));
    let burst = std::env::var("WORKLOAD_BURST").ok().and_then(|v| {
        let (s, p) = v.split_once(':')?;
        Some((s.parse::<u64>().ok()?.max(1), p.parse::<u64>().ok()?))
    });
    let conn = open_app(Path::new(&a[1]), (ac >= 0).then_some(ac));
    let w = Workload::new(seed);
    w.setup(&conn);
    let mut n = committed_step(&conn);
    while n < last && !stop.is_some_and(Path::exists) {
        n += 1;
        w.step_held(&conn, n, true, hold);
        if sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(sleep_ms));
        }
        if let Some((steps, pause)) = burst
            && n.is_multiple_of(steps)
        {
            std::thread::sleep(Duration::from_millis(pause));
        }
    }
    println!("{n}");
}
