//! Crash points for the crash campaign (`tests/crash.rs`,
//! `docs/reliability.md`): with `LITESTREAMPP_CRASH_AT=<point>:<n>` in its
//! environment the process kills itself with SIGKILL the `n`-th time it
//! passes `<point>`, so a test can stop it at exactly the worst moment of
//! a sync, an upload, a checkpoint, a compaction, a retention run or a
//! demotion, not only at random ones. Unset (always, outside tests), a
//! point costs one load of an initialised `OnceLock`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Every crash point, in the order a database meets them.
pub const POINTS: &[&str] = &[
    "l0-written",
    "uploaded",
    "checkpointed",
    "truncated",
    "compacted",
    "snapshot-uploaded",
    "retention-deleted",
    "sealed",
    "l0-merged",
];

struct Spec {
    point: String,
    left: AtomicU64,
}

fn spec() -> Option<&'static Spec> {
    static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let v = std::env::var("LITESTREAMPP_CRASH_AT").ok()?;
        let (point, n) = v.rsplit_once(':').unwrap_or((&v, "1"));
        Some(Spec {
            point: point.to_string(),
            left: AtomicU64::new(n.parse().unwrap_or(1).max(1)),
        })
    })
    .as_ref()
}

/// Passes crash point `point` (one of [`POINTS`]).
#[inline]
pub fn here(point: &'static str) {
    debug_assert!(POINTS.contains(&point), "unknown crash point {point}");
    if let Some(s) = spec()
        && s.point == point
        && s.left.fetch_sub(1, Ordering::SeqCst) == 1
    {
        kill_self();
    }
}

/// Pause points: with `LITESTREAMPP_PAUSE_AT=<point>:<ms>` the process
/// says `paused at <point>` on stderr and sleeps `ms` milliseconds the
/// first time it passes `<point>`, so a test can act at exactly that
/// moment (`frames-located`: a sync has located the WAL frames it will
/// read, and not read them yet).
pub const PAUSE_POINTS: &[&str] = &["frames-located"];

/// Passes pause point `point` (one of [`PAUSE_POINTS`]).
#[inline]
pub fn pause(point: &'static str) {
    debug_assert!(PAUSE_POINTS.contains(&point), "unknown pause point {point}");
    static PAUSE: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static DONE: AtomicBool = AtomicBool::new(false);
    let spec = PAUSE.get_or_init(|| {
        let v = std::env::var("LITESTREAMPP_PAUSE_AT").ok()?;
        let (p, ms) = v.rsplit_once(':')?;
        Some((p.to_string(), ms.parse().ok()?))
    });
    if let Some((p, ms)) = spec
        && p == point
        && !DONE.swap(true, Ordering::SeqCst)
    {
        eprintln!("paused at {point}");
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}

#[allow(unsafe_code)]
fn kill_self() -> ! {
    eprintln!("crash point reached: SIGKILL");
    // SAFETY: getpid and kill have no memory-safety preconditions; SIGKILL
    // ends the process here, without unwinding or flushing anything, as an
    // external kill would.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}
