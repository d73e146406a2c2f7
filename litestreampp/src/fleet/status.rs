//! What the fleet shows: the `/status` JSON (`litestreampp status`) and the
//! tier gauges.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use std::path::{Path, PathBuf};

use litestreampp_core::txid::TxId;

use super::hot_set::HotView;
use super::outage::OutageStatus;
use super::registry::{FleetError, Registry, Tier};
use super::skipped::SkipReason;

/// Hot databases listed in the status, most lagging first.
const MOST_LAGGING: usize = 20;

/// A hot database in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct HotStatus {
    pub path: String,
    pub local_txid: String,
    pub replica_txid: String,
    /// Seconds since the last write seen.
    pub idle_seconds: f64,
    /// Seconds since a write was first seen that is not in the replica yet.
    pub lag_seconds: f64,
    pub last_error: Option<String>,
}

/// What `litestreampp status` shows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FleetStatus {
    pub databases: usize,
    pub hot: usize,
    pub cold: usize,
    pub queued: usize,
    pub failed: usize,
    /// Stopped while their replica was unreachable; their history waits.
    pub unshipped: usize,
    /// Paused by `stop`.
    pub stopped: usize,
    pub promotions: u64,
    pub demotions: u64,
    pub backlog_done: u64,
    pub errors: u64,
    pub retired: u64,
    pub watching: bool,
    pub uptime_seconds: f64,
    /// Hot databases whose final sync failed at shutdown.
    pub shutdown_errors: u64,
    /// Hot databases, most lagging first (at most 20).
    pub most_lagging: Vec<HotStatus>,
    /// The most recent errors (at most 50), newest first.
    pub recent_errors: Vec<FleetError>,
    /// Matching files left alone.
    pub skipped: usize,
    /// The first of them by path (at most 100), with the reason.
    pub skipped_files: Vec<SkippedFile>,
    /// While replicas cannot be reached: since when, and what waits.
    pub outage: Option<OutageStatus>,
}

/// A file the fleet leaves alone.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: SkipReason,
}

/// Skipped files listed in the status.
const SKIPPED_LISTED: usize = 100;

/// One database as the control socket's `list` shows it.
#[derive(Debug, Clone)]
pub struct DbState {
    pub path: PathBuf,
    pub tier: Tier,
    /// Local and replica TXIDs, last sync and lag: known while a
    /// replicator runs for it (reading them for a cold database would cost
    /// it I/O).
    pub running: Option<RunningState>,
    /// Its most recent error, if one is among the fleet's recent errors.
    pub last_error: Option<String>,
}

/// What a running replicator reports.
#[derive(Debug, Clone)]
pub struct RunningState {
    pub local_txid: TxId,
    pub replica_txid: TxId,
    pub last_sync_at: Option<jiff::Timestamp>,
    pub lag_seconds: f64,
}

/// Databases per tier.
#[derive(Debug, Default)]
struct TierCounts {
    cold: usize,
    queued: usize,
    failed: usize,
    unshipped: usize,
    hot: usize,
    stopped: usize,
}

fn count_tiers(registry: &Registry) -> TierCounts {
    let mut n = TierCounts::default();
    for e in &registry.dbs {
        match e.tier {
            Tier::Cold => n.cold += 1,
            Tier::Queued => n.queued += 1,
            Tier::Failed => n.failed += 1,
            Tier::Unshipped => n.unshipped += 1,
            Tier::Hot => n.hot += 1,
            Tier::Stopped => n.stopped += 1,
        }
    }
    n
}

/// A read-only view of a running fleet, for the HTTP endpoint.
#[derive(Clone, Debug)]
pub struct FleetView {
    pub(super) registry: Arc<Registry>,
    pub(super) hot: HotView,
    pub(super) requests: super::requests::Requests,
}

