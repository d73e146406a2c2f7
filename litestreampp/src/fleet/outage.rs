//! An unreachable replica: which databases wait for it, since when and how
//! much; the one log line a minute, the `/status` section and the gauges
//! that say so; and, once a sync reaches a replica again, the waiting
//! databases queued to ship their history.
//!
//! Hot databases keep syncing into their local L0 files while their
//! replica is down (bounded by merging, `core::unshipped`). One that stops
//! meanwhile, demoted or done with its backlog sync, keeps those files and
//! waits in the `Unshipped` tier: nothing runs for it, as for a cold one,
//! until the replica answers again. While every hot database is waiting
//! too, one waiting database is tried every `probe_every`, so the end of
//! an outage is seen without a request per database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use litestreampp_core::unshipped::Unshipped;
use serde::Serialize;

use super::hot_set::HotView;
use super::registry::Key;

/// How often a waiting database is tried while no hot one is.
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// What `/status` shows while replicas cannot be reached.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct OutageStatus {
    /// When the first database found its replica unreachable (RFC 3339).
    pub since: String,
    pub seconds: f64,
    /// Hot databases retrying their replica.
    pub hot: usize,
    /// Stopped databases whose history waits in their meta directory.
    pub waiting: usize,
    /// Local L0 files the replicas lack, and their bytes, over both.
    pub unshipped_files: u64,
    pub unshipped_bytes: u64,
    pub last_error: Option<String>,
}

/// The outage as the fleet's loop keeps it.
pub(super) struct Outage {
    /// Stopped databases with history their replica lacks.
    waiting: HashMap<Key, Unshipped>,
    since: Option<jiff::Timestamp>,
    last_error: Option<String>,
    /// A sync reached a replica since the outage began.
    reached: bool,
    report_every: Duration,
    reported_at: Option<Instant>,
    probed_at: Instant,
}

/// What a tick asks the fleet's loop to do.
#[derive(Debug, Default)]
pub(super) struct Tick {
    /// The outage is over: these databases ship their history now.
    pub ship: Vec<Key>,
    /// Try this waiting database: its sync tells whether the replica is
    /// back.
    pub probe: Option<Key>,
    /// For the gauges and `/status`.
    pub status: Option<OutageStatus>,
}

impl Outage {
    pub(super) fn new(report_every: Duration) -> Outage {
        Outage {
            waiting: HashMap::new(),
            since: None,
            last_error: None,
            reached: false,
            report_every,
            reported_at: None,
            probed_at: Instant::now(),
        }
    }

    /// `k` stopped with `unshipped` history its replica lacks, which
    /// failed with `error`.
    pub(super) fn wait(
        &mut self,
        k: &Key,
        unshipped: Unshipped,
        error: String,
        since: jiff::Timestamp,
    ) {
        self.waiting.insert(k.clone(), unshipped);
        self.last_error = Some(error);
        self.begin(since);
    }

    /// `k` runs again (or is gone): its replicator reports for it now.
    pub(super) fn resume(&mut self, k: &str) {
        if !self.waiting.is_empty() {
            self.waiting.remove(k);
        }
    }

    /// A sync reached a replica.
    pub(super) fn reached(&mut self) {
        if self.since.is_some() {
            self.reached = true;
        }
    }

    fn begin(&mut self, since: jiff::Timestamp) {
        if self.since.is_none_or(|s| since < s) {
            self.since = Some(since);
        }
    }

