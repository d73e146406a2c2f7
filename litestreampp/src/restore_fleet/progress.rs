//! Progress while restoring: a bar on a terminal, else a line every few
//! seconds.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counters for the progress display.
#[derive(Default)]
pub struct Progress {
    pub done: AtomicUsize,
    pub failed: AtomicUsize,
    pub bytes: AtomicU64,
}

/// `12.3 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Shows progress until `stop`: a bar on a terminal, else a line every
/// `every`.
pub async fn show(
    progress: Arc<Progress>,
    total: usize,
    every: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    let started = Instant::now();
    let line = |p: &Progress| {
        let done = p.done.load(Ordering::Relaxed);
        let failed = p.failed.load(Ordering::Relaxed);
        let bytes = p.bytes.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0}s", (total - done.min(total)) as f64 / rate)
        } else {
            "?".into()
        };
        (
            done,
            format!(
                "{failed} failed, {}, {rate:.0} databases/s, ETA {eta}",
                human_bytes(bytes)
            ),
        )
    };
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} databases, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            let (done, msg) = line(&progress);
            bar.set_position(done as u64);
            bar.set_message(msg);
            tokio::select! {
                _ = stop.notified() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        bar.finish_and_clear();
        return;
    }
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let (done, msg) = line(&progress);
        eprintln!("restore-pattern: {done}/{total} databases, {msg}");
    }
}