impl FleetView {
    /// The fleet as it is now.
    pub fn status(&self) -> FleetStatus {
        let registry = &self.registry;
        let n = count_tiers(registry);
        let now = registry.now_ms();
        let mut hot = Vec::new();
        self.hot.each(|k, h| {
            let s = h.status.lock().map(|s| s.clone()).unwrap_or_default();
            hot.push(HotStatus {
                path: registry.path(k).display().to_string(),
                local_txid: s.local_txid.to_string(),
                replica_txid: s.replica_txid.to_string(),
                idle_seconds: now.saturating_sub(h.last_write_ms()) as f64 / 1000.0,
                lag_seconds: s
                    .pending_since
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0),
                last_error: s.last_error,
            });
        });
        hot.sort_by(|a, b| b.lag_seconds.total_cmp(&a.lag_seconds));
        hot.truncate(MOST_LAGGING);
        let c = &registry.counters;
        FleetStatus {
            databases: registry.dbs.len(),
            hot: n.hot,
            cold: n.cold,
            queued: n.queued,
            failed: n.failed,
            unshipped: n.unshipped,
            stopped: n.stopped,
            promotions: c.promotions.load(Ordering::Relaxed),
            demotions: c.demotions.load(Ordering::Relaxed),
            backlog_done: c.backlog_done.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            retired: c.retired.load(Ordering::Relaxed),
            watching: registry.watching.load(Ordering::Relaxed),
            uptime_seconds: registry.uptime_seconds(),
            shutdown_errors: 0,
            most_lagging: hot,
            recent_errors: registry.recent_errors(),
            skipped: registry.skipped.len(),
            skipped_files: {
                let mut v: Vec<(PathBuf, SkipReason)> = registry
                    .skipped
                    .iter()
                    .map(|e| (e.key().clone(), *e.value()))
                    .collect();
                v.sort_unstable();
                v.into_iter()
                    .take(SKIPPED_LISTED)
                    .map(|(p, reason)| SkippedFile {
                        path: p.display().to_string(),
                        reason,
                    })
                    .collect()
            },
            outage: registry.outage.lock().ok().and_then(|o| o.clone()),
        }
    }

    /// How many databases the fleet has registered.
    pub fn database_count(&self) -> usize {
        self.registry.dbs.len()
    }

    /// The databases whose path `wants`, sorted by path, from `offset`,
    /// at most `limit`; and how many matched.
    pub fn databases(
        &self,
        wants: impl Fn(&Path) -> bool,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<DbState>) {
        let mut matched: Vec<(PathBuf, Tier)> = self
            .registry
            .dbs
            .iter()
            .map(|e| (self.registry.path(e.key()), e.tier))
            .filter(|(p, _)| wants(p))
            .collect();
        let total = matched.len();
        matched.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let errors = self.registry.recent_errors();
        let page = matched
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(path, tier)| self.state_of(path, tier, &errors))
            .collect();
        (total, page)
    }

    /// The database at `path`, if the fleet has it.
    pub fn database(&self, path: &Path) -> Option<DbState> {
        let tier = self.registry.entry(self.registry.key_str(path)?)?.tier;
        Some(self.state_of(path.to_path_buf(), tier, &self.registry.recent_errors()))
    }

    fn state_of(&self, path: PathBuf, tier: Tier, errors: &[FleetError]) -> DbState {
        let running = self
            .registry
            .key_str(&path)
            .and_then(|k| self.hot.get(k))
            .and_then(|h| h.status.lock().ok().map(|s| s.clone()))
            .map(|s| RunningState {
                local_txid: s.local_txid,
                replica_txid: s.replica_txid,
                last_sync_at: s.last_sync_at,
                lag_seconds: s
                    .pending_since
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0),
            });
        let shown = path.display().to_string();
        let last_error = errors
            .iter()
            .find(|e| e.path == shown)
            .map(|e| e.error.clone());
        DbState {
            path,
            tier,
            running,
            last_error,
        }
    }

    /// Sets the tier gauges. Counting walks the registry (a few
    /// milliseconds at 100,000 databases).
    pub(super) fn publish_gauges(&self, backlog_len: usize) {
        let n = count_tiers(&self.registry);
        metrics::gauge!("litestreampp_databases", "tier" => "hot").set(self.hot.len() as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "cold").set(n.cold as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "queued").set(n.queued as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "failed").set(n.failed as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "stopped").set(n.stopped as f64);
        metrics::gauge!("litestreampp_databases", "tier" => "unshipped").set(n.unshipped as f64);
        metrics::gauge!("litestreampp_databases_total").set(self.registry.dbs.len() as f64);
        let mut skipped = [0usize; SkipReason::ALL.len()];
        for e in &self.registry.skipped {
            if let Some(i) = SkipReason::ALL.iter().position(|r| r == e.value()) {
                skipped[i] += 1;
            }
        }
        for (r, n) in SkipReason::ALL.iter().zip(skipped) {
            metrics::gauge!("litestreampp_skipped_files", "reason" => r.as_str()).set(n as f64);
        }
        metrics::gauge!("litestreampp_backlog_length").set(backlog_len as f64);
    }
}