    /// Once a second: sums the hot set and the waiting databases up,
    /// reports once a `report_every`, and ends the outage once a sync
    /// reached a replica and no hot database is failing.
    pub(super) fn tick(&mut self, hot: &HotView) -> Tick {
        let mut down = 0usize;
        let mut files = 0u64;
        let mut bytes = 0u64;
        let mut hot_error = None;
        hot.each(|_, h| {
            let Ok(s) = h.status.lock() else { return };
            if let Some(since) = s.replica_down_since {
                down += 1;
                files += s.unshipped.files;
                bytes += s.unshipped.bytes;
                if hot_error.is_none() {
                    hot_error = s.last_error.clone();
                }
                if self.since.is_none_or(|t| since < t) {
                    self.since = Some(since);
                }
            } else if self
                .since
                .is_some_and(|t| s.last_sync_at.is_some_and(|at| at > t))
            {
                self.reached = true;
            }
        });
        if hot_error.is_some() {
            self.last_error = hot_error;
        }
        let Some(since) = self.since else {
            return Tick::default();
        };
        let now = jiff::Timestamp::now();
        let seconds = (now.as_millisecond() - since.as_millisecond()).max(0) as f64 / 1000.0;
        if down == 0 && (self.reached || self.waiting.is_empty()) {
            let ship: Vec<Key> = self.waiting.drain().map(|(k, _)| k).collect();
            tracing::info!(
                since = %since,
                seconds,
                databases = ship.len(),
                "replica reachable again; waiting databases queued to ship their history"
            );
            self.since = None;
            self.reached = false;
            self.last_error = None;
            self.reported_at = None;
            self.waiting.shrink_to_fit();
            return Tick {
                ship,
                ..Tick::default()
            };
        }
        for u in self.waiting.values() {
            files += u.files;
            bytes += u.bytes;
        }
        let status = OutageStatus {
            since: since.to_string(),
            seconds,
            hot: down,
            waiting: self.waiting.len(),
            unshipped_files: files,
            unshipped_bytes: bytes,
            last_error: self.last_error.clone(),
        };
        if self
            .reported_at
            .is_none_or(|t| t.elapsed() >= self.report_every)
        {
            self.reported_at = Some(Instant::now());
            tracing::warn!(
                since = %since,
                seconds = seconds.round(),
                hot = down,
                waiting = status.waiting,
                unshipped_files = files,
                unshipped_bytes = bytes,
                last_error = status.last_error.as_deref().unwrap_or(""),
                "replica unreachable: history waits locally"
            );
        }
        let probe = if down == 0 && self.probed_at.elapsed() >= PROBE_EVERY {
            self.probed_at = Instant::now();
            self.waiting.keys().next().cloned()
        } else {
            None
        };
        Tick {
            ship: Vec::new(),
            probe,
            status: Some(status),
        }
    }
}

/// Sets the outage gauges (zeros when there is none).
pub(super) fn publish(status: Option<&OutageStatus>) {
    let since = status
        .and_then(|s| s.since.parse::<jiff::Timestamp>().ok())
        .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0);
    metrics::gauge!("litestreampp_replica_unreachable_since_timestamp_seconds").set(since);
    metrics::gauge!("litestreampp_replica_unreachable_databases")
        .set(status.map_or(0, |s| s.hot + s.waiting) as f64);
    metrics::gauge!("litestreampp_unshipped_files")
        .set(status.map_or(0, |s| s.unshipped_files) as f64);
    metrics::gauge!("litestreampp_unshipped_bytes")
        .set(status.map_or(0, |s| s.unshipped_bytes) as f64);
}

impl super::tiers::Fleet {
    /// Once a second: the outage summed up for `/status` and the gauges;
    /// waiting databases queued once it is over, or one tried.
    pub(super) fn outage_tick(&mut self) {
        let tick = self.outage.tick(&self.hot.view());
        for k in tick.ship {
            if self
                .registry
                .entry(&k)
                .is_some_and(|e| e.tier == super::registry::Tier::Unshipped)
            {
                self.registry.set_tier(&k, super::registry::Tier::Queued);
                self.backlog.push(&k);
            }
        }
        if let Some(k) = tick.probe
            && self.hot.get(&k).is_none()
        {
            self.start(k, super::hot_set::Duty::Backlog);
        }
        publish(tick.status.as_ref());
        if let Ok(mut o) = self.registry.outage.lock() {
            *o = tick.status;
        }
    }
}
